//! `trainer serve`: a base model and any number of LoRA adapters on it behind an
//! OpenAI-compatible API (`/v1/models`, `/v1/chat/completions`, streamed or not),
//! with `/health` and Prometheus `/metrics`.
//!
//! Threads: this one loads the models, then runs the [`engine`] (which owns them) until
//! the server is done; a second runs the HTTP server on tokio. On SIGTERM or Ctrl-C the
//! server stops taking connections, `/health` turns 503, replies in flight (streams
//! too) run to their end, and the process exits 0.

pub mod api_error;
pub mod chat_request;
pub mod engine;
pub mod http;
pub mod reply;
pub mod serve_metrics;
pub mod text_stream;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::serve::ListenerExt;
use burn::prelude::Backend;
use burn::tensor::DType;

use anneal_model::backend::{BackendJob, DeviceChoice, run_on};
use anneal_model::chat::ModelTokenizer;
use anneal_model::llm::load_model;
use anneal_model::lora::peft::load_adapter;
use anneal_sources::{FolderSource, make_local};
use http::{ServedModel, ServerState, router};
use serve_metrics::ServeMetrics;

#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// The base model: a Hugging Face folder (config.json, tokenizer.json, *.safetensors)
    /// as a path, file:// or s3:// URI (downloaded at start).
    #[arg(long)]
    pub model: String,
    /// The name clients use for the base model; default: the folder's name.
    #[arg(long)]
    pub served_model_name: Option<String>,
    /// A LoRA adapter in PEFT format served as NAME, from a path, file:// or s3:// (repeatable).
    #[arg(long, value_name = "NAME=SOURCE")]
    pub adapter: Vec<String>,
    #[arg(long, default_value = "0.0.0.0")]
    pub host: String,
    /// 0 picks a free port (printed at start).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Requests generated side by side, a token each in turn.
    #[arg(long, default_value_t = 8)]
    pub max_running: usize,
    /// Requests waiting for a turn beyond those; more are refused with 429.
    #[arg(long, default_value_t = 64)]
    pub max_waiting: usize,
    /// Prompt plus reply limit in tokens; default and upper bound: the model's
    /// max_position_embeddings.
    #[arg(long)]
    pub max_model_len: Option<usize>,
    /// Where s3:// folders are downloaded; default: a temporary folder.
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
}

/// Runs the server until it is told to stop; 0 after a clean shutdown, 2 when it
/// could not start (bad flags, models that do not load, a port in use).
pub fn run(args: ServeArgs) -> ExitCode {
    match prepare(&args).and_then(|prepared| run_on(args.device, prepared)?) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("trainer serve: {message}");
            ExitCode::from(2)
        }
    }
}

/// The models as local folders, checked before any weight is read.
struct Prepared {
    args: ServeArgs,
    model_dir: PathBuf,
    base_name: String,
    adapters: Vec<(String, PathBuf)>,
    _scratch: Option<tempfile::TempDir>,
}

