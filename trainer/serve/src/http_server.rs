//! The HTTP server's thread: a tokio runtime serving the [`router`] within the
//! connection limits ([`crate::connections`]) until SIGTERM or Ctrl-C, then finishing
//! the replies in flight for at most the shutdown grace.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::ServeError;
use crate::connections::{ConnectionLimits, Stopped, serve_connections};
use crate::http::{ServerState, router};
use crate::runtime_lora::load_startup_adapters;

/// Runs the HTTP server until a shutdown signal and the last reply in flight; the
/// state (and with it the engine's queue) is dropped when this returns.
pub(crate) fn serve_http(
    listener: std::net::TcpListener,
    state: Arc<ServerState>,
    limits: ConnectionLimits,
) -> Result<(), ServeError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        // Request preparation (tokenizing) runs here, at most this many at once.
        .max_blocking_threads(4)
        .enable_all()
        .build()
        .map_err(ServeError::HttpRuntime)?;
    let served = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener).map_err(ServeError::Listener)?;
        let app = router(state.clone());
        tokio::spawn(load_startup_adapters(state.clone()));
        let stopping = state.clone();
        let shutdown = async move {
            shutdown_signal().await;
            stopping.shutting_down.store(true, Ordering::SeqCst);
            eprintln!(
                "trainer serve: stopping; finishing the replies in flight (at most {} s)",
                limits.shutdown_grace.as_secs()
            );
        };
        match serve_connections(listener, app, limits, shutdown).await {
            Stopped::Drained => eprintln!("trainer serve: stopped"),
            Stopped::Cut { open } => eprintln!(
                "trainer serve: stopped after the {} s shutdown grace; {open} connections still open were cut",
                limits.shutdown_grace.as_secs()
            ),
        }
        Ok(())
    });
    // Tokenizations still running on the blocking pool are not waited for.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    served
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
