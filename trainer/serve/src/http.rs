//! The HTTP side of `trainer serve`: OpenAI's `/v1/models` and `/v1/chat/completions`
//! (whole or streamed as server-sent events), `/v1/images/generations` for image
//! models (`image_http.rs`), adapters loaded and unloaded at runtime
//! (`runtime_lora.rs`), `/health` and `/metrics`.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::Stream;
use serde_json::{Value, json};
use tokio::sync::mpsc::unbounded_channel;
use tower_http::timeout::RequestBodyTimeoutLayer;

use super::api_error::ApiError;
use super::chat_request::{ChatRequest, parse_chat_request};
use super::engine::{EngineMessage, Submission};
pub use super::image_http::ImageSide;
use super::image_http::image_generations;
use super::reply::{Reply, ReplyPart, Slot, finish_name};
use super::runtime_lora::{RuntimeLora, load_lora_adapter, unload_lora_adapter};
use super::serve_metrics::ServeMetrics;
use anneal_model::chat::ModelTokenizer;
use anneal_model::generate::{FinishReason, SamplingParams};

/// A model clients can name: the base model (index 0) or an adapter on it.
#[derive(Debug, Clone)]
pub struct ServedModel {
    pub name: String,
    /// The base model's name, for adapters.
    pub parent: Option<String>,
    /// Its index in the engine (or the image worker): 0 for the base.
    pub index: usize,
    /// Where an adapter was read from, as given (`--adapter` or `lora_path`): listed
    /// as `root`, as vLLM lists an adapter's path, so a caller can tell a name's
    /// source changed.
    pub source: Option<String>,
}

/// What generates: a chat model's engine, or an image pipeline's worker.
pub enum Generator {
    Chat(ChatSide),
    Image(ImageSide),
}

/// A chat model's tokenizer, context and engine queue.
pub struct ChatSide {
    pub tokenizer: Arc<ModelTokenizer>,
    /// Prompt plus reply must fit in this many tokens.
    pub context_length: usize,
    pub submit: Sender<EngineMessage>,
}

/// What every handler shares.
pub struct ServerState {
    /// The base first, then the adapters; runtime loads and unloads change it.
    pub models: RwLock<Vec<ServedModel>>,
    /// Present with `--enable-runtime-lora`.
    pub runtime_lora: Option<RuntimeLora>,
    pub generator: Generator,
    pub in_flight: Arc<AtomicUsize>,
    /// Requests running plus waiting beyond which new ones get 429.
    pub max_in_flight: usize,
    pub shutting_down: AtomicBool,
    pub metrics: ServeMetrics,
    pub started: u64,
    /// Time a request body may go without a byte before the request is refused (so a
    /// body that never arrives does not hold a connection until shutdown).
    pub body_timeout: Duration,
}

pub fn router(state: Arc<ServerState>) -> Router {
    let body_timeout = RequestBodyTimeoutLayer::new(state.body_timeout);
    Router::new()
        .route("/v1/models", get(list_models))
        .route("/v1/models/{*id}", get(get_model))
        .route(
            "/v1/chat/completions",
            post(chat_completions).layer(body_timeout.clone()),
        )
        .route(
            "/v1/images/generations",
            post(image_generations).layer(body_timeout.clone()),
        )
        .route(
            "/v1/load_lora_adapter",
            post(load_lora_adapter).layer(body_timeout.clone()),
        )
        .route(
            "/v1/unload_lora_adapter",
            post(unload_lora_adapter).layer(body_timeout),
        )
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .with_state(state)
}

fn model_object(state: &ServerState, model: &ServedModel) -> Value {
    json!({
        "id": model.name,
        "object": "model",
        "created": state.started,
        "owned_by": "anneal",
        "root": model.source.as_deref().unwrap_or(&model.name),
        "parent": model.parent,
    })
}

async fn list_models(State(state): State<Arc<ServerState>>) -> Json<Value> {
    let data: Vec<Value> = (state.models.read().expect("models lock").iter())
        .map(|m| model_object(&state, m))
        .collect();
    Json(json!({"object": "list", "data": data}))
}

async fn get_model(State(state): State<Arc<ServerState>>, Path(id): Path<String>) -> Response {
    let found = (state.models.read().expect("models lock").iter())
        .find(|m| m.name == id)
        .map(|model| model_object(&state, model));
    match found {
        Some(model) => Json(model).into_response(),
        None => ApiError::model_not_found(&id, &model_names(&state)).into_response(),
    }
}

impl ServerState {
    /// The served model's index (0: the base, then the adapters), or 404 listing them.
    pub(crate) fn model_index(&self, name: &str) -> Result<usize, ApiError> {
        let models = self.models.read().expect("models lock");
        served_index(&models, name)
    }
}

