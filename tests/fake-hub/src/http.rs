//! Just enough HTTP/1.1 for the fake hub: read one request's line and headers, write
//! one reply and close.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;

pub(crate) struct Request {
    pub method: String,
    /// Percent-decoded path segments.
    pub segments: Vec<String>,
    /// Percent-decoded query parameters.
    pub query: BTreeMap<String, String>,
    /// Header names in lowercase.
    pub headers: BTreeMap<String, String>,
    /// The request line's target as sent, for the log.
    pub target: String,
    /// The body (`Content-Length` bytes).
    pub body: Vec<u8>,
}

pub(crate) fn read_request(stream: &TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let target = parts.next()?.to_owned();
    let mut headers = BTreeMap::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 {
            break;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|value: &String| value.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    std::io::Read::read_exact(&mut reader, &mut body).ok()?;
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let segments = path
        .split('/')
        .filter(|segment| !segment.is_empty())
        .map(decode)
        .collect();
    let query = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(key, value)| (decode(key), decode(value)))
        .collect();
    Some(Request {
        method,
        segments,
        query,
        headers,
        target,
        body,
    })
}

/// Writes a reply's status line and headers (with `Connection: close`).
pub(crate) fn write_head(
    stream: &mut TcpStream,
    status: u16,
    headers: &[(&str, String)],
    length: u64,
) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {length}\r\nConnection: close\r\n\r\n"
    ));
    stream.write_all(head.as_bytes())
}

pub(crate) fn write_json(
    stream: &mut TcpStream,
    status: u16,
    headers: &[(&str, String)],
    body: &serde_json::Value,
) {
    let body = body.to_string();
    let mut headers = headers.to_vec();
    headers.push(("Content-Type", "application/json".to_owned()));
    if write_head(stream, status, &headers, body.len() as u64).is_ok() {
        let _ = stream.write_all(body.as_bytes());
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        416 => "Range Not Satisfiable",
        503 => "Service Unavailable",
        _ => "Other",
    }
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(byte) => {
                        out.push(byte);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