fn prepare(args: &ServeArgs) -> Result<Prepared, String> {
    if args.max_running == 0 {
        return Err("--max-running must be at least 1".to_owned());
    }
    let base_source = FolderSource::from_flag(&args.model, "--model").map_err(|e| e.to_string())?;
    let mut adapters = Vec::new();
    for value in &args.adapter {
        let (name, source) = value
            .split_once('=')
            .filter(|(name, source)| !name.is_empty() && !source.is_empty())
            .ok_or_else(|| format!("--adapter {value}: expected NAME=SOURCE"))?;
        let source = FolderSource::from_flag(source, "--adapter").map_err(|e| e.to_string())?;
        adapters.push((name.to_owned(), source));
    }
    let base_name = match &args.served_model_name {
        Some(name) => name.clone(),
        None => default_name(&args.model),
    };
    let mut names: Vec<&str> = vec![&base_name];
    for (name, _) in &adapters {
        if names.contains(&name.as_str()) {
            return Err(format!(
                "--adapter {name}=...: the name {name} is served twice"
            ));
        }
        names.push(name);
    }

    let remote = matches!(base_source, FolderSource::Remote(_))
        || adapters
            .iter()
            .any(|(_, s)| matches!(s, FolderSource::Remote(_)));
    let (work, scratch) = match (&args.work_dir, remote) {
        (Some(dir), _) => (dir.clone(), None),
        (None, true) => {
            let temp = tempfile::Builder::new()
                .prefix("anneal-serve-")
                .tempdir()
                .map_err(|e| format!("creating a work folder: {e}"))?;
            (temp.path().to_path_buf(), Some(temp))
        }
        (None, false) => (PathBuf::new(), None),
    };
    let model_dir =
        make_local(&base_source, &work.join("base-model"), "--model").map_err(|e| e.to_string())?;
    let adapters = adapters
        .into_iter()
        .enumerate()
        .map(|(i, (name, source))| {
            let dir = make_local(&source, &work.join(format!("adapter-{i}")), "--adapter")
                .map_err(|e| e.to_string())?;
            Ok((name, dir))
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Prepared {
        args: args.clone(),
        model_dir,
        base_name,
        adapters,
        _scratch: scratch,
    })
}

/// The last segment of a path or URI: `models/anneal-tiny` serves as `anneal-tiny`.
fn default_name(source: &str) -> String {
    let trimmed = source.trim_end_matches('/');
    let last = trimmed.rsplit('/').next().unwrap_or(trimmed);
    if last.is_empty() || last == "." {
        "base".to_owned()
    } else {
        last.to_owned()
    }
}

impl BackendJob for Prepared {
    type Output = Result<(), String>;

    fn run<B: Backend>(self, device: B::Device, dtype: DType) -> Self::Output {
        let (config, base) = load_model::<B>(&self.model_dir, &device, dtype)
            .map_err(|e| format!("--model: {e}"))?;
        let tokenizer = ModelTokenizer::from_model_dir(&self.model_dir, &config.architecture)
            .map_err(|e| format!("--model: {e}"))?;
        let mut served = vec![ServedModel {
            name: self.base_name.clone(),
            parent: None,
        }];
        // Each adapter rides on a clone of the base: tensors are shared, not copied.
        let mut models = vec![base.clone()];
        for (name, dir) in &self.adapters {
            let model = load_adapter(base.clone(), dir, &device)
                .map_err(|e| format!("--adapter {name}: {e}"))?;
            models.push(model);
            served.push(ServedModel {
                name: name.clone(),
                parent: Some(self.base_name.clone()),
            });
        }
        let context_length = match self.args.max_model_len {
            Some(0) => return Err("--max-model-len must be at least 1".to_owned()),
            Some(n) => n.min(config.max_position_embeddings),
            None => config.max_position_embeddings,
        };

        let listener = std::net::TcpListener::bind((self.args.host.as_str(), self.args.port))
            .map_err(|e| format!("--host {} --port {}: {e}", self.args.host, self.args.port))?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let address = listener.local_addr().map_err(|e| e.to_string())?;

        let metrics = ServeMetrics::new();
        let (submit, submissions) = std::sync::mpsc::channel();
        let state = Arc::new(ServerState {
            models: served,
            tokenizer: Arc::new(tokenizer.clone()),
            context_length,
            submit,
            in_flight: Arc::new(AtomicUsize::new(0)),
            max_in_flight: self.args.max_running + self.args.max_waiting,
            shutting_down: AtomicBool::new(false),
            metrics: metrics.clone(),
            started: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        });
        let names: Vec<&str> = state.models.iter().map(|m| m.name.as_str()).collect();
        eprintln!(
            "trainer serve: {} on http://{address}/v1 (context {context_length} tokens, {} running + {} waiting)",
            names.join(", "),
            self.args.max_running,
            self.args.max_waiting
        );
        let server = std::thread::Builder::new()
            .name("http".to_owned())
            .spawn(move || serve_http(listener, address, state))
            .map_err(|e| e.to_string())?;
        engine::run_engine(&models, submissions, self.args.max_running, &metrics);
        server
            .join()
            .map_err(|_| "the HTTP server thread panicked".to_owned())?
    }
}

/// Runs the HTTP server until a shutdown signal and the last reply in flight; the
/// state (and with it the engine's queue) is dropped when this returns.
fn serve_http(
    listener: std::net::TcpListener,
    address: SocketAddr,
    state: Arc<ServerState>,
) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("starting the HTTP runtime: {e}"))?;
    runtime.block_on(async move {
        // Streamed tokens are small writes: without TCP_NODELAY, Nagle's algorithm holds
        // each one back until the client acknowledges the one before.
        let listener = tokio::net::TcpListener::from_std(listener)
            .map_err(|e| e.to_string())?
            .tap_io(|stream| {
                let _ = stream.set_nodelay(true);
            });
        let app = router(state.clone());
        let stopping = state.clone();
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                shutdown_signal().await;
                stopping.shutting_down.store(true, Ordering::SeqCst);
                eprintln!("trainer serve: stopping; finishing the replies in flight");
            })
            .await
            .map_err(|e| format!("http://{address}: {e}"))?;
        eprintln!("trainer serve: stopped");
        Ok(())
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_base_model_is_named_after_its_folder() {
        assert_eq!(default_name("examples/models/anneal-tiny"), "anneal-tiny");
        assert_eq!(default_name("s3://models/qwen2.5-7b/"), "qwen2.5-7b");
        assert_eq!(default_name("."), "base");
    }
}
