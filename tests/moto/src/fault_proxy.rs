//! An unreliable network in front of the S3 server, on purpose: an HTTP/1.1 proxy on a
//! loopback port that forwards each request to moto, except that a seeded share of
//! them is answered `503 SlowDown` (S3's throttling reply), delayed, or cut off by
//! closing the connection before any reply. Which request gets which fault depends
//! only on the seed and the request's number, so a run can be repeated.
//!
//! One request per client connection: each reply says `Connection: close`, so the
//! proxy never has to find where a reply ends on a kept-alive connection.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// The share of requests (in percent, each) that get each fault.
#[derive(Clone, Copy, Debug)]
pub struct FaultShares {
    /// Answered `503 SlowDown` without reaching the server.
    pub slow_down: u64,
    /// Held for `delay` before being forwarded.
    pub delay: u64,
    /// The connection closed after the request is read, with no reply.
    pub reset: u64,
}

/// What the proxy did, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    pub requests: u64,
    pub slow_down: u64,
    pub delay: u64,
    pub reset: u64,
}

impl FaultCounts {
    pub fn faults(&self) -> u64 {
        self.slow_down + self.delay + self.reset
    }
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    slow_down: AtomicU64,
    delay: AtomicU64,
    reset: AtomicU64,
}

/// A running proxy; dropping it stops accepting connections.
pub struct FaultProxy {
    port: u16,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

#[derive(Clone, Copy)]
enum Fault {
    None,
    SlowDown,
    Delay,
    Reset,
}

/// How long a delayed request is held.
const DELAY: Duration = Duration::from_millis(400);

impl FaultProxy {
    /// A proxy to `upstream` (`http://127.0.0.1:PORT`) with faults in `shares`, drawn
    /// from `seed`.
    pub fn start(upstream: &str, shares: FaultShares, seed: u64) -> FaultProxy {
        let upstream = upstream
            .strip_prefix("http://")
            .expect("an http:// upstream")
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let counters = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let (counters, stop) = (counters.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((client, _)) => {
                            client.set_nonblocking(false).unwrap();
                            let number = counters.requests.fetch_add(1, Ordering::SeqCst);
                            let fault = draw(seed, number, shares);
                            let (counters, upstream) = (counters.clone(), upstream.clone());
                            std::thread::spawn(move || {
                                // A client that went away mid-request is not the test's failure.
                                let _ = serve(client, &upstream, fault, &counters);
                            });
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(2));
                        }
                        Err(e) => panic!("fault proxy accept: {e}"),
                    }
                }
            })
        };
        FaultProxy {
            port,
            counters,
            stop,
            acceptor: Some(acceptor),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What it did so far.
    pub fn counts(&self) -> FaultCounts {
        let c = &self.counters;
        FaultCounts {
            requests: c.requests.load(Ordering::SeqCst),
            slow_down: c.slow_down.load(Ordering::SeqCst),
            delay: c.delay.load(Ordering::SeqCst),
            reset: c.reset.load(Ordering::SeqCst),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// The fault of request `number`: splitmix64 of the seed and the number, in percent.
fn draw(seed: u64, number: u64, shares: FaultShares) -> Fault {
    let mut z = seed ^ number.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    let percent = (z ^ (z >> 31)) % 100;
    if percent < shares.slow_down {
        Fault::SlowDown
    } else if percent < shares.slow_down + shares.delay {
        Fault::Delay
    } else if percent < shares.slow_down + shares.delay + shares.reset {
        Fault::Reset
    } else {
        Fault::None
    }
}

/// Reads one request from `client`, applies `fault`, and relays the server's reply.
fn serve(
    client: TcpStream,
    upstream: &str,
    fault: Fault,
    counters: &Counters,
) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let (head, body) = read_request(&mut reader)?;
    let mut client = client;
    match fault {
        Fault::SlowDown => {
            counters.slow_down.fetch_add(1, Ordering::SeqCst);
            let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code>\
                        <Message>Please reduce your request rate.</Message></Error>";
            write!(
                client,
                "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            )?;
            return client.shutdown(Shutdown::Both);
        }
        Fault::Reset => {
            counters.reset.fetch_add(1, Ordering::SeqCst);
            return client.shutdown(Shutdown::Both);
        }
        Fault::Delay => {
            counters.delay.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(DELAY);
        }
        Fault::None => {}
    }
    let mut server = TcpStream::connect(upstream)?;
    server.write_all(head.as_bytes())?;
    server.write_all(&body)?;
    let mut replies = BufReader::new(server);
    // The status line and headers, with `Connection: close` in place of the server's.
    let mut reply_head = String::new();
    loop {
        let mut line = String::new();
        if replies.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if !line.to_ascii_lowercase().starts_with("connection:") {
            reply_head.push_str(&line);
        }
    }
    reply_head.push_str("Connection: close\r\n\r\n");
    client.write_all(reply_head.as_bytes())?;
    std::io::copy(&mut replies, &mut client)?;
    client.shutdown(Shutdown::Both)
}

/// One request: its head (rewritten to ask the server to close the connection after
/// its reply) and its body (`Content-Length` bytes; the trainer's client sends no
/// chunked bodies).
fn read_request(reader: &mut BufReader<TcpStream>) -> std::io::Result<(String, Vec<u8>)> {
    let mut head = String::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(value) = lower.strip_prefix("content-length:") {
            length = value.trim().parse().unwrap_or(0);
        }
        assert!(
            !lower.starts_with("transfer-encoding:"),
            "fault proxy: chunked request bodies are not relayed"
        );
        if !lower.starts_with("connection:") {
            head.push_str(&line);
        }
    }
    head.push_str("Connection: close\r\n\r\n");
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok((head, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_follow_the_seed_in_their_shares() {
        let shares = FaultShares {
            slow_down: 10,
            delay: 10,
            reset: 10,
        };
        let kinds = |seed| -> Vec<u8> {
            (0..1000)
                .map(|n| match draw(seed, n, shares) {
                    Fault::None => 0,
                    Fault::SlowDown => 1,
                    Fault::Delay => 2,
                    Fault::Reset => 3,
                })
                .collect()
        };
        assert_eq!(kinds(7), kinds(7), "the same seed, the same faults");
        assert_ne!(kinds(7), kinds(8));
        let first = kinds(7);
        for kind in 1..=3 {
            let count = first.iter().filter(|&&k| k == kind).count();
            assert!((60..140).contains(&count), "kind {kind}: {count} of 1000");
        }
    }
}