/// `name`'s index among `models`, or 404 listing them.
fn served_index(models: &[ServedModel], name: &str) -> Result<usize, ApiError> {
    models
        .iter()
        .find(|m| m.name == name)
        .map(|m| m.index)
        .ok_or_else(|| {
            let names: Vec<String> = models.iter().map(|m| m.name.clone()).collect();
            ApiError::model_not_found(name, &names)
        })
}

pub(crate) fn model_names(state: &ServerState) -> Vec<String> {
    (state.models.read().expect("models lock").iter())
        .map(|m| m.name.clone())
        .collect()
}

async fn health(State(state): State<Arc<ServerState>>) -> Response {
    if state.shutting_down.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    if (state.runtime_lora.as_ref()).is_some_and(|r| r.starting.load(Ordering::SeqCst)) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "loading the adapters of --adapters-file\n",
        )
            .into_response();
    }
    (StatusCode::OK, "ok\n").into_response()
}

async fn metrics(State(state): State<Arc<ServerState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// The body, or the refusal (counted) of one over axum's limit (2 MiB, far past any
/// context) or cut short, in OpenAI's error shape.
pub(crate) fn read_body(
    state: &ServerState,
    body: Result<Bytes, BytesRejection>,
) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        let error = ApiError {
            status: rejection.status(),
            ..ApiError::malformed(format!(
                "The body could not be read: {}",
                rejection.body_text()
            ))
        };
        state
            .metrics
            .requests
            .with_label_values(&["", error.status.as_str()])
            .inc();
        error
    })
}

/// Counts a refused request under its model's name when it named a served one.
pub(crate) fn count_refusal(state: &ServerState, body: &[u8], error: ApiError) -> Response {
    let model = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("model").and_then(Value::as_str).map(str::to_owned))
        .filter(|m| model_names(state).contains(m))
        .unwrap_or_default();
    state
        .metrics
        .requests
        .with_label_values(&[&model, error.status.as_str()])
        .inc();
    error.into_response()
}

async fn chat_completions(
    State(state): State<Arc<ServerState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let arrived = Instant::now();
    let body = match read_body(&state, body) {
        Ok(body) => body,
        Err(refused) => return refused.into_response(),
    };
    let started = prepare_on_blocking_pool(&state, &body, move |state, body| {
        start_completion(state, body, arrived)
    })
    .await;
    match started {
        Ok((request, reply, prompt_tokens)) if request.stream => {
            stream_reply(request, reply, prompt_tokens).into_response()
        }
        Ok((request, reply, prompt_tokens)) => whole_reply(request, reply, prompt_tokens).await,
        Err(error) => count_refusal(&state, &body, error),
    }
}

/// Runs `prepare` (parsing the body, tokenizing a prompt of up to 2 MiB, taking a
/// place in the queue) on the blocking pool (a few threads, the rest queued), never on
/// the workers that answer /health and stream the replies.
pub(crate) async fn prepare_on_blocking_pool<T: Send + 'static>(
    state: &Arc<ServerState>,
    body: &Bytes,
    prepare: impl FnOnce(&ServerState, &[u8]) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let (state, body) = (state.clone(), body.clone());
    tokio::task::spawn_blocking(move || prepare(&state, &body))
        .await
        .unwrap_or_else(|_| Err(ApiError::internal("the request could not be prepared")))
}

