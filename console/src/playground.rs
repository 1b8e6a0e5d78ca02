//! The playground: a chat with a served model, with a system prompt and sampling
//! settings, and the same request as `curl` and OpenAI SDK code. The cluster console
//! offers it for a ModelDeployment and `trainer console` for a local run's
//! checkpoints; both answer the same form and the same script's requests.
//!
//! It is a plain form the server answers whole (it works without script); a small
//! script of the page's own streams the answer as it is generated instead, posting
//! the form as JSON to the page's `chat` route and the snippets to its `snippets`
//! route, beside the form's `playground` route.

use maud::{Markup, PreEscaped, html};
use serde::Deserialize;
use serde_json::{Value, json};

/// What the playground sends: the chat request's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatSettings {
    pub model: String,
    pub system: String,
    pub message: String,
    pub temperature: f64,
    pub top_p: f64,
    pub max_tokens: u32,
}

impl ChatSettings {
    /// The `/v1/chat/completions` body, streamed.
    pub fn request_body(&self) -> Value {
        let mut messages = Vec::new();
        if !self.system.trim().is_empty() {
            messages.push(json!({"role": "system", "content": self.system}));
        }
        messages.push(json!({"role": "user", "content": self.message}));
        json!({
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "stream": true,
        })
    }
}

/// The same request with `curl`, against the deployment's endpoint (in the cluster,
/// or through `kubectl port-forward`).
pub fn curl_snippet(endpoint: &str, settings: &ChatSettings) -> String {
    let body = serde_json::to_string_pretty(&settings.request_body()).unwrap_or_default();
    format!(
        "curl -N {endpoint}/chat/completions \\\n  -H 'Content-Type: application/json' \\\n  -d '{}'",
        body.replace('\'', r"'\''")
    )
}

/// The same request with the OpenAI Python SDK.
pub fn openai_snippet(endpoint: &str, settings: &ChatSettings) -> String {
    let messages = settings.request_body()["messages"].clone();
    let messages = serde_json::to_string(&messages).unwrap_or_default();
    format!(
        "from openai import OpenAI\n\n\
         client = OpenAI(base_url=\"{endpoint}\", api_key=\"unused\")\n\
         stream = client.chat.completions.create(\n    \
         model={model},\n    messages={messages},\n    \
         temperature={temperature}, top_p={top_p}, max_tokens={max_tokens}, stream=True,\n)\n\
         for chunk in stream:\n    print(chunk.choices[0].delta.content or \"\", end=\"\")\n",
        model = serde_json::to_string(&settings.model).unwrap_or_default(),
        temperature = settings.temperature,
        top_p = settings.top_p,
        max_tokens = settings.max_tokens,
    )
}

/// The playground's settings before a viewer changes them.
pub fn default_settings(model: &str) -> ChatSettings {
    ChatSettings {
        model: model.to_owned(),
        system: String::new(),
        message: String::new(),
        temperature: 0.7,
        top_p: 1.0,
        max_tokens: 256,
    }
}

/// The most tokens the playground asks for.
pub const MAX_TOKENS_MAX: u32 = 4096;

/// What a playground exchange left to show: the answer, or why there is none.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Exchange {
    pub answer: Option<String>,
    pub error: Option<String>,
}

impl Exchange {
    /// No answer, and why.
    pub fn failed(error: String) -> Self {
        Self {
            answer: None,
            error: Some(error),
        }
    }
}

/// The playground's fields, as the form (or the page's script) sends them: text, to be
/// judged by [`chat_settings`].
#[derive(Deserialize, Debug, Default)]
pub struct PlaygroundFields {
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub system: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub temperature: String,
    #[serde(default)]
    pub top_p: String,
    #[serde(default)]
    pub max_tokens: String,
}

impl PlaygroundFields {
    /// What the form showed again after a refused request: the texts kept, the rest
    /// as it starts.
    pub fn kept(&self) -> ChatSettings {
        ChatSettings {
            system: self.system.clone(),
            message: self.message.clone(),
            ..default_settings(&self.model)
        }
    }
}

