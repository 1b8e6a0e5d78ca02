//! Anneal's serving: a base model and any number of LoRA adapters on it behind an
//! OpenAI-compatible API (`/v1/models`, `/v1/chat/completions`, streamed or not; for a
//! FLUX.1 image model `/v1/images/generations`), with `/health` and Prometheus
//! `/metrics`. `trainer serve` is its command line.
//!
//! [`serve`] brings the models onto this machine (`prepare.rs`), loads them on the
//! chosen backend (`launch.rs`), and runs the [`engine`] (which owns them) on this
//! thread until the server is done; a second thread runs the HTTP server on tokio
//! (`http_server.rs`, the routes in [`http`]). On SIGTERM or Ctrl-C the server stops
//! taking connections, `/health` turns 503, replies in flight (streams too) run to
//! their end within the shutdown grace, and [`serve`] returns. Connections are
//! bounded in number and in the time their request heads take ([`connections`]).

pub mod api_error;
pub mod chat_request;
pub mod connections;
pub mod engine;
mod error;
pub mod http;
mod http_server;
pub mod image_http;
pub mod image_request;
mod image_worker;
mod launch;
mod options;
mod prepare;
pub mod reply;
pub mod runtime_lora;
pub mod serve_metrics;
pub mod text_stream;

use anneal_model::backend::run_on;

pub use error::ServeError;
pub use options::ServeOptions;

/// Serves until told to stop; an error when the server could not start (bad
/// options, models that do not load, a port in use) or failed.
pub fn serve(options: ServeOptions) -> Result<(), ServeError> {
    let prepared = prepare::prepare(&options)?;
    run_on(options.device, prepared)?
}
