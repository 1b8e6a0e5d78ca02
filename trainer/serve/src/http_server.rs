//! The HTTP server's thread: a tokio runtime serving the [`router`] until SIGTERM or
//! Ctrl-C, then finishing the replies in flight.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::serve::ListenerExt;

use crate::ServeError;
use crate::http::{ServerState, router};

/// Runs the HTTP server until a shutdown signal and the last reply in flight; the
/// state (and with it the engine's queue) is dropped when this returns.
pub(crate) fn serve_http(
    listener: std::net::TcpListener,
    address: SocketAddr,
    state: Arc<ServerState>,
) -> Result<(), ServeError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(ServeError::HttpRuntime)?;
    runtime.block_on(async move {
        // Streamed tokens are small writes: without TCP_NODELAY, Nagle's algorithm holds
        // each one back until the client acknowledges the one before.
        let listener = tokio::net::TcpListener::from_std(listener)
            .map_err(ServeError::Listener)?
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
            .map_err(|source| ServeError::Http { address, source })?;
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
