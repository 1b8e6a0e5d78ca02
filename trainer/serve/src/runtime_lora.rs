//! Adapters loaded and unloaded while the server runs, in vLLM's shape:
//! `POST /v1/load_lora_adapter {"lora_name", "lora_path"}` and
//! `POST /v1/unload_lora_adapter {"lora_name"}`, answered only with
//! `--enable-runtime-lora` (else 404 saying so), for chat models, and with
//! `--runtime-lora-token` only to callers that present it (the operator, for a
//! ModelDeployment's pods).
//!
//! A load brings the folder local (a path, `file://`, `s3://` or a hub URI, with the
//! server's own credentials), has the engine attach it to the base between two
//! rounds, and only then lists the name, so no request sees a half-loaded adapter.
//! An unload takes the name off the list first (new requests for it get 404), then
//! answers once the requests already running on it have finished and its weights are
//! dropped. One change at a time.
//!
//! With `--adapters-file`, the adapters it lists are loaded the same way as soon as
//! the server runs, and `/health` answers 503 until they are: a server restarted in
//! its pod is ready again only with the adapters it served.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use anneal_crds::bearer::{bearer_token_of, tokens_match};
use anneal_sources::{FolderSource, make_local};
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::sync::oneshot;

use crate::api_error::{ApiError, parse_body};
use crate::engine::EngineMessage;
use crate::http::{Generator, ServedModel, ServerState, read_body};

/// What runtime changes need, present when `--enable-runtime-lora` is on.
pub struct RuntimeLora {
    /// Where remote adapters are downloaded, a folder each.
    pub work_dir: PathBuf,
    /// Adapters served at once at most.
    pub max_loras: usize,
    /// The bearer token a change needs, if any.
    token: Option<String>,
    /// The engine index the next loaded adapter takes (indexes are never reused).
    next_index: AtomicUsize,
    /// One load or unload at a time.
    changing: tokio::sync::Mutex<()>,
    /// Folders downloaded for adapters loaded at runtime, by engine index: removed
    /// with the adapter.
    downloaded: Mutex<HashMap<usize, PathBuf>>,
    /// `--adapters-file`: loaded at start.
    startup: Option<PathBuf>,
    /// Until the start's adapters are loaded, `/health` answers 503.
    pub starting: AtomicBool,
}

impl RuntimeLora {
    /// For a server whose models at start take indexes `0..served`.
    pub fn new(work_dir: PathBuf, max_loras: usize, served: usize) -> Self {
        Self {
            work_dir,
            max_loras,
            token: None,
            next_index: AtomicUsize::new(served),
            changing: tokio::sync::Mutex::new(()),
            downloaded: Mutex::new(HashMap::new()),
            startup: None,
            starting: AtomicBool::new(false),
        }
    }

    /// Loads the adapters `file` lists at start, `/health` answering 503 until then.
    pub fn with_startup_file(self, file: Option<PathBuf>) -> Self {
        Self {
            starting: AtomicBool::new(file.is_some()),
            startup: file,
            ..self
        }
    }

    /// Changes need `Authorization: Bearer TOKEN` when `token` is set.
    pub fn with_token(self, token: Option<String>) -> Self {
        Self { token, ..self }
    }

