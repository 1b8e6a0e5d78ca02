//! What to serve and how: the settings `trainer serve` takes as flags.

use std::path::PathBuf;
use std::time::Duration;

use anneal_model::backend::DeviceChoice;

/// The server's settings. Sources are paths, `file://` or `s3://` URIs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The base model: a Hugging Face folder (config.json, tokenizer.json, *.safetensors).
    pub model: String,
    /// The name clients use for the base model; `None`: the folder's name.
    pub served_model_name: Option<String>,
    /// LoRA adapters in PEFT format, each `NAME=SOURCE` as `--adapter` takes it.
    pub adapters: Vec<String>,
    pub host: String,
    /// 0 picks a free port (printed at start).
    pub port: u16,
    /// Requests generated side by side, a token each in turn.
    pub max_running: usize,
    /// Requests waiting for a turn beyond those; more are refused with 429.
    pub max_waiting: usize,
    /// Prompt plus reply limit in tokens; `None`: the model's max_position_embeddings
    /// (also the upper bound).
    pub max_model_len: Option<usize>,
    /// Connections open at once; more wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Time a connection has to send a request's head.
    pub header_timeout: Duration,
    /// After SIGTERM, time the replies in flight get before the connections still
    /// open are cut: below the pod's termination grace period.
    pub shutdown_grace: Duration,
    /// Where s3:// folders are downloaded; `None`: a temporary folder.
    pub work_dir: Option<PathBuf>,
    /// `POST /v1/load_lora_adapter` and `/v1/unload_lora_adapter` answer (chat
    /// models); off, they are refused.
    pub runtime_lora: bool,
    /// Adapters served at once at most, those given at start included (runtime loads
    /// past it are refused).
    pub max_loras: usize,
    /// When set, load and unload need `Authorization: Bearer` with this token (the
    /// endpoints sit behind the same Service as the chat API).
    pub runtime_lora_token: Option<String>,
    /// With runtime loads on: a JSON list of `{"lora_name", "lora_path"}` loaded at
    /// start, before `/health` answers 200.
    pub adapters_file: Option<PathBuf>,
    pub device: DeviceChoice,
}
