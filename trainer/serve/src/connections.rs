//! The server's connections, bounded so that no client can take the server from the
//! others: at most `max_connections` open at once (more wait in the kernel's accept
//! queue until one closes); `header_timeout` for each request's head, so a client that
//! opens connections and sends nothing, or a header a byte at a time, is cut; and on
//! shutdown a grace period for the replies in flight, after which the connections
//! still open are cut, so a straggler never keeps the process past its pod's grace.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// How many connections, and how long for a request head and for the shutdown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub shutdown_grace: Duration,
}

/// How the server stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// Every connection finished within the grace period.
    Drained,
    /// The grace period ended with this many connections still open; they were cut.
    Cut { open: usize },
}

/// Serves `app` on `listener` within `limits` until `shutdown` completes, then lets the
/// connections in flight finish for at most `limits.shutdown_grace`.
pub async fn serve_connections(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) -> Stopped {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    eprintln!("trainer serve: accepting a connection: {error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Streamed tokens are small writes: without TCP_NODELAY, Nagle's algorithm holds
        // each one back until the client acknowledges the one before.
        let _ = stream.set_nodelay(true);
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // A connection's error (a client gone, a header too slow) is that client's.
            let _ = connection.await;
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => Stopped::Drained,
        _ = tokio::time::sleep(limits.shutdown_grace) => Stopped::Cut {
            open: limits.max_connections.max(1) - permits.available_permits(),
        },
    }
}
