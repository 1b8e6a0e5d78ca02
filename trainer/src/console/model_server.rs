//! The local playground's model server: one `trainer serve` child process, started on
//! the first chat with a run's model and kept while chats ask for models it serves;
//! asked for another run (or, in a full fine-tuning run, another checkpoint), it is
//! stopped and the right one started. One at a time, so the console never holds
//! more than one copy of base weights. It stops with the console.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStderr, Command};
use tokio::sync::Mutex;

use super::run_models::RunModels;

/// The longest a server may take to load its model before the chat gives up (a 72B
/// model read from a local disk takes minutes).
const START_TIMEOUT: Duration = Duration::from_secs(600);
/// Lines of a failed server's output kept for the message.
const KEPT_LINES: usize = 8;

/// A started server and what it answers for.
struct Running {
    run: PathBuf,
    served: Vec<String>,
    /// Its `/v1` base URL's host part: `http://127.0.0.1:PORT`.
    address: String,
    child: Child,
}

/// Starts and keeps the playground's one `trainer serve`.
pub struct ModelServer {
    /// This program, which serves as `trainer serve`.
    program: PathBuf,
    running: Mutex<Option<Running>>,
}

impl ModelServer {
    pub fn new(program: PathBuf) -> Self {
        Self {
            program,
            running: Mutex::new(None),
        }
    }

    /// The address of a server answering for `chosen` of `run`: the one running when it
    /// does, else a new one (the old one stopped first), once its model is loaded.
    pub async fn address_for(&self, run: &RunModels, chosen: &str) -> Result<String, String> {
        let mut running = self.running.lock().await;
        if let Some(current) = running.as_mut() {
            let alive = matches!(current.child.try_wait(), Ok(None));
            if alive && current.run == run.folder && current.served.iter().any(|s| s == chosen) {
                return Ok(current.address.clone());
            }
        }
        if let Some(mut old) = running.take() {
            let _ = old.child.kill().await;
        }
        let (args, served) = run
            .serve_args(chosen)
            .ok_or_else(|| format!("model {chosen:?} is not one of this run's"))?;
        let (child, address) = self.start(&args).await?;
        *running = Some(Running {
            run: run.folder.clone(),
            served,
            address: address.clone(),
            child,
        });
        Ok(address)
    }

    /// The address of the running server, if any (for the snippets).
    pub async fn current_address(&self, run: &RunModels) -> Option<String> {
        let running = self.running.lock().await;
        running
            .as_ref()
            .filter(|r| r.run == run.folder)
            .map(|r| r.address.clone())
    }

    /// Starts `trainer serve` with `args` and waits for the line saying where it
    /// listens; then keeps reading its output so that it never blocks on a full pipe.
    async fn start(&self, args: &[String]) -> Result<(Child, String), String> {
        let mut command = Command::new(&self.program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        stop_with_this_process(&mut command);
        let mut child = command
            .spawn()
            .map_err(|e| format!("starting {}: {e}", self.program.display()))?;
        let stderr = child
            .stderr
            .take()
            .ok_or("the server's output is not readable")?;
        let mut lines = BufReader::new(stderr).lines();
        let found = tokio::time::timeout(START_TIMEOUT, listening_address(&mut lines)).await;
        match found {
            Ok(Ok(address)) => {
                tokio::spawn(echo_lines(lines));
                Ok((child, address))
            }
            Ok(Err(output)) => {
                let status = child.wait().await.map_or("?".to_owned(), |s| s.to_string());
                Err(format!(
                    "trainer serve stopped ({status}) before it served: {}",
                    output.join(" / ")
                ))
            }
            Err(_) => {
                let _ = child.kill().await;
                Err(format!(
                    "trainer serve did not load its model in {} s",
                    START_TIMEOUT.as_secs()
                ))
            }
        }
    }
}

/// Reads the server's output until it says `… on http://ADDRESS/v1 (…`, and returns
/// `http://ADDRESS`; when the output ends first, its last lines.
async fn listening_address(
    lines: &mut tokio::io::Lines<BufReader<ChildStderr>>,
) -> Result<String, Vec<String>> {
    let mut kept: Vec<String> = Vec::new();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(address) = address_in(&line) {
            eprintln!("{line}");
            return Ok(address);
        }
        eprintln!("{line}");
        kept.push(line);
        if kept.len() > KEPT_LINES {
            kept.remove(0);
        }
    }
    Err(kept)
}

/// `http://HOST:PORT` of trainer serve's start line.
fn address_in(line: &str) -> Option<String> {
    let start = line.find(" on http://")? + " on ".len();
    let rest = &line[start..];
    let end = rest.find("/v1")?;
    Some(rest[..end].to_owned())
}

/// Passes the server's later output on to the console's own.
async fn echo_lines(mut lines: tokio::io::Lines<BufReader<ChildStderr>>) {
    while let Ok(Some(line)) = lines.next_line().await {
        eprintln!("{line}");
    }
}

/// Asks Linux to stop the server when the console's thread ends, also when the
/// console is killed and cannot stop it itself.
#[cfg(target_os = "linux")]
fn stop_with_this_process(command: &mut Command) {
    // SAFETY: prctl is async-signal-safe and touches nothing of the parent's.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn stop_with_this_process(_command: &mut Command) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_is_read_from_the_start_line() {
        let line = "trainer serve: anneal-tiny, ft:a:b:ckpt-9 on http://127.0.0.1:40123/v1 (cpu, 8 running + 64 waiting)";
        assert_eq!(address_in(line).as_deref(), Some("http://127.0.0.1:40123"));
        assert_eq!(address_in("loading the model"), None);
    }
}
