//! `POST /v1/chat/completions` bodies: parsed and checked into a [`ChatRequest`], or
//! refused with an error that names the field, as OpenAI's API does.

use anneal_crds::dataset::{ChatMessage, Role};
use serde::Deserialize;
use serde_json::Value;

use super::api_error::{ApiError, parse_body};

/// OpenAI's limit on stop sequences.
const MAX_STOP_SEQUENCES: usize = 4;

/// A checked request; the model name is resolved by the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    /// `max_completion_tokens`, else `max_tokens`; `None`: up to the context's end.
    pub max_tokens: Option<usize>,
    pub temperature: f32,
    pub top_p: f32,
    pub seed: Option<u64>,
    pub stop: Vec<String>,
    pub stream: bool,
    /// `stream_options.include_usage`: a last chunk with the token counts.
    pub include_usage: bool,
    /// vLLM's extension: generate through end-of-sequence tokens up to the limit
    /// (for benchmarks that need replies of a fixed length).
    pub ignore_eos: bool,
}

/// The body as sent. Fields OpenAI defines that this server cannot honour are read so
/// that a request using them is refused by name rather than silently served differently.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    model: Option<String>,
    messages: Option<Vec<BodyMessage>>,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    seed: Option<i64>,
    stop: Option<Stop>,
    n: Option<u64>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    ignore_eos: Option<bool>,
    // Accepted when they ask for nothing beyond plain generation.
    frequency_penalty: Option<f64>,
    presence_penalty: Option<f64>,
    logprobs: Option<bool>,
    top_logprobs: Option<u64>,
    logit_bias: Option<serde_json::Map<String, Value>>,
    tools: Option<Vec<Value>>,
    tool_choice: Option<Value>,
    parallel_tool_calls: Option<bool>,
    response_format: Option<Value>,
    // Bookkeeping fields that change nothing here.
    user: Option<Value>,
    metadata: Option<Value>,
    store: Option<Value>,
    service_tier: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BodyMessage {
    role: String,
    content: Option<Content>,
    name: Option<String>,
    // Read so that tool turns are refused by their role, not as unknown fields.
    tool_call_id: Option<Value>,
    tool_calls: Option<Vec<Value>>,
    refusal: Option<Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Deserialize)]
