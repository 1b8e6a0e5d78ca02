//! `trainer serve` as clients use it: the official `openai` Python package against
//! the bundled tiny model and a LoRA adapter (answers compared with the library's own
//! generation), malformed requests, requests side by side with a bounded queue, a
//! client leaving mid-stream, and a shutdown that finishes the streams in flight.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anneal_crds::dataset::{ChatMessage, Role};
use anneal_crds::hyperparameters::TargetModule;
use anneal_crds::storage::Storage;
use anneal_model::backend::CpuBackend;
use anneal_model::chat::ModelTokenizer;
use anneal_model::generate::{SamplingParams, generate};
use anneal_model::llm::{CausalLm, load_model};
use anneal_model::lora::peft::{load_adapter, save_adapter};
use anneal_model::lora::{LoraSettings, attach, projections_mut};
use anneal_moto::MotoServer;
use burn::module::Param;
use burn::prelude::*;
use burn::tensor::{DType, Distribution};
use serde_json::{Value, json};

use crate::support::serve::{Server, test_python, tiny_model};

type B = CpuBackend;

/// The `data:` payloads of a server-sent event stream, read as they arrive.
pub(crate) struct Events(BufReader<TcpStream>);

impl Events {
    pub(crate) fn new(socket: TcpStream) -> Events {
        let mut reader = BufReader::new(socket);
        let mut line = String::new();
        // Skip the status line and headers.
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
        }
        Events(reader)
    }

    pub(crate) fn next(&mut self) -> Option<String> {
        let mut line = String::new();
        loop {
            line.clear();
            if self.0.read_line(&mut line).unwrap() == 0 {
                return None;
            }
            if let Some(data) = line.trim_end().strip_prefix("data: ") {
                return Some(data.to_owned());
            }
        }
    }

    /// Reads to the end: the content pieces, the finish reason, the usage, and whether `[DONE]` came.
    pub(crate) fn rest(mut self) -> (String, Option<String>, Option<Value>, bool) {
        let (mut text, mut finish, mut usage, mut done) = (String::new(), None, None, false);
        while let Some(data) = self.next() {
            if data == "[DONE]" {
                done = true;
                continue;
            }
            let chunk: Value = serde_json::from_str(&data).unwrap();
            if let Some(choice) = chunk["choices"].get(0) {
                text.push_str(choice["delta"]["content"].as_str().unwrap_or(""));
                if let Some(reason) = choice["finish_reason"].as_str() {
                    finish = Some(reason.to_owned());
                }
            }
            if !chunk["usage"].is_null() {
                usage = Some(chunk["usage"].clone());
            }
        }
        (text, finish, usage, done)
    }
}

fn messages() -> Vec<ChatMessage> {
    vec![
        ChatMessage {
            role: Role::System,
            content: "You are a helpful assistant.".into(),
        },
        ChatMessage {
            role: Role::User,
            content: "Can I take a bike on the tram?".into(),
        },
    ]
}

pub(crate) fn chat_body(extra: Value) -> String {
    let mut body = json!({
        "model": "anneal-tiny",
        "messages": [{"role": "user", "content": "What should I wear when it is windy?"}],
        "temperature": 0,
    });
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    body.to_string()
}

/// A LoRA adapter with random B, saved in PEFT format, so it changes the answers.
pub(crate) fn random_adapter(dir: &Path) {
    let device = Default::default();
    B::seed(&device, 7);
    let (_, base) = load_model::<B>(&tiny_model(), &device, DType::F32).unwrap();
    let settings = LoraSettings {
        rank: 4,
        alpha: 16.0,
        dropout: 0.0,
        target_modules: TargetModule::ALL.to_vec(),
        use_rslora: false,
        seed: 3,
    };
    let mut model = attach(base, &settings);
    for (_, _, projection) in projections_mut(&mut model) {
        if let Some(lora) = projection.lora.as_mut() {
            let shape = lora.b.val().shape();
            lora.b = Param::from_tensor(Tensor::random(
                shape,
                Distribution::Normal(0.0, 0.5),
                &device,
            ));
        }
    }
    save_adapter(&mut model, &settings, "anneal-tiny", dir).unwrap();
}

