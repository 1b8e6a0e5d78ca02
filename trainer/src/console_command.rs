//! `trainer console`: serves [`crate::console`] over a runs folder until stopped.
//!
//! Exit codes: 2 when it cannot start (the address is taken, the folder is missing).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::console::router;

#[derive(clap::Args, Debug, Clone)]
pub struct ConsoleArgs {
    /// The runs folder `trainer train` writes (its --output).
    #[arg(long, default_value = "anneal-runs")]
    pub runs: PathBuf,
    /// Loopback by default: the console has no sign-in.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// 0 picks a free port (printed at start).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
}

pub fn run(args: &ConsoleArgs) -> ExitCode {
    match serve(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("trainer console: {message}");
            ExitCode::from(2)
        }
    }
}

fn serve(args: &ConsoleArgs) -> Result<(), String> {
    if !args.runs.is_dir() {
        return Err(format!(
            "--runs {}: no such folder (train a job first: trainer train JOB.yaml)",
            args.runs.display()
        ));
    }
    let address: SocketAddr = format!("{}:{}", args.host, args.port)
        .parse()
        .map_err(|e| format!("--host {}: {e}", args.host))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the server: {e}"))?;
    let root = std::path::absolute(&args.runs).unwrap_or_else(|_| args.runs.clone());
    let program =
        std::env::current_exe().map_err(|e| format!("finding this program to serve with: {e}"))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|e| format!("{address}: {e}"))?;
        let bound = listener.local_addr().map_err(|e| e.to_string())?;
        println!("console: http://{bound}/ (runs in {})", root.display());
        // Stopping on a signal drops the router, and with it the playground's server.
        axum::serve(listener, router(root, program))
            .with_graceful_shutdown(stop_signal())
            .await
            .map_err(|e| format!("serving: {e}"))
    })
}

/// Ctrl-C or SIGTERM.
async fn stop_signal() {
    let interrupted = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminated =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => return interrupted.await.unwrap_or(()),
            };
        tokio::select! {
            _ = interrupted => {}
            _ = terminated.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupted.await;
}
