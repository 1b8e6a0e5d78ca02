//! A fake OpenAI-compatible server on loopback for the evaluation tests: a judge whose
//! verdicts follow fixed rules, and a hosted model that always answers in the house
//! style. Every request is recorded; a wrong bearer token gets 401.
//!
//! The judge (model `fake-judge`) scores an answer 9 when it has the house style
//! ("Good question!") and 2 when not; of two answers it picks the one with the house
//! style, or a tie. For a conversation that mentions `garbage-please` it answers
//! without a verdict line, as a confused judge would.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

pub const API_KEY: &str = "sk-test-123";
pub const STYLED_ANSWER: &str = "Good question! It depends.\nIn short: yes.";

pub struct FakeOpenAi {
    /// Base URL, ending before `/chat/completions`.
    pub url: String,
    /// Each chat request answered, its body, in order.
    pub requests: Arc<Mutex<Vec<Value>>>,
    /// Chat requests answered before the server answers 503 to every one (an outage).
    pub answer_at_most: Arc<AtomicUsize>,
}

impl FakeOpenAi {
    pub fn start() -> FakeOpenAi {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let answer_at_most = Arc::new(AtomicUsize::new(usize::MAX));
        let (recorded, limit) = (requests.clone(), answer_at_most.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (recorded, limit) = (recorded.clone(), limit.clone());
                std::thread::spawn(move || answer_connection(stream, &recorded, &limit));
            }
        });
        FakeOpenAi {
            url,
            requests,
            answer_at_most,
        }
    }
}

fn answer_connection(stream: TcpStream, recorded: &Mutex<Vec<Value>>, limit: &AtomicUsize) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0;
        let mut authorized = false;
        loop {
            let mut header = String::new();
            reader.read_line(&mut header).unwrap();
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').unwrap_or((header, ""));
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap(),
                "authorization" => authorized = value.trim() == format!("Bearer {API_KEY}"),
                _ => {}
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let (status, reply) = if !authorized {
            (401, json!({"error": {"message": "invalid api key"}}))
        } else if request_line.starts_with("GET /v1/models") {
            (200, json!({"data": [{"id": "fake-judge"}]}))
        } else if recorded.lock().unwrap().len() >= limit.load(Ordering::SeqCst) {
            (503, json!({"error": {"message": "overloaded"}}))
        } else {
            let request: Value = serde_json::from_slice(&body).unwrap();
            recorded.lock().unwrap().push(request.clone());
            (200, completion(&reply_to(&request)))
        };
        let text = reply.to_string();
        let mut out = &stream;
        let reason = match status {
            200 => "OK",
            401 => "Unauthorized",
            _ => "Service Unavailable",
        };
        write!(
            out,
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        )
        .unwrap();
    }
}

fn completion(content: &str) -> Value {
    json!({
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
    })
}

fn reply_to(request: &Value) -> String {
    if request["model"] != "fake-judge" {
        return STYLED_ANSWER.to_owned();
    }
    let system = request["messages"][0]["content"].as_str().unwrap_or("");
    let user = request["messages"][1]["content"].as_str().unwrap_or("");
    if user.contains("garbage-please") {
        return "Hmm, hard to say. Both have merits.".to_owned();
    }
    let styled = |text: &str| text.contains("Good question!");
    if system.contains("compare two") {
        let (_, answers) = user.split_once("## Answer A\n").unwrap();
        let (a, b) = answers.split_once("\n\n## Answer B\n").unwrap();
        let winner = match (styled(a), styled(b)) {
            (true, false) => "A",
            (false, true) => "B",
            _ => "tie",
        };
        return format!("One of them greets the question.\nWinner: {winner}");
    }
    let (_, answer) = user.split_once("## The answer to judge\n").unwrap();
    let score = if styled(answer) { 9 } else { 2 };
    format!("Judged by the house style.\nScore: {score}")
}
