//! Errors in OpenAI's JSON shape, `{"error": {"message", "type", "param", "code"}}`,
//! with the status code OpenAI's clients expect for each kind.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// A request the server refuses or could not serve.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// OpenAI's `type`: `invalid_request_error`, `not_found_error`, `rate_limit_error`, ...
    pub kind: &'static str,
    /// The request field at fault, e.g. `messages[1].role`.
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

impl ApiError {
    /// 400 naming the field.
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param: Some(param.into()),
            code: None,
        }
    }

    /// 400 for a body that is not JSON at all.
    pub fn malformed(message: impl Into<String>) -> Self {
        Self {
            param: None,
            ..Self::invalid("", message)
        }
    }

    /// 400: the prompt (or prompt plus `max_tokens`) does not fit the model's context.
    pub fn context_length(param: &str, message: String) -> Self {
        Self {
            code: Some("context_length_exceeded"),
            ..Self::invalid(param, message)
        }
    }

    /// 400: the endpoint does not fit the kind of model served (chat or images).
    pub fn wrong_endpoint(message: &str) -> Self {
        Self {
            code: Some("unsupported_endpoint"),
            ..Self::malformed(message)
        }
    }

    /// 404: no model of that name is served here.
    pub fn model_not_found(model: &str, served: &[String]) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: format!(
                "The model `{model}` does not exist on this server; it serves: {}",
                served.join(", ")
            ),
            kind: "invalid_request_error",
            param: Some("model".to_owned()),
            code: Some("model_not_found"),
        }
    }

    /// 429: too many requests are running and waiting already.
    pub fn overloaded(limit: usize) -> Self {
        Self {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: format!(
                "The server is busy: {limit} requests are running or waiting already. Retry shortly."
            ),
            kind: "rate_limit_error",
            param: None,
            code: Some("rate_limit_exceeded"),
        }
    }

    /// 503: the server is shutting down.
    pub fn shutting_down() -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: "The server is shutting down; retry on another replica.".to_owned(),
            kind: "server_error",
            param: None,
            code: None,
        }
    }

    /// 500: generation failed inside the server (the request is dropped, the server lives on).
    pub fn internal(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
            kind: "server_error",
            param: None,
            code: None,
        }
    }

    /// The JSON body, also sent as a server-sent event when a stream fails midway.
    pub fn body(&self) -> serde_json::Value {
        json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        })
    }
}

/// A request body as `T`: not JSON, or not an object, is a malformed request; a field
/// of the wrong type, or one `T` does not know, is refused by its path
/// (`messages[1].role`, `temprature`).
pub fn parse_body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::malformed(format!("The body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::malformed("The body must be a JSON object"));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        // The path ends at the field at fault, an unknown one's own name included.
        let param = e.path().to_string();
        ApiError::invalid(param.clone(), format!("{param}: {}", e.into_inner()))
    })
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}