/// What the library generates for [`messages`], as the server should.
fn library_reply(
    model: &CausalLm<B>,
    tokenizer: &ModelTokenizer,
    params: &SamplingParams,
) -> (String, usize) {
    let prompt = tokenizer.encode_chat(&messages(), true).unwrap().ids;
    let decode = |ids: &[u32]| tokenizer.decode(ids, true).unwrap();
    let reply = generate(
        model,
        &prompt,
        tokenizer.eos_token_ids(),
        params,
        decode,
        |_| {},
    );
    (reply.text, prompt.len())
}

#[test]
fn the_openai_sdk_gets_the_libraries_answers_whole_and_streamed() {
    let _generator = crate::support::generator_turn();
    let adapter_dir = tempfile::tempdir().unwrap();
    random_adapter(adapter_dir.path());
    let adapter_arg = format!("house={}", adapter_dir.path().display());
    let server = Server::start(&["--adapter", &adapter_arg]);

    let output = Command::new(test_python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/serve_openai_client.py"))
        .args([&server.base_url(), "anneal-tiny", "house"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "the openai client failed:\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&output.stderr),
        server.log.lock().unwrap()
    );
    let seen: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(seen["models"], json!(["anneal-tiny", "house"]));

    let device = Default::default();
    let (config, base) = load_model::<B>(&tiny_model(), &device, DType::F32).unwrap();
    let tokenizer = ModelTokenizer::from_model_dir(&tiny_model(), &config.architecture).unwrap();
    let adapted = load_adapter(base.clone(), adapter_dir.path()).unwrap();
    let greedy = |stop: Vec<String>| SamplingParams {
        max_new_tokens: 24,
        stop,
        ..Default::default()
    };

    for (name, model) in [("anneal-tiny", &base), ("house", &adapted)] {
        let (expected, prompt_tokens) = library_reply(model, &tokenizer, &greedy(Vec::new()));
        let whole = &seen[name]["whole"];
        assert_eq!(whole["text"], json!(expected), "{name}");
        assert_eq!(
            (&whole["object"], &whole["model"], &whole["role"]),
            (&json!("chat.completion"), &json!(name), &json!("assistant"))
        );
        let usage = whole["usage"].as_array().unwrap();
        assert_eq!(usage[0], json!(prompt_tokens), "{name}: prompt tokens");
        assert_eq!(
            usage[2],
            json!(prompt_tokens as u64 + usage[1].as_u64().unwrap())
        );
        let streamed = &seen[name]["streamed"];
        let pieces: Vec<&str> = streamed["pieces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
        assert_eq!(
            pieces.concat(),
            expected,
            "{name}: the stream adds up to the same reply"
        );
        assert!(
            pieces.len() > 1,
            "{name}: the reply came in pieces: {pieces:?}"
        );
        assert_eq!(streamed["roles"], json!(["assistant"]));
        assert_eq!(streamed["finish_reason"], whole["finish_reason"]);
        assert_eq!(streamed["usage"], whole["usage"]);
        assert_eq!(
            streamed["ids"],
            json!(1),
            "one completion id across the chunks"
        );
    }
    assert_ne!(
        seen["anneal-tiny"]["whole"]["text"], seen["house"]["whole"]["text"],
        "the adapter is applied"
    );

    let (stopped, _) = library_reply(&adapted, &tokenizer, &greedy(vec![" ".into()]));
    assert_eq!(seen["stopped"]["whole"]["text"], json!(stopped));
    assert_eq!(seen["stopped"]["whole"]["finish_reason"], json!("stop"));
    let pieces: Vec<&str> = seen["stopped"]["streamed"]["pieces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(pieces.concat(), stopped);

    let sampled = |seed| {
        let params = SamplingParams {
            max_new_tokens: 16,
            temperature: 1.0,
            seed,
            ..Default::default()
        };
        library_reply(&base, &tokenizer, &params).0
    };
    assert_eq!(seen["seeded"], json!([sampled(5), sampled(5), sampled(6)]));

    let errors = &seen["errors"];
    let error = |name: &str| {
        (
            errors[name]["status"].as_u64().unwrap(),
            errors[name]["param"].as_str().unwrap_or("").to_owned(),
            errors[name]["code"].clone(),
        )
    };
    assert_eq!(
        error("unknown_model"),
        (404, "model".into(), json!("model_not_found"))
    );
    assert!(
        errors["unknown_model"]["message"]
            .as_str()
            .unwrap()
            .contains("anneal-tiny, house")
    );
    assert_eq!(error("n"), (400, "n".into(), Value::Null));
    assert_eq!(
        error("too_long"),
        (400, "messages".into(), json!("context_length_exceeded"))
    );
    assert_eq!(
        error("max_tokens"),
        (400, "max_tokens".into(), json!("context_length_exceeded"))
    );
    assert_eq!(
        error("tool_role"),
        (400, "messages[0].role".into(), Value::Null)
    );
}

#[test]
fn malformed_requests_get_errors_and_never_take_the_server_down() {
    let _generator = crate::support::generator_turn();
    let server = Server::start(&[]);
    let cases: [(&str, &str, &str, u16, Option<&str>); 6] = [
        ("POST", "/v1/chat/completions", "{not json", 400, None),
        (
            "POST",
            "/v1/chat/completions",
            r#"{"model":"anneal-tiny"}"#,
            400,
            Some("messages"),
        ),
        (
            "POST",
            "/v1/chat/completions",
            r#"{"model":"anneal-tiny","messages":[{"role":"user","content":"hi"}],"top_p":"x"}"#,
            400,
            Some("top_p"),
        ),
        (
            "POST",
            "/v1/chat/completions",
            r#"{"model":"nope","messages":[{"role":"user","content":"hi"}]}"#,
            404,
            Some("model"),
        ),
        ("GET", "/v1/models/nope", "", 404, Some("model")),
        (
            "POST",
            "/v1/chat/completions",
            r#"{"model":"anneal-tiny","messages":[{"role":"user","content":"hi"}],"max_tokens":2000}"#,
            400,
            Some("max_tokens"),
        ),
    ];
    for (method, path, body, status, param) in cases {
        let (got, text) = server.call(method, path, body);
        assert_eq!(got, status, "{method} {path} {body}: {text}");
        let error: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(error["error"]["param"].as_str(), param, "{body}");
        assert!(!error["error"]["message"].as_str().unwrap().is_empty());
    }
    assert_eq!(server.call("GET", "/v1/chat/completions", "").0, 405);
    // A body cut short (the client closes its side before Content-Length is reached):
    // the server cannot read it, and says so in OpenAI's shape, as it does for one
    // over the 2 MiB limit.
    let mut socket = TcpStream::connect(&server.address).unwrap();
    write!(
        socket,
        "POST /v1/chat/completions HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{{\"model\""
    )
    .unwrap();
    socket.shutdown(std::net::Shutdown::Write).unwrap();
    let mut response = String::new();
    socket.read_to_string(&mut response).unwrap();
    let (head, text) = response.split_once("\r\n\r\n").unwrap();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    assert_eq!(status, 400, "{text}");
    let error: Value = serde_json::from_str(text).unwrap();
    assert_eq!(error["error"]["type"], json!("invalid_request_error"));
    // Half a request, then the client hangs up.
    let mut socket = TcpStream::connect(&server.address).unwrap();
    socket
        .write_all(b"POST /v1/chat/completions HTTP/1.0\r\nContent-Length: 500\r\n\r\n{\"mod")
        .unwrap();
    drop(socket);

    assert_eq!(server.call("GET", "/health", ""), (200, "ok\n".to_owned()));
    let (status, text) = server.call(
        "POST",
        "/v1/chat/completions",
        &chat_body(json!({"max_tokens": 4})),
    );
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        server.metric("anneal_serve_requests_total{model=\"anneal-tiny\",outcome=\"400\"}"),
        3.0
    );
}

#[test]
fn requests_run_side_by_side_and_past_the_queue_get_429() {
    let _generator = crate::support::generator_turn();
    let server = Server::start(&["--max-running", "2", "--max-waiting", "1"]);
    let long = chat_body(
        json!({"max_tokens": 900, "ignore_eos": true, "stream": true, "stream_options": {"include_usage": true}}),
    );
    let streams: Vec<TcpStream> = (0..3)
        .map(|_| server.open("POST", "/v1/chat/completions", &long))
        .collect();
    server.wait_for("two running and one waiting", |s| {
        s.metric("anneal_serve_requests_running") == 2.0
            && s.metric("anneal_serve_requests_in_flight") == 3.0
            && s.metric("anneal_serve_kv_cache_bytes") > 0.0
    });
    // The KV cache: a slot per running request, each with room for the prompt and its
    // 900 tokens (within the 1,024 of context), at 2 (keys, values) x 4 layers x 2 KV
    // heads x 32 dims x 4 bytes (f32) = 2,048 bytes a position.
    let per_slot = server.metric("anneal_serve_kv_cache_bytes") / (2.0 * 2048.0);
    assert!(
        per_slot.fract() == 0.0 && (901.0..=1024.0).contains(&per_slot),
        "{per_slot} positions a slot"
    );
    let (status, text) = server.call(
        "POST",
        "/v1/chat/completions",
        &chat_body(json!({"max_tokens": 2})),
    );
    assert_eq!(status, 429, "{text}");
    let error: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(error["error"]["type"], json!("rate_limit_error"));

    let replies: Vec<_> = streams.into_iter().map(|s| Events::new(s).rest()).collect();
    for (text, finish, usage, done) in &replies {
        assert_eq!(finish.as_deref(), Some("length"));
        assert_eq!(usage.as_ref().unwrap()["completion_tokens"], json!(900));
        assert!(done);
        assert_eq!(text, &replies[0].0, "greedy replies to one prompt agree");
    }
    server.wait_for("the queue to empty", |s| {
        s.metric("anneal_serve_requests_in_flight") == 0.0
    });
    assert_eq!(
        server.metric("anneal_serve_requests_total{model=\"anneal-tiny\",outcome=\"length\"}"),
        3.0
    );
    assert_eq!(
        server.metric("anneal_serve_requests_total{model=\"\",outcome=\"429\"}")
            + server.metric("anneal_serve_requests_total{model=\"anneal-tiny\",outcome=\"429\"}"),
        1.0
    );
}

#[test]
fn a_client_that_leaves_mid_stream_stops_its_generation() {
    let _generator = crate::support::generator_turn();
    let server = Server::start(&["--max-running", "1", "--max-waiting", "0"]);
    let long = chat_body(json!({"max_tokens": 900, "ignore_eos": true, "stream": true}));
    let mut events = Events::new(server.open("POST", "/v1/chat/completions", &long));
    // The role chunk, then one with content.
    events.next().unwrap();
    let first: Value = serde_json::from_str(&events.next().unwrap()).unwrap();
    assert!(first["choices"][0]["delta"]["content"].is_string());
    drop(events);

    server.wait_for("the cancelled request to be dropped", |s| {
        s.metric("anneal_serve_requests_total{model=\"anneal-tiny\",outcome=\"cancelled\"}") == 1.0
            && s.metric("anneal_serve_requests_running") == 0.0
    });
    let steps = server.metric("anneal_serve_engine_steps_total");
    assert!(
        steps < 500.0,
        "the engine went on generating for a client that left: {steps} steps"
    );
    // Its place is free again (with no room to wait, a held place would give 429).
    let (status, text) = server.call(
        "POST",
        "/v1/chat/completions",
        &chat_body(json!({"max_tokens": 3})),
    );
    assert_eq!(status, 200, "{text}");
}

/// Whether the server closed `socket` within `within` (a read of 0 bytes or an error).
fn closed_within(socket: &mut TcpStream, within: Duration) -> bool {
    socket.set_read_timeout(Some(within)).unwrap();
    let mut byte = [0u8; 64];
    match socket.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(error) => !matches!(
            error.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

#[test]
fn silent_connections_are_cut_and_health_is_answered_at_the_connection_cap() {
    let server = Server::start(&["--max-connections", "3", "--header-timeout-seconds", "1"]);
    // Every slot taken: one connection that sends nothing, two that stop mid-header.
    let mut silent = vec![TcpStream::connect(&server.address).unwrap()];
    for _ in 0..2 {
        let mut socket = TcpStream::connect(&server.address).unwrap();
        write!(socket, "GET /health HTTP/1.1\r\nHost: x\r\n").unwrap();
        silent.push(socket);
    }
    // A probe waits in the accept queue, then is answered once the header timeout
    // frees the slots.
    let asked = Instant::now();
    let (status, body) = server.call("GET", "/health", "");
    assert_eq!((status, body.trim()), (200, "ok"), "{body}");
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "answered after {:?}",
        asked.elapsed()
    );
    for (index, socket) in silent.iter_mut().enumerate() {
        assert!(
            closed_within(socket, Duration::from_secs(5)),
            "connection {index} still open"
        );
    }
}

#[test]
fn a_body_that_stops_arriving_is_refused_after_the_timeout() {
    let server = Server::start(&["--header-timeout-seconds", "1"]);
    let mut socket = TcpStream::connect(&server.address).unwrap();
    write!(
        socket,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"model\""
    )
    .unwrap();
    let sent = Instant::now();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut response = Vec::new();
    let mut chunk = [0u8; 4096];
    // The reply ends the exchange; read until its JSON body is whole.
    while !String::from_utf8_lossy(&response).trim_end().ends_with('}') {
        let read = socket
            .read(&mut chunk)
            .expect("an answer within the timeout");
        assert!(read > 0, "closed without an answer");
        response.extend_from_slice(&chunk[..read]);
    }
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("The body could not be read"), "{text}");
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "{:?}",
        sent.elapsed()
    );
}

#[test]
fn a_half_sent_request_does_not_hold_the_shutdown_past_its_grace() {
    let mut server = Server::start(&["--shutdown-grace-seconds", "2"]);
    // The head whole, the body never: the request waits for bytes that do not come.
    let mut straggler = TcpStream::connect(&server.address).unwrap();
    write!(
        straggler,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"model\""
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let signalled = Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(15),
            "the server did not exit\n{}",
            server.log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let waited = signalled.elapsed();
    assert_eq!(status.code(), Some(0), "{}", server.log.lock().unwrap());
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(8),
        "exited {waited:?} after SIGTERM"
    );
    // The log line comes from the process's last moments: wait for its reader.
    server.wait_for("the shutdown line", |s| {
        s.log
            .lock()
            .unwrap()
            .contains("stopped after the 2 s shutdown grace; 1 connections still open were cut")
    });
}

#[test]
fn sigterm_finishes_the_streams_in_flight_then_exits_cleanly() {
    let _generator = crate::support::generator_turn();
    let mut server = Server::start(&[]);
    let long = chat_body(
        json!({"max_tokens": 600, "ignore_eos": true, "stream": true, "stream_options": {"include_usage": true}}),
    );
    let mut events = Events::new(server.open("POST", "/v1/chat/completions", &long));
    events.next().unwrap();
    events.next().unwrap();
    let killed = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    server.wait_for("new connections to be refused", |s| {
        TcpStream::connect(&s.address).is_err()
    });

    let (_, finish, usage, done) = events.rest();
    assert_eq!(finish.as_deref(), Some("length"));
    assert_eq!(usage.unwrap()["completion_tokens"], json!(600));
    assert!(done, "the stream ended with [DONE]");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the server did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0), "{}", server.log.lock().unwrap());
}

