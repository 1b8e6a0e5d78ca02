//! A real S3-compatible server for tests: moto's `moto_server` on a free loopback
//! port, killed when its guard drops. The trainer's storage tests and the workspace's
//! end-to-end tests both start one.
//!
//! `./scripts/test.sh` installs moto into the workspace's `.venv`;
//! `ANNEAL_MOTO_SERVER` may name another `moto_server` executable.

pub mod fault_proxy;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long moto may take to start answering (it imports all of its services first).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// A running `moto_server`; dropping it kills the server.
pub struct MotoServer {
    child: Child,
    port: u16,
    /// Where the server's output goes, shown when it fails to start.
    log: tempfile::NamedTempFile,
}

impl MotoServer {
    /// Starts moto_server and waits until it accepts connections. Panics, saying how to
    /// install it, when the executable is missing: this test must not pass unrun.
    pub fn start() -> MotoServer {
        let executable = moto_server_path();
        assert!(
            executable.is_file(),
            "moto_server not found at {}: run ./scripts/test.sh once (it installs the \
             Python test tools into .venv), or set ANNEAL_MOTO_SERVER to a moto_server executable",
            executable.display()
        );
        let port = free_port();
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(&executable)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            // Into a file rather than a pipe: an unread pipe would fill up and stall moto.
            .stdout(log.reopen().unwrap())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", executable.display()));
        let mut server = MotoServer { child, port, log };
        server.wait_until_listening();
        server
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The storage settings for this server, given explicitly so that tests do not
    /// depend on (or race on) the process environment.
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "testing".to_string()),
            ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
            ("AWS_REGION", "us-east-1".to_string()),
            ("AWS_ENDPOINT_URL", self.endpoint()),
        ]
    }

    /// Creates a bucket with a plain `PUT /bucket` (moto does not check signatures), so
    /// that the tests need no AWS SDK.
    /// A connection reset or refused is tried again for a few seconds: a server that has
    /// just started listening on a loaded machine may drop its first connections.
    pub fn create_bucket(&self, bucket: &str) {
        let request = format!(
            "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\n\
             Connection: close\r\n\r\n",
            self.port
        );
        let exchange = || -> std::io::Result<String> {
            let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port))?;
            stream.write_all(request.as_bytes())?;
            let mut response = String::new();
            stream.read_to_string(&mut response)?;
            Ok(response)
        };
        let started = Instant::now();
        let response = loop {
            match exchange() {
                Ok(response) => break response,
                Err(error) if started.elapsed() < STARTUP_TIMEOUT => {
                    eprintln!("creating bucket {bucket}: {error}; trying again");
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(error) => panic!("creating bucket {bucket}: {error}:\n{}", self.output()),
            }
        };
        let status_line = response.lines().next().unwrap_or_default();
        assert!(
            status_line.contains(" 200 "),
            "creating bucket {bucket}: {response}"
        );
    }

    fn wait_until_listening(&mut self) {
        let started = Instant::now();
        while TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_err() {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("moto_server exited with {status}:\n{}", self.output());
            }
            if started.elapsed() > STARTUP_TIMEOUT {
                panic!(
                    "moto_server did not listen on port {} within {STARTUP_TIMEOUT:?}:\n{}",
                    self.port,
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `$ANNEAL_MOTO_SERVER`, else `.venv/bin/moto_server` at the workspace root.
fn moto_server_path() -> PathBuf {
    match std::env::var_os("ANNEAL_MOTO_SERVER") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/moto_server"),
    }
}

/// A port nobody listens on right now (the OS picks it; we release it for moto).
fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    listener.local_addr().unwrap().port()
}