struct ContentPart {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamOptions {
    include_usage: Option<bool>,
}

/// Parses and checks a request body.
pub fn parse_chat_request(bytes: &[u8]) -> Result<ChatRequest, ApiError> {
    check_body(parse_body(bytes)?)
}

fn check_body(body: Body) -> Result<ChatRequest, ApiError> {
    let model = body.model.filter(|m| !m.is_empty()).ok_or_else(|| {
        ApiError::invalid(
            "model",
            "`model` is required: the name of a model from GET /v1/models",
        )
    })?;
    let messages = body
        .messages
        .ok_or_else(|| ApiError::invalid("messages", "`messages` is required"))?;
    if messages.is_empty() {
        return Err(ApiError::invalid(
            "messages",
            "`messages` must hold at least one message",
        ));
    }
    let messages = messages
        .into_iter()
        .enumerate()
        .map(|(i, m)| check_message(i, m))
        .collect::<Result<Vec<_>, _>>()?;

    if let Some(n) = body.n.filter(|&n| n != 1) {
        return Err(ApiError::invalid(
            "n",
            format!("`n` must be 1 on this server, got {n}"),
        ));
    }
    let max_tokens = match (body.max_completion_tokens, body.max_tokens) {
        (Some(v), _) => Some(("max_completion_tokens", v)),
        (None, Some(v)) => Some(("max_tokens", v)),
        (None, None) => None,
    };
    if let Some((field, 0)) = max_tokens {
        return Err(ApiError::invalid(
            field,
            format!("`{field}` must be at least 1"),
        ));
    }
    let temperature = body.temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(ApiError::invalid(
            "temperature",
            format!("`temperature` must be between 0 and 2, got {temperature}"),
        ));
    }
    let top_p = body.top_p.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(ApiError::invalid(
            "top_p",
            format!("`top_p` must be greater than 0 and at most 1, got {top_p}"),
        ));
    }
    let stop = match body.stop {
        None => Vec::new(),
        Some(Stop::One(s)) => vec![s],
        Some(Stop::Many(list)) => list,
    };
    if stop.len() > MAX_STOP_SEQUENCES {
        return Err(ApiError::invalid(
            "stop",
            format!(
                "`stop` takes at most {MAX_STOP_SEQUENCES} sequences, got {}",
                stop.len()
            ),
        ));
    }
    if let Some(i) = stop.iter().position(String::is_empty) {
        return Err(ApiError::invalid(
            format!("stop[{i}]"),
            "a stop sequence must not be empty",
        ));
    }
    refuse_unsupported(&body.frequency_penalty, "frequency_penalty", |v| *v == 0.0)?;
    refuse_unsupported(&body.presence_penalty, "presence_penalty", |v| *v == 0.0)?;
    refuse_unsupported(&body.logprobs, "logprobs", |v| !v)?;
    refuse_unsupported(&body.top_logprobs, "top_logprobs", |v| *v == 0)?;
    refuse_unsupported(&body.logit_bias, "logit_bias", serde_json::Map::is_empty)?;
    refuse_unsupported(&body.tools, "tools", Vec::is_empty)?;
    refuse_unsupported(&body.tool_choice, "tool_choice", |v| {
        v == "none" || v.is_null()
    })?;
    refuse_unsupported(&body.response_format, "response_format", |v| {
        v.get("type").and_then(Value::as_str) == Some("text")
    })?;
    let _ = (
        body.parallel_tool_calls,
        body.user,
        body.metadata,
        body.store,
        body.service_tier,
    );

    let stream = body.stream.unwrap_or(false);
    let include_usage = body
        .stream_options
        .and_then(|o| o.include_usage)
        .unwrap_or(false);
    Ok(ChatRequest {
        model,
        messages,
        max_tokens: max_tokens.map(|(_, v)| usize::try_from(v).unwrap_or(usize::MAX)),
        temperature: temperature as f32,
        top_p: top_p as f32,
        // Negative seeds are allowed by OpenAI; their bits make a seed as good as any.
        seed: body.seed.map(|s| s as u64),
        stop,
        stream,
        include_usage,
        ignore_eos: body.ignore_eos.unwrap_or(false),
    })
}

fn check_message(index: usize, message: BodyMessage) -> Result<ChatMessage, ApiError> {
    let field = |name: &str| format!("messages[{index}].{name}");
    let role = match message.role.as_str() {
        // OpenAI's newer name for the system role.
        "system" | "developer" => Role::System,
        "user" => Role::User,
        "assistant" => Role::Assistant,
        other => {
            return Err(ApiError::invalid(
                field("role"),
                format!(
                    "messages[{index}].role: {other:?} is not supported; use \"system\", \"developer\", \"user\" or \"assistant\" (this server has no tools)"
                ),
            ));
        }
    };
    let _ = (message.name, message.tool_call_id, message.refusal);
    if message.tool_calls.is_some_and(|calls| !calls.is_empty()) {
        return Err(ApiError::invalid(
            field("tool_calls"),
            format!("messages[{index}].tool_calls: this server has no tools"),
        ));
    }
    let content = match message.content {
        Some(Content::Text(text)) => text,
        Some(Content::Parts(parts)) => {
            let mut text = String::new();
            for (i, part) in parts.into_iter().enumerate() {
                match (part.kind.as_str(), part.text) {
                    ("text", Some(piece)) => text.push_str(&piece),
                    (kind, _) => {
                        return Err(ApiError::invalid(
                            format!("messages[{index}].content[{i}]"),
                            format!(
                                "messages[{index}].content[{i}]: only text parts are supported, got type {kind:?}"
                            ),
                        ));
                    }
                }
            }
            text
        }
        None => {
            return Err(ApiError::invalid(
                field("content"),
                format!("messages[{index}].content is required"),
            ));
        }
    };
    Ok(ChatMessage { role, content })
}