    /// 401 unless the request carries the token (when one is set).
    fn authorize(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(expected) = &self.token else {
            return Ok(());
        };
        let presented = (headers.get(AUTHORIZATION))
            .and_then(|value| value.to_str().ok())
            .and_then(bearer_token_of);
        if presented.is_some_and(|presented| tokens_match(presented, expected)) {
            return Ok(());
        }
        Err(ApiError {
            status: StatusCode::UNAUTHORIZED,
            code: Some("invalid_api_key"),
            ..ApiError::malformed(
                "Loading and unloading adapters needs `Authorization: Bearer TOKEN` with the server's --runtime-lora-token",
            )
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoadRequest {
    lora_name: Option<String>,
    lora_path: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UnloadRequest {
    lora_name: Option<String>,
    /// vLLM's clients may send it; names are what this server goes by.
    #[serde(default)]
    #[allow(dead_code)]
    lora_int_id: Option<i64>,
}

/// A field the request must have, or 400 naming it.
fn required(value: Option<String>, field: &str, what: &str) -> Result<String, ApiError> {
    value.ok_or_else(|| ApiError::invalid(field, format!("`{field}` is required: {what}")))
}

/// Names clients use in `model`: like the served base's, no spaces or control
/// characters, at most 256 bytes.
fn check_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty()
        || name.len() > 256
        || name.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(ApiError::invalid(
            "lora_name",
            format!("lora_name must be 1 to 256 characters without spaces, got {name:?}"),
        ));
    }
    Ok(())
}

/// The server's runtime-change settings and its chat side, or the refusal.
fn runtime_lora(state: &ServerState) -> Result<&RuntimeLora, ApiError> {
    let Some(runtime) = &state.runtime_lora else {
        return Err(ApiError {
            status: StatusCode::NOT_FOUND,
            code: Some("runtime_lora_disabled"),
            ..ApiError::malformed(
                "Loading and unloading LoRA adapters at runtime is off on this server: start trainer serve with --enable-runtime-lora (ANNEAL_ENABLE_RUNTIME_LORA=true)",
            )
        });
    };
    if !matches!(state.generator, Generator::Chat(_)) {
        return Err(ApiError::wrong_endpoint(
            "This server serves an image model: its adapters are given at start (--adapter)",
        ));
    }
    Ok(runtime)
}

/// The settings and the parsed body of a change this caller may make.
fn change_request<'s, T: serde::de::DeserializeOwned>(
    state: &'s ServerState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(&'s RuntimeLora, T), ApiError> {
    let runtime = runtime_lora(state)?;
    runtime.authorize(headers)?;
    Ok((runtime, parse_body(&read_body(state, body)?)?))
}

/// vLLM's answer to a change: its text on success (`added`, `removed`).
fn answer(outcome: Result<String, ApiError>, done: &str) -> Response {
    match outcome {
        Ok(name) => (
            StatusCode::OK,
            format!("Success: LoRA adapter '{name}' {done} successfully."),
        )
            .into_response(),
        Err(error) => error.into_response(),
    }
}

pub async fn load_lora_adapter(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    answer(load(&state, &headers, body).await, "added")
}

async fn load(
    state: &Arc<ServerState>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<String, ApiError> {
    let (runtime, request): (_, LoadRequest) = change_request(state, headers, body)?;
    load_adapter(state, runtime, request).await
}

/// Loads one adapter as `request` names it; its name once served.
async fn load_adapter(
    state: &Arc<ServerState>,
    runtime: &RuntimeLora,
    request: LoadRequest,
) -> Result<String, ApiError> {
    let lora_name = required(
        request.lora_name,
        "lora_name",
        "the name requests use in `model`",
    )?;
    let lora_path = required(
        request.lora_path,
        "lora_path",
        "the PEFT adapter's folder (a path, file://, s3:// or hf:// URI)",
    )?;
    check_name(&lora_name)?;
    let _one_change = runtime.changing.lock().await;
    let (name, base) = {
        let models = state.models.read().expect("models lock");
        if models.iter().any(|m| m.name == lora_name) {
            return Err(ApiError::invalid(
                "lora_name",
                format!("The lora adapter '{lora_name}' has already been loaded."),
            ));
        }
        let adapters = models.len() - 1;
        if adapters >= runtime.max_loras {
            return Err(ApiError::invalid(
                "lora_name",
                format!(
                    "{adapters} adapters are loaded, the most this server holds (--max-loras {}): unload one first",
                    runtime.max_loras
                ),
            ));
        }
        (lora_name, models[0].name.clone())
    };
    let index = runtime.next_index.fetch_add(1, Ordering::SeqCst);
    let source = FolderSource::from_flag(&lora_path, "lora_path")
        .map_err(|e| ApiError::invalid("lora_path", e.to_string()))?;
    let remote = !matches!(source, FolderSource::Local(_));
    let target = runtime.work_dir.join(format!("runtime-adapter-{index}"));
    let dir = {
        let target = target.clone();
        tokio::task::spawn_blocking(move || make_local(&source, &target, "lora_path"))
            .await
            .map_err(|_| ApiError::internal("the adapter could not be fetched"))?
            .map_err(|e| ApiError::invalid("lora_path", e.to_string()))?
    };
    let (done, loaded) = oneshot::channel();
    send(state, EngineMessage::Load { index, dir, done })?;
    let outcome = loaded.await.map_err(|_| ApiError::shutting_down())?;
    if let Err(message) = outcome {
        if remote {
            let _ = std::fs::remove_dir_all(&target);
        }
        return Err(ApiError::invalid(
            "lora_path",
            format!("{lora_path}: {message}"),
        ));
    }
    if remote {
        let mut downloaded = runtime.downloaded.lock().expect("downloads lock");
        downloaded.insert(index, target);
    }
    state
        .models
        .write()
        .expect("models lock")
        .push(ServedModel {
            name: name.clone(),
            parent: Some(base),
            index,
            source: Some(lora_path),
        });
    Ok(name)
}

pub async fn unload_lora_adapter(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    answer(unload(&state, &headers, body).await, "removed")
}

async fn unload(
    state: &Arc<ServerState>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<String, ApiError> {
    let (runtime, request): (_, UnloadRequest) = change_request(state, headers, body)?;
    let lora_name = required(request.lora_name, "lora_name", "the adapter's name")?;
    let _one_change = runtime.changing.lock().await;
    let index = {
        let mut models = state.models.write().expect("models lock");
        let Some(at) = models.iter().position(|m| m.name == lora_name) else {
            return Err(ApiError {
                status: StatusCode::NOT_FOUND,
                code: Some("lora_not_found"),
                ..ApiError::invalid(
                    "lora_name",
                    format!("The lora adapter '{lora_name}' cannot be found."),
                )
            });
        };
        if at == 0 {
            return Err(ApiError::invalid(
                "lora_name",
                format!("'{lora_name}' is the base model, not an adapter: it can not be unloaded"),
            ));
        }
        // Off the list first: from here on new requests for it are refused.
        models.remove(at).index
    };
    let (done, gone) = oneshot::channel();
    send(state, EngineMessage::Unload { index, done })?;
    // Answered once the requests already running on it have finished.
    gone.await.map_err(|_| ApiError::shutting_down())?;
    let folder = runtime
        .downloaded
        .lock()
        .expect("downloads lock")
        .remove(&index);
    if let Some(folder) = folder {
        let _ = std::fs::remove_dir_all(folder);
    }
    Ok(lora_name)
}

fn send(state: &ServerState, message: EngineMessage) -> Result<(), ApiError> {
    let Generator::Chat(chat) = &state.generator else {
        return Err(ApiError::wrong_endpoint(
            "This server serves an image model",
        ));
    };
    chat.submit
        .send(message)
        .map_err(|_| ApiError::shutting_down())
}

/// Loads the adapters of `--adapters-file` (a JSON list of load requests), then lets
/// `/health` answer 200. A missing or unreadable file, or an adapter that fails,
/// is said on stderr and left out: the base still serves, and whoever manages the
/// server (the operator) loads what is missing through the endpoint.
pub async fn load_startup_adapters(state: Arc<ServerState>) {
    let Some(runtime) = &state.runtime_lora else {
        return;
    };
    if let Some(file) = &runtime.startup {
        match matches!(state.generator, Generator::Chat(_)) {
            true => load_listed(&state, runtime, file).await,
            false => eprintln!(
                "trainer serve: {} ignored: an image server takes its adapters with --adapter",
                file.display()
            ),
        }
    }
    runtime.starting.store(false, Ordering::SeqCst);
}

/// Loads each adapter `file` lists, saying on stderr which failed and how many loaded.
async fn load_listed(state: &Arc<ServerState>, runtime: &RuntimeLora, file: &std::path::Path) {
    let requests = match std::fs::read(file) {
        Ok(bytes) => serde_json::from_slice::<Vec<LoadRequest>>(&bytes).map_err(|e| {
            format!(
                "{}: not a JSON list of {{lora_name, lora_path}}: {e}",
                file.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(format!("{}: {e}", file.display())),
    };
    let requests = match requests {
        Ok(requests) => requests,
        Err(why) => return eprintln!("trainer serve: no adapters loaded at start: {why}"),
    };
    let count = requests.len();
    let mut loaded = 0;
    for request in requests {
        let name = request.lora_name.clone().unwrap_or_default();
        match load_adapter(state, runtime, request).await {
            Ok(_) => loaded += 1,
            Err(error) => eprintln!(
                "trainer serve: adapter {name:?} of {} not loaded: {}",
                file.display(),
                error.message
            ),
        }
    }
    eprintln!(
        "trainer serve: loaded {loaded} of the {count} adapters of {}",
        file.display()
    );
}