/// Checks the request, tokenizes it, takes a place in the queue and hands it to the engine.
fn start_completion(
    state: &ServerState,
    body: &[u8],
    arrived: Instant,
) -> Result<(ChatRequest, Reply, usize), ApiError> {
    if state.shutting_down.load(Ordering::SeqCst) {
        return Err(ApiError::shutting_down());
    }
    let request = parse_chat_request(body)?;
    let Generator::Chat(chat) = &state.generator else {
        return Err(ApiError::wrong_endpoint(
            "This server serves an image model: use /v1/images/generations",
        ));
    };
    // Held until the request is queued, so an unload that takes the name off the list
    // comes after it in the engine's queue, and waits for it.
    let models = state.models.read().expect("models lock");
    let model = served_index(&models, &request.model)?;
    let prompt = chat
        .tokenizer
        .encode_chat(&request.messages, true)
        .map_err(|e| ApiError::invalid("messages", format!("messages: {e}")))?
        .ids;
    let context = chat.context_length;
    if prompt.len() >= context {
        return Err(ApiError::context_length(
            "messages",
            format!(
                "This model's maximum context length is {context} tokens, and the messages take {} tokens, leaving none for the reply. Shorten the messages.",
                prompt.len()
            ),
        ));
    }
    let room = context - prompt.len();
    let max_new_tokens = match request.max_tokens {
        Some(asked) if asked > room => {
            return Err(ApiError::context_length(
                "max_tokens",
                format!(
                    "This model's maximum context length is {context} tokens. The messages take {} tokens and max_tokens asks for {asked} more; at most {room} fit.",
                    prompt.len()
                ),
            ));
        }
        Some(asked) => asked,
        None => room,
    };
    let slot = Slot::take(&state.in_flight, state.max_in_flight, &state.metrics)
        .ok_or_else(|| ApiError::overloaded(state.max_in_flight))?;
    let (events, receiver) = unbounded_channel();
    let params = SamplingParams {
        max_new_tokens,
        temperature: request.temperature,
        top_p: request.top_p,
        seed: request.seed.unwrap_or_else(rand::random),
        stop: Vec::new(),
    };
    chat.submit
        .send(EngineMessage::Submit(Submission {
            model,
            prompt: prompt.clone(),
            eos: if request.ignore_eos {
                Vec::new()
            } else {
                chat.tokenizer.eos_token_ids().to_vec()
            },
            params,
            events,
        }))
        .map_err(|_| ApiError::shutting_down())?;
    drop(models);
    let reply = Reply::new(
        receiver,
        request.stop.clone(),
        chat.tokenizer.clone(),
        request.model.clone(),
        prompt.len(),
        state.metrics.clone(),
        arrived,
        slot,
    );
    Ok((request, reply, prompt.len()))
}

fn completion_id() -> String {
    format!("chatcmpl-{:032x}", rand::random::<u128>())
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn usage(prompt_tokens: usize, completion_tokens: usize) -> Value {
    json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    })
}

async fn whole_reply(request: ChatRequest, mut reply: Reply, prompt_tokens: usize) -> Response {
    let mut text = String::new();
    let finish = loop {
        match reply.next().await {
            Some(ReplyPart::Text(piece)) => text.push_str(&piece),
            Some(ReplyPart::Finished(reason)) => break reason,
            Some(ReplyPart::Failed(message)) => return ApiError::internal(message).into_response(),
            None => return ApiError::internal("the reply ended early").into_response(),
        }
    };
    Json(json!({
        "id": completion_id(),
        "object": "chat.completion",
        "created": unix_now(),
        "model": request.model,
        "system_fingerprint": null,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "logprobs": null,
            "finish_reason": finish_name(finish),
        }],
        "usage": usage(prompt_tokens, reply.completion_tokens),
    }))
    .into_response()
}

/// The reply as `chat.completion.chunk` events: the role first, then text pieces, then
/// the finish reason, the usage when asked for, and `[DONE]`.
fn stream_reply(
    request: ChatRequest,
    reply: Reply,
    prompt_tokens: usize,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let id = completion_id();
    let created = unix_now();
    let chunk = move |model: &str, delta: Value, finish: Option<FinishReason>| {
        json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": null,
            "choices": [{
                "index": 0,
                "delta": delta,
                "logprobs": null,
                "finish_reason": finish.map(finish_name),
            }],
        })
    };
    enum Stage {
        Role,
        Body,
        Usage,
        Done,
        Over,
    }
    let state = (Stage::Role, reply, request, chunk);
    let events = futures_util::stream::unfold(
        state,
        move |(stage, mut reply, request, chunk)| async move {
            let data = |value: Value| Event::default().data(value.to_string());
            let (event, next) = match stage {
                Stage::Role => (
                    data(chunk(
                        &request.model,
                        json!({"role": "assistant", "content": ""}),
                        None,
                    )),
                    Stage::Body,
                ),
                Stage::Body => match reply.next().await {
                    Some(ReplyPart::Text(text)) => (
                        data(chunk(&request.model, json!({"content": text}), None)),
                        Stage::Body,
                    ),
                    Some(ReplyPart::Finished(reason)) => {
                        let next = if request.include_usage {
                            Stage::Usage
                        } else {
                            Stage::Done
                        };
                        (data(chunk(&request.model, json!({}), Some(reason))), next)
                    }
                    Some(ReplyPart::Failed(message)) => {
                        (data(ApiError::internal(message).body()), Stage::Done)
                    }
                    None => (
                        data(ApiError::internal("the reply ended early").body()),
                        Stage::Done,
                    ),
                },
                Stage::Usage => {
                    let mut last = chunk(&request.model, json!({}), None);
                    last["choices"] = json!([]);
                    last["usage"] = usage(prompt_tokens, reply.completion_tokens);
                    (data(last), Stage::Done)
                }
                Stage::Done => (Event::default().data("[DONE]"), Stage::Over),
                Stage::Over => return None,
            };
            Some((Ok(event), (next, reply, request, chunk)))
        },
    );
    Sse::new(events).keep_alive(KeepAlive::default())
}
