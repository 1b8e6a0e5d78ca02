//! Why the server could not start or stopped with an error: each message names the
//! flag at fault first (`--model`, `--adapter NAME`, `--host ... --port ...`).

use std::net::SocketAddr;

use anneal_model::backend::BackendError;
use anneal_model::chat::ChatError;
use anneal_model::llm::ModelError;
use anneal_model::lora::peft::AdapterError;
use anneal_sources::SourceError;

/// Why serving failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("--max-running must be at least 1")]
    NoRunningSlot,
    #[error("--max-model-len must be at least 1")]
    NoContext,
    #[error("--adapter {value}: expected NAME=SOURCE")]
    AdapterSyntax { value: String },
    #[error("--adapter {name}=...: the name {name} is served twice")]
    NameServedTwice { name: String },
    /// The base model or an adapter could not be brought onto this machine.
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("creating a work folder: {0}")]
    WorkDir(#[source] std::io::Error),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("--model: {0}")]
    Model(#[source] ModelError),
    #[error("--model: {0}")]
    Tokenizer(#[source] ChatError),
    #[error("--adapter {name}: {source}")]
    Adapter { name: String, source: AdapterError },
    #[error("--model: {0}")]
    ImageModel(#[source] anneal_image::pipeline::PipelineError),
    #[error("--adapter {name}: {source}")]
    ImageAdapter {
        name: String,
        source: anneal_image::flux::lora::FluxLoraError,
    },
    #[error("--host {host} --port {port}: {source}")]
    Bind {
        host: String,
        port: u16,
        source: std::io::Error,
    },
    /// The bound socket could not be set up for the server.
    #[error(transparent)]
    Listener(std::io::Error),
    #[error(transparent)]
    HttpThread(std::io::Error),
    #[error("the HTTP server thread panicked")]
    HttpThreadPanicked,
    #[error("starting the HTTP runtime: {0}")]
    HttpRuntime(#[source] std::io::Error),
    #[error("http://{address}: {source}")]
    Http {
        address: SocketAddr,
        source: std::io::Error,
    },
}