/// The chat the fields ask for, or what is wrong with them, by field; `models` are
/// those served here.
pub fn chat_settings(fields: &PlaygroundFields, models: &[String]) -> Result<ChatSettings, String> {
    let number = |field: &str, text: &str, low: f64, high: f64| {
        text.trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= low && *v <= high)
            .ok_or_else(|| format!("{field} must be a number from {low} to {high}, not {text:?}"))
    };
    if !models.contains(&fields.model) {
        return Err(format!(
            "model {:?} is not one served here ({})",
            fields.model,
            models.join(", ")
        ));
    }
    if fields.message.trim().is_empty() {
        return Err("message is empty: write what to ask".to_owned());
    }
    let max_tokens = (fields.max_tokens.trim().parse::<u32>().ok())
        .filter(|n| (1..=MAX_TOKENS_MAX).contains(n))
        .ok_or_else(|| {
            format!(
                "max_tokens must be a whole number from 1 to {MAX_TOKENS_MAX}, not {:?}",
                fields.max_tokens
            )
        })?;
    Ok(ChatSettings {
        model: fields.model.clone(),
        system: fields.system.clone(),
        message: fields.message.clone(),
        temperature: number("temperature", &fields.temperature, 0.0, 2.0)?,
        top_p: number("top_p", &fields.top_p, 0.01, 1.0)?,
        max_tokens,
    })
}

/// The form posting to `action` (a path ending in `/playground`), with the models to
/// choose from, the settings shown, and the last exchange's answer or error.
pub fn playground_form(
    action: &str,
    models: &[String],
    settings: &ChatSettings,
    exchange: &Exchange,
) -> Markup {
    html! {
        form #playground method="post" action=(action) {
            p {
                label for="model" { "Model" } br;
                select #model name="model" {
                    @for model in models {
                        option value=(model) selected[*model == settings.model] { (model) }
                    }
                }
            }
            p {
                label for="system" { "System prompt" } br;
                textarea #system name="system" rows="2" cols="70" { (settings.system) }
            }
            p {
                label for="message" { "Message" } br;
                textarea #message name="message" rows="4" cols="70" required { (settings.message) }
            }
            p {
                label { "Temperature " input name="temperature" type="number" min="0" max="2" step="0.05" value=(settings.temperature); }
                " "
                label { "top_p " input name="top_p" type="number" min="0.01" max="1" step="0.01" value=(settings.top_p); }
                " "
                label { "Max tokens " input name="max_tokens" type="number" min="1" max=(MAX_TOKENS_MAX) value=(settings.max_tokens); }
            }
            button type="submit" { "Send" }
        }
        h3 { "Answer" }
        @if let Some(error) = &exchange.error { p.error #answer-error { (error) } }
        pre.log #answer aria-live="polite" { (exchange.answer.as_deref().unwrap_or("")) }
    }
}

/// The same request as `curl` and as OpenAI SDK code against `endpoint` (a `/v1`
/// base URL), where to send it from (`note`), and the page's streaming script.
pub fn same_request(endpoint: &str, settings: &ChatSettings, note: Markup) -> Markup {
    html! {
        h3 { "The same request" }
        p.muted { (note) }
        pre.log #curl { (curl_snippet(endpoint, settings)) }
        pre.log #python { (openai_snippet(endpoint, settings)) }
        script { (PreEscaped(STREAMING_SCRIPT)) }
    }
}

