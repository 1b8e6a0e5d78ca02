//! The deployments list and a deployment's page with its playground: a chat with any
//! model it serves, with a system prompt and sampling settings, and the same request
//! as `curl` and OpenAI SDK code. The playground is a plain form the server answers
//! (it works without script); a small script of the page's own streams the answer
//! as it is generated instead, through the console's `chat` route.

use maud::{Markup, PreEscaped, html};

use crate::deployments::{ChatSettings, DeploymentRow, curl_snippet, openai_snippet};
use crate::pages::page;
use anneal_crds::modeldeployment::DeploymentPhase;

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

fn phase_name(phase: Option<DeploymentPhase>) -> String {
    phase.map_or("Pending".to_owned(), |p| format!("{p:?}"))
}

/// The links between the cluster console's lists.
pub fn cluster_nav() -> Markup {
    html! {
        nav {
            a href="/" { "Jobs" } " · " a href="/deployments" { "Deployments" }
            " · " a href="/evaluations" { "Evaluations" }
        }
    }
}

/// Every deployment the viewer may list.
pub fn deployments_page(rows: &[DeploymentRow]) -> Markup {
    let going = rows.iter().any(|r| {
        !matches!(
            r.phase,
            Some(DeploymentPhase::Ready | DeploymentPhase::Failed)
        )
    });
    page(
        "Deployments",
        going,
        html! {
            (cluster_nav())
            h1 { "Deployments" }
            @if rows.is_empty() {
                p { "No ModelDeployment here. A " code { "ModelDeployment" } " serves a job's checkpoint." }
            } @else {
                div.scroll { table {
                    thead { tr {
                        th { "Deployment" } th { "Phase" } th { "Ready" } th { "Serves" } th { "Model id" } th { "Endpoint" }
                    } }
                    tbody {
                        @for row in rows {
                            tr {
                                td { a href=(row.href) { (row.namespace) "/" (row.name) } }
                                td {
                                    (phase_name(row.phase))
                                    @if let Some(message) = &row.message { br; span.muted { (message) } }
                                }
                                td { (row.ready_replicas) "/" (row.replicas) }
                                td { (row.source) }
                                td { code { (row.model_id.as_deref().unwrap_or("-")) } }
                                td { code { (row.endpoint.as_deref().unwrap_or("-")) } }
                            }
                        }
                    }
                } }
            }
        },
    )
}

/// What a playground exchange left to show: the answer, or why there is none.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Exchange {
    pub answer: Option<String>,
    pub error: Option<String>,
}

/// A deployment's page: where it stands, and its playground with `settings`.
pub fn deployment_page(
    row: &DeploymentRow,
    models: &[String],
    settings: &ChatSettings,
    exchange: &Exchange,
) -> Markup {
    let title = format!("{}/{}", row.namespace, row.name);
    let endpoint = row
        .endpoint
        .clone()
        .unwrap_or_else(|| "http://SERVICE:8000/v1".to_owned());
    let ready = row.phase == Some(DeploymentPhase::Ready);
    page(
        &title,
        false,
        html! {
            (cluster_nav())
            h1 { (title) }
            p {
                strong { (phase_name(row.phase)) }
                @if let Some(message) = &row.message { ": " (message) }
            }
            ul {
                li { "Serves: " (row.source) }
                li { "Ready replicas: " (row.ready_replicas) " of " (row.replicas) }
                li { "Endpoint: " code { (endpoint) } }
            }
            h2 { "Playground" }
            @if !ready { p.warn { "Not ready: the playground answers once a serving pod is." } }
            form #playground method="post" action=(format!("{}/playground", row.href)) {
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
            h3 { "The same request" }
            p.muted { "From a pod in the cluster, or through " code { "kubectl port-forward svc/" (row.name) " 8000" } " with " code { "localhost:8000" } "." }
            pre.log #curl { (curl_snippet(&endpoint, settings)) }
            pre.log #python { (openai_snippet(&endpoint, settings)) }
            script { (PreEscaped(STREAMING_SCRIPT)) }
        },
    )
}

/// Streams the answer: posts the form as JSON to the page's `chat` route and writes
/// each `data:` chunk's delta as it comes; the snippets follow the settings sent.
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
    fetch(page + '/snippets', {method: 'POST', headers: {'Content-Type': 'application/json'}, body: JSON.stringify(body)})
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (s) { if (s) { document.getElementById('curl').textContent = s.curl; document.getElementById('python').textContent = s.python; } });
    fetch(page + '/chat', {method: 'POST', headers: {'Content-Type': 'application/json'}, body: JSON.stringify(body)})
      .then(function (response) {
        if (!response.ok) return response.text().then(function (t) { answer.textContent = t; });
        var reader = response.body.getReader();
        var decoder = new TextDecoder();
        var pending = '';
        function read() {
          return reader.read().then(function (chunk) {
            if (chunk.done) return;
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

    fn row() -> DeploymentRow {
        DeploymentRow {
            namespace: "team-a".into(),
            name: "chat".into(),
            href: "/deployments/team-a/chat".into(),
            phase: Some(DeploymentPhase::Ready),
            ready_replicas: 1,
            replicas: 1,
            endpoint: Some("http://chat.team-a.svc:8000/v1".into()),
            model_id: Some("ft:a".into()),
            source: "FineTuneJob story (best)".into(),
            message: None,
        }
    }

    #[test]
    fn the_playground_keeps_the_settings_and_shows_the_answer_escaped() {
        let models = ["anneal-tiny".to_owned(), "ft:a".to_owned()];
        let settings = ChatSettings {
            message: "<hi>".into(),
            ..default_settings("ft:a")
        };
        let exchange = Exchange {
            answer: Some("<b>Hello</b>".into()),
            error: None,
        };
        let html = deployment_page(&row(), &models, &settings, &exchange).into_string();
        assert!(html.contains(r#"<option value="ft:a" selected>"#), "{html}");
        assert!(html.contains(r#"<option value="anneal-tiny">"#), "{html}");
        assert!(html.contains("&lt;b&gt;Hello&lt;/b&gt;"), "{html}");
        assert!(html.contains("&lt;hi&gt;</textarea>"), "{html}");
        assert!(html.contains(r#"action="/deployments/team-a/chat/playground""#));
        assert!(html.contains("curl -N http://chat.team-a.svc:8000/v1/chat/completions"));
        assert!(!html.contains("Not ready"));
        assert_eq!(
            html.matches("<script").count(),
            1,
            "the page's own script only"
        );
        assert!(!html.contains("<script src"), "nothing loaded");
    }

    #[test]
    fn the_list_links_each_deployment() {
        let html = deployments_page(&[row()]).into_string();
        assert!(
            html.contains(r#"href="/deployments/team-a/chat""#),
            "{html}"
        );
        assert!(html.contains("1/1") && html.contains("FineTuneJob story (best)"));
        assert!(!html.contains("http-equiv"), "a ready list does not reload");
    }
}