#[test]
fn the_model_and_adapters_load_from_s3_and_fetch_refuses_an_incomplete_folder() {
    let _generator = crate::support::generator_turn();
    let moto = MotoServer::start();
    moto.create_bucket("models");
    let env = moto.settings();
    let bucket =
        Storage::open_with("s3://models", env.iter().map(|(k, v)| (*k, v.as_str()))).unwrap();
    let adapter_dir = tempfile::tempdir().unwrap();
    random_adapter(adapter_dir.path());
    bucket
        .upload_dir_complete(&tiny_model(), "anneal-tiny")
        .unwrap();
    bucket
        .upload_dir_complete(adapter_dir.path(), "adapters/house")
        .unwrap();

    let server = Server::start_with(
        "s3://models/anneal-tiny",
        &["--adapter", "house=s3://models/adapters/house/"],
        &env,
    );
    let (_, models) = server.call("GET", "/v1/models", "");
    let ids: Vec<Value> = serde_json::from_str::<Value>(&models).unwrap()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].clone())
        .collect();
    assert_eq!(ids, [json!("anneal-tiny"), json!("house")]);
    let body =
        json!({"model": "house", "messages": messages(), "temperature": 0, "max_tokens": 12});
    let (status, text) = server.call("POST", "/v1/chat/completions", &body.to_string());
    assert_eq!(status, 200, "{text}");
    let device = Default::default();
    let (config, base) = load_model::<B>(&tiny_model(), &device, DType::F32).unwrap();
    let tokenizer = ModelTokenizer::from_model_dir(&tiny_model(), &config.architecture).unwrap();
    let adapted = load_adapter(base, adapter_dir.path()).unwrap();
    let params = SamplingParams {
        max_new_tokens: 12,
        ..Default::default()
    };
    let reply: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        reply["choices"][0]["message"]["content"],
        json!(library_reply(&adapted, &tokenizer, &params).0)
    );
    drop(server);

    let fetch = |target: &Path| {
        Command::new(env!("CARGO_BIN_EXE_trainer"))
            .args(["fetch", "s3://models/adapters/house"])
            .arg(target)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap()
    };
    let out = tempfile::tempdir().unwrap();
    let fetched = fetch(&out.path().join("house"));
    assert!(
        fetched.status.success(),
        "{}",
        String::from_utf8_lossy(&fetched.stderr)
    );
    for file in ["adapter_config.json", "adapter_model.safetensors"] {
        assert_eq!(
            std::fs::read(out.path().join("house").join(file)).unwrap(),
            std::fs::read(adapter_dir.path().join(file)).unwrap(),
            "{file}"
        );
    }
    // A file that no longer matches the COMPLETE marker: half an upload, or damage.
    bucket
        .put(
            "adapters/house/adapter_model.safetensors",
            b"truncated".to_vec(),
        )
        .unwrap();
    let refused = fetch(&out.path().join("again"));
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("incomplete"));
    assert!(!out.path().join("again").exists());
    let serve = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(["serve", "--model"])
        .arg(tiny_model())
        .args([
            "--adapter",
            "house=s3://models/adapters/house",
            "--port",
            "0",
            "--device",
            "cpu",
        ])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    assert_eq!(serve.status.code(), Some(2));
    let message = String::from_utf8_lossy(&serve.stderr);
    assert!(
        message.contains("--adapter s3://models/adapters/house") && message.contains("incomplete"),
        "{message}"
    );
}
