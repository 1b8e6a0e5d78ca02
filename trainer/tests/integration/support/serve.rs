//! A `trainer serve` process for the serving tests, and the Python that drives it
//! with the official `openai` client.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The bundled tiny chat model.
pub fn tiny_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/models/anneal-tiny")
}

/// A running `trainer serve`; killed when dropped.
pub struct Server {
    pub child: Child,
    pub address: String,
    pub log: Arc<Mutex<String>>,
}

impl Server {
    pub fn start(extra: &[&str]) -> Server {
        Server::start_with(tiny_model().to_str().unwrap(), extra, &[])
    }

    pub fn start_with(model: &str, extra: &[&str], env: &[(&'static str, String)]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_trainer"))
            .arg("serve")
            .args(["--model", model])
            .args(["--host", "127.0.0.1", "--port", "0", "--device", "cpu"])
            .args(extra)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (address_tx, address_rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split(" on http://").nth(1) {
                    let _ = address_tx.send(rest.split('/').next().unwrap().to_owned());
                }
                sink.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        let address = address_rx
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("the server did not start:\n{}", log.lock().unwrap()));
        Server {
            child,
            address,
            log,
        }
    }

    /// A handle on a server another `Server` started, for calls from another thread;
    /// dropping it stops nothing.
    pub fn at(address: String) -> ServerAddress {
        ServerAddress { address }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.address)
    }

    /// Opens a request and returns the socket, its response unread (HTTP/1.0: the body
    /// ends when the server closes the connection, with no chunked framing to undo).
    pub fn open(&self, method: &str, path: &str, body: &str) -> TcpStream {
        open(&self.address, method, path, "", body)
    }

    /// Status code and body of a whole request.
    pub fn call(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        call(&self.address, method, path, "", body)
    }

    /// A call with extra header lines (`Name: value\r\n` each).
    pub fn call_with(&self, method: &str, path: &str, headers: &str, body: &str) -> (u16, String) {
        call(&self.address, method, path, headers, body)
    }

    pub fn metric(&self, name: &str) -> f64 {
        let (_, text) = self.call("GET", "/metrics", "");
        text.lines()
            .filter(|line| line.starts_with(name) && line[name.len()..].starts_with([' ', '{']))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    pub fn wait_for(&self, what: &str, ready: impl Fn(&Server) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ready(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}\n{}",
                self.log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Where a server listens, for calls from another thread.
pub struct ServerAddress {
    address: String,
}

impl ServerAddress {
    pub fn call(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        call(&self.address, method, path, "", body)
    }
}

fn open(address: &str, method: &str, path: &str, headers: &str, body: &str) -> TcpStream {
    let mut socket = TcpStream::connect(address).unwrap();
    write!(
        socket,
        "{method} {path} HTTP/1.0\r\nHost: {address}\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    socket
}

fn call(address: &str, method: &str, path: &str, headers: &str, body: &str) -> (u16, String) {
    let mut text = String::new();
    open(address, method, path, headers, body)
        .read_to_string(&mut text)
        .unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn test_python() -> PathBuf {
    let python = std::env::var_os("ANNEAL_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python"));
    assert!(
        python.is_file(),
        "{} not found: run ./scripts/test.sh once (it installs the openai package into .venv), or set ANNEAL_TEST_PYTHON",
        python.display()
    );
    python
}