/// Streams the answer: posts the form as JSON to the page's `chat` route and writes
/// each `data:` chunk's delta as it comes; then the snippets follow the settings sent.
/// The page's only script, written here, loading nothing.
const STREAMING_SCRIPT: &str = r#"
(function () {
  var form = document.getElementById('playground');
  if (!form || !window.fetch || !window.TextDecoder) return;
  form.addEventListener('submit', function (event) {
    event.preventDefault();
    var fields = new FormData(form);
    var body = {};
    fields.forEach(function (value, key) { body[key] = value; });
    var answer = document.getElementById('answer');
    var error = document.getElementById('answer-error');
    if (error) error.remove();
    answer.textContent = '';
    var page = form.getAttribute('action').replace(/\/playground$/, '');
    // Asked once the answer is over: a server started for it knows its address then.
    function snippets() {
      fetch(page + '/snippets', {method: 'POST', headers: {'Content-Type': 'application/json'}, body: JSON.stringify(body)})
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (s) { if (s) { document.getElementById('curl').textContent = s.curl; document.getElementById('python').textContent = s.python; } });
    }
    fetch(page + '/chat', {method: 'POST', headers: {'Content-Type': 'application/json'}, body: JSON.stringify(body)})
      .then(function (response) {
        if (!response.ok) return response.text().then(function (t) { answer.textContent = t; snippets(); });
        var reader = response.body.getReader();
        var decoder = new TextDecoder();
        var pending = '';
        function read() {
          return reader.read().then(function (chunk) {
            if (chunk.done) return snippets();
            pending += decoder.decode(chunk.value, {stream: true});
            var lines = pending.split('\n');
            pending = lines.pop();
            lines.forEach(function (line) {
              if (line.indexOf('data: ') !== 0 || line === 'data: [DONE]') return;
              try {
                var delta = JSON.parse(line.slice(6)).choices[0].delta;
                if (delta && delta.content) answer.textContent += delta.content;
              } catch (e) { /* a line that is not a chunk */ }
            });
            return read();
          });
        }
        return read();
      })
      .catch(function (e) { answer.textContent = 'The request failed: ' + e; });
  });
})();
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ChatSettings {
        ChatSettings {
            model: "ft:anneal-tiny:story:ckpt-12".into(),
            system: "Be brief.".into(),
            message: "It's \"windy\"?".into(),
            temperature: 0.0,
            top_p: 1.0,
            max_tokens: 32,
        }
    }

    fn fields(model: &str, temperature: &str, top_p: &str, max_tokens: &str) -> PlaygroundFields {
        PlaygroundFields {
            model: model.into(),
            system: String::new(),
            message: "Hi".into(),
            temperature: temperature.into(),
            top_p: top_p.into(),
            max_tokens: max_tokens.into(),
        }
    }

    #[test]
    fn the_playground_takes_only_what_a_server_accepts_and_says_which_field_is_wrong() {
        let models = ["ft:a".to_owned()];
        let good = chat_settings(&fields("ft:a", "0.7", "1", "64"), &models).unwrap();
        assert_eq!(
            (good.temperature, good.top_p, good.max_tokens),
            (0.7, 1.0, 64)
        );
        for (bad, named) in [
            (
                fields("ft:b", "0.7", "1", "64"),
                "model \"ft:b\" is not one served here (ft:a)",
            ),
            (
                fields("ft:a", "3", "1", "64"),
                "temperature must be a number from 0 to 2",
            ),
            (fields("ft:a", "NaN", "1", "64"), "temperature must be"),
            (
                fields("ft:a", "0.7", "0", "64"),
                "top_p must be a number from 0.01 to 1",
            ),
            (
                fields("ft:a", "0.7", "1", "0"),
                "max_tokens must be a whole number from 1 to 4096",
            ),
            (fields("ft:a", "0.7", "1", "99999"), "max_tokens must be"),
        ] {
            let error = chat_settings(&bad, &models).unwrap_err();
            assert!(error.starts_with(named), "{error}");
        }
        let empty = PlaygroundFields {
            message: " ".into(),
            ..fields("ft:a", "0.7", "1", "64")
        };
        assert!(
            chat_settings(&empty, &models)
                .unwrap_err()
                .starts_with("message is empty")
        );
    }

    #[test]
    fn the_snippets_send_the_playgrounds_request() {
        let body = settings().request_body();
        assert_eq!(
            body["messages"][0],
            json!({"role": "system", "content": "Be brief."})
        );
        assert_eq!(body["messages"][1]["content"], "It's \"windy\"?");
        assert_eq!(body["stream"], true);
        let no_system = ChatSettings {
            system: " ".into(),
            ..settings()
        };
        assert_eq!(
            no_system.request_body()["messages"]
                .as_array()
                .unwrap()
                .len(),
            1
        );

        let curl = curl_snippet("http://chat.team-a.svc:8000/v1", &settings());
        assert!(curl.starts_with("curl -N http://chat.team-a.svc:8000/v1/chat/completions"));
        // The shell gets the body back whole: the quote is closed, escaped, reopened.
        assert!(curl.contains(r#"It'\''s \"windy\"?"#), "{curl}");
        let python = openai_snippet("http://chat.team-a.svc:8000/v1", &settings());
        assert!(python.contains(r#"base_url="http://chat.team-a.svc:8000/v1""#));
        assert!(
            python.contains(r#"model="ft:anneal-tiny:story:ckpt-12""#),
            "{python}"
        );
        assert!(python.contains("max_tokens=32, stream=True"), "{python}");
    }
}
