//! Asking a served model: any OpenAI-compatible `/chat/completions` server (a
//! ModelDeployment's endpoint, `trainer serve`, a hosted API), one request at a time
//! from a current-thread runtime, with the bearer token from the credentials Secret.
//!
//! A request that fails in a way a retry can mend (no connection, a timeout, 429 or a
//! 5xx) is tried again after a pause that doubles; one the server refuses (4xx) or an
//! unreadable reply ends the evaluation with the model's name and the server's words.

use std::time::Duration;

use anneal_crds::dataset::ChatMessage;
use serde_json::{Value, json};

/// How long one answer may take: a long generation on a busy server.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Tries per request, and the first pause between them (doubled each time).
const ATTEMPTS: u32 = 4;
const FIRST_PAUSE: Duration = Duration::from_millis(500);

/// Where a served model is and what the requests name.
#[derive(Clone, Debug, PartialEq)]
pub struct EndpointTarget {
    /// The API's base URL, ending before `/chat/completions`.
    pub url: String,
    /// The `model` to name; `None` asks the server's `/models` for its first.
    pub model: Option<String>,
    /// Sent as the bearer token.
    pub api_key: Option<String>,
}

/// Why a served model did not answer.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("{url}: {message}")]
    Request {
        url: String,
        message: String,
        /// Whether a later try may pass (the server out of reach or overloaded).
        retryable: bool,
    },
    #[error("{url}: starting the HTTP client: {message}")]
    Client { url: String, message: String },
}

/// The sampling a request asks for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RequestSettings {
    pub temperature: f64,
    pub max_tokens: u32,
    pub seed: u64,
}

/// A connection to one served model.
pub struct ChatEndpoint {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
    url: String,
    model: String,
    api_key: Option<String>,
}

impl EndpointError {
    pub fn may_pass_on_retry(&self) -> bool {
        matches!(
            self,
            EndpointError::Request {
                retryable: true,
                ..
            }
        )
    }
}

impl ChatEndpoint {
    /// Connects, and learns the model's name from `/models` when the target has none.
    pub fn connect(target: &EndpointTarget) -> Result<Self, EndpointError> {
        anneal_crds::storage::install_crypto_provider();
        let url = target.url.trim_end_matches('/').to_owned();
        let client_error = |message: String| EndpointError::Client {
            url: url.clone(),
            message,
        };
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| client_error(error_chain(&e)))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| client_error(e.to_string()))?;
        let mut endpoint = Self {
            runtime,
            client,
            url,
            model: target.model.clone().unwrap_or_default(),
            api_key: target.api_key.clone(),
        };
        if target.model.is_none() {
            endpoint.model = endpoint.first_model()?;
        }
        Ok(endpoint)
    }

    /// The model the requests name.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The assistant's reply to `messages`.
    pub fn complete(
        &self,
        messages: &[ChatMessage],
        settings: RequestSettings,
    ) -> Result<String, EndpointError> {
        let body = json!({
            "model": self.model,
            "messages": messages
                .iter()
                .map(|m| json!({"role": m.role.as_str(), "content": m.content}))
                .collect::<Vec<_>>(),
            "temperature": settings.temperature,
            "max_tokens": settings.max_tokens,
            "seed": settings.seed,
            "stream": false,
        });
        let url = format!("{}/chat/completions", self.url);
        let reply = self.send_with_retries(&url, Some(&body))?;
        reply["choices"][0]["message"]["content"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| EndpointError::Request {
                url,
                message: format!(
                    "the reply has no choices[0].message.content: {}",
                    shorten(&reply.to_string())
                ),
                retryable: false,
            })
    }

    /// The first model `/models` lists.
    fn first_model(&self) -> Result<String, EndpointError> {
        let url = format!("{}/models", self.url);
        let reply = self.send_with_retries(&url, None)?;
        reply["data"][0]["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| EndpointError::Request {
                url,
                message: format!(
                    "no model to ask: the reply lists none (data[0].id); name one: {}",
                    shorten(&reply.to_string())
                ),
                retryable: false,
            })
    }

    /// POSTs `body` (GETs without one) and reads the JSON reply, retrying what a
    /// retry can mend.
    fn send_with_retries(&self, url: &str, body: Option<&Value>) -> Result<Value, EndpointError> {
        let mut pause = FIRST_PAUSE;
        let mut attempt = 1;
        loop {
            match self.send_once(url, body) {
                Ok(value) => return Ok(value),
                Err(Failure::Retry(message)) if attempt < ATTEMPTS => {
                    eprintln!(
                        "{url}: {message}; trying again in {:.1} s ({attempt} of {ATTEMPTS})",
                        pause.as_secs_f64()
                    );
                    std::thread::sleep(pause);
                    pause *= 2;
                    attempt += 1;
                }
                Err(failure) => {
                    let (message, retryable) = match failure {
                        Failure::Retry(message) => (message, true),
                        Failure::Final(message) => (message, false),
                    };
                    return Err(EndpointError::Request {
                        url: url.to_owned(),
                        message,
                        retryable,
                    });
                }
            }
        }
    }

    fn send_once(&self, url: &str, body: Option<&Value>) -> Result<Value, Failure> {
        let mut request = match body {
            Some(body) => self
                .client
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string()),
            None => self.client.get(url),
        };
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        self.runtime.block_on(async {
            let response = request
                .send()
                .await
                .map_err(|e| Failure::Retry(error_chain(&e)))?;
            let status = response.status();
            let text = response
                .text()
                .await
                .map_err(|e| Failure::Retry(error_chain(&e)))?;
            if status.as_u16() == 429 || status.is_server_error() {
                return Err(Failure::Retry(format!("{status}: {}", shorten(&text))));
            }
            if !status.is_success() {
                return Err(Failure::Final(format!("{status}: {}", shorten(&text))));
            }
            serde_json::from_str(&text).map_err(|e| {
                Failure::Final(format!("the reply is not JSON ({e}): {}", shorten(&text)))
            })
        })
    }
}

enum Failure {
    Retry(String),
    Final(String),
}

/// An error with its causes, which is where reqwest says what went wrong.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// At most 300 characters of a server's words.
fn shorten(text: &str) -> String {
    const SHOWN: usize = 300;
    match text.char_indices().nth(SHOWN) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}