fn refuse_unsupported<T>(
    value: &Option<T>,
    field: &str,
    harmless: impl Fn(&T) -> bool,
) -> Result<(), ApiError> {
    match value {
        Some(v) if !harmless(v) => Err(ApiError::invalid(
            field,
            format!("`{field}` is not supported by this server"),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<ChatRequest, ApiError> {
        parse_chat_request(body.as_bytes())
    }

    fn param_of(body: &str) -> Option<String> {
        let error = parse(body).unwrap_err();
        assert_eq!(
            error.status,
            axum::http::StatusCode::BAD_REQUEST,
            "{error:?}"
        );
        error.param
    }

    #[test]
    fn a_minimal_request_takes_openai_defaults() {
        let request =
            parse(r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#).unwrap();
        assert_eq!(request.model, "m");
        assert_eq!(
            request.messages,
            vec![ChatMessage {
                role: Role::User,
                content: "hi".into()
            }]
        );
        assert_eq!((request.temperature, request.top_p), (1.0, 1.0));
        assert_eq!(
            (request.max_tokens, request.seed, request.stream),
            (None, None, false)
        );
    }

    #[test]
    fn every_field_is_read() {
        let request = parse(
            r#"{"model":"m","messages":[{"role":"developer","content":[{"type":"text","text":"be "},{"type":"text","text":"brief"}]},{"role":"user","content":"q"}],
                "max_tokens":9,"max_completion_tokens":7,"temperature":0,"top_p":0.5,"seed":-1,
                "stop":["a","b"],"n":1,"stream":true,"stream_options":{"include_usage":true},
                "frequency_penalty":0,"logprobs":false,"user":"u","ignore_eos":true}"#,
        )
        .unwrap();
        assert_eq!(
            request.messages[0],
            ChatMessage {
                role: Role::System,
                content: "be brief".into()
            }
        );
        assert_eq!(request.max_tokens, Some(7), "max_completion_tokens wins");
        assert_eq!((request.temperature, request.top_p), (0.0, 0.5));
        assert_eq!(request.seed, Some(u64::MAX));
        assert_eq!(request.stop, ["a", "b"]);
        assert!(request.stream && request.include_usage && request.ignore_eos);
        assert_eq!(
            parse(r#"{"model":"m","messages":[{"role":"user","content":"q"}],"stop":"x"}"#)
                .unwrap()
                .stop,
            ["x"]
        );
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (r#"{"messages":[{"role":"user","content":"q"}]}"#, "model"),
            (r#"{"model":"m"}"#, "messages"),
            (r#"{"model":"m","messages":[]}"#, "messages"),
            (
                r#"{"model":"m","messages":[{"role":"tool","content":"q","tool_call_id":"1"}]}"#,
                "messages[0].role",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"q"},{"role":"assistant"}]}"#,
                "messages[1].content",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{}}]}]}"#,
                "messages[0].content[0]",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"q","bogus":1}]}"#,
                "messages[0].bogus",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"q"}],"temperature":"hot"}"#,
                "temperature",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"q"}],"temperature":2.5}"#,
                "temperature",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"q"}],"top_p":0}"#,
                "top_p",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"q"}],"max_tokens":0}"#,
                "max_tokens",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"q"}],"max_tokens":-3}"#,
                "max_tokens",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"q"}],"n":2}"#,
                "n",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"q"}],"stop":["a","b","c","d","e"]}"#,
                "stop",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"q"}],"stop":["a",""]}"#,
                "stop[1]",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"q"}],"tools":[{"type":"function"}]}"#,
                "tools",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"q"}],"presence_penalty":1}"#,
                "presence_penalty",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"q"}],"temprature":1}"#,
                "temprature",
            ),
        ];
        for (body, field) in cases {
            assert_eq!(param_of(body).as_deref(), Some(field), "{body}");
        }
    }

    #[test]
    fn a_body_that_is_not_a_json_object_is_refused() {
        for body in ["", "{", "[1]", "null"] {
            let error = parse(body).unwrap_err();
            assert_eq!(error.status, axum::http::StatusCode::BAD_REQUEST);
            assert_eq!(error.param, None, "{body}");
        }
    }
}
