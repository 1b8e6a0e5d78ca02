//! `trainer serve`: a base model and its LoRA adapters behind an OpenAI-compatible
//! API, as `anneal-serve` runs it.
//!
//! On CUDA it first checks the GPU and points the kernel caches at `--kernel-cache`
//! (`gpu_start`), as `trainer train` does.
//!
//! Exit codes: 0 after a clean shutdown (SIGTERM or Ctrl-C), 2 when the server could
//! not start (a GPU that fails its check, bad flags, models that do not load, a port
//! in use).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anneal_serve::{ServeOptions, serve};

use crate::device_arg::DeviceArg;
use crate::gpu_start::{GpuStartArgs, prepare};

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
    /// Connections open at once; more wait until one closes.
    #[arg(long, default_value_t = 256)]
    pub max_connections: usize,
    /// Seconds a connection has to send a request's head before it is cut, and that a
    /// request body may go without a byte before the request is refused.
    #[arg(long, default_value_t = 30)]
    pub header_timeout_seconds: u64,
    /// After SIGTERM, seconds the replies in flight get before the connections still
    /// open are cut (keep it below the pod's terminationGracePeriodSeconds).
    #[arg(long, env = "ANNEAL_SHUTDOWN_GRACE_SECONDS", default_value_t = 45)]
    pub shutdown_grace_seconds: u64,
    /// Where s3:// folders are downloaded; default: a temporary folder.
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Let clients load and unload LoRA adapters while the server runs:
    /// `POST /v1/load_lora_adapter {"lora_name", "lora_path"}` and
    /// `/v1/unload_lora_adapter {"lora_name"}`, as vLLM takes them (a path, file://,
    /// s3:// or hf:// URI). Off, both are refused with 404.
    #[arg(long, env = "ANNEAL_ENABLE_RUNTIME_LORA")]
    pub enable_runtime_lora: bool,
    /// Adapters served at once at most, those of --adapter included.
    #[arg(long, default_value_t = 8)]
    pub max_loras: usize,
    /// With --enable-runtime-lora: load and unload need `Authorization: Bearer TOKEN`
    /// (the chat API stays open); a ModelDeployment's pods get theirs from a Secret.
    #[arg(long, env = "ANNEAL_RUNTIME_LORA_TOKEN", hide_env_values = true)]
    pub runtime_lora_token: Option<String>,
    /// With --enable-runtime-lora: adapters to load at start, before /health answers
    /// 200: a JSON list of `{"lora_name", "lora_path"}`, as the load endpoint takes
    /// them. A missing file loads none; an adapter that fails to load is logged and
    /// left out. A ModelDeployment's pods read theirs from a ConfigMap, so a restarted
    /// server comes back with the adapters it had.
    #[arg(long, env = "ANNEAL_ADAPTERS_FILE", requires = "enable_runtime_lora")]
    pub adapters_file: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
    #[command(flatten)]
    pub gpu_start: GpuStartArgs,
}

impl From<ServeArgs> for ServeOptions {
    fn from(args: ServeArgs) -> Self {
        ServeOptions {
            model: args.model,
            served_model_name: args.served_model_name,
            adapters: args.adapter,
            host: args.host,
            port: args.port,
            max_running: args.max_running,
            max_waiting: args.max_waiting,
            max_model_len: args.max_model_len,
            runtime_lora: args.enable_runtime_lora,
            max_loras: args.max_loras,
            runtime_lora_token: args.runtime_lora_token.filter(|token| !token.is_empty()),
            adapters_file: args.adapters_file,
            max_connections: args.max_connections,
            header_timeout: Duration::from_secs(args.header_timeout_seconds),
            shutdown_grace: Duration::from_secs(args.shutdown_grace_seconds),
            work_dir: args.work_dir,
            device: args.device.into(),
        }
    }
}

/// Runs the server until it is told to stop.
pub fn run(args: ServeArgs) -> ExitCode {
    if let Err(error) = prepare("serve", args.device.into(), &args.gpu_start) {
        eprintln!("trainer serve: {error}");
        return ExitCode::from(2);
    }
    match serve(args.into()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("trainer serve: {error}");
            ExitCode::from(2)
        }
    }
}
