//! `trainer serve --enable-runtime-lora`: an adapter loaded while the server runs
//! answers as the library does with it, an unload waits for the request still
//! streaming on it and then the name is gone, bad requests are refused by field, and
//! without the flag both endpoints say how to turn them on.

use std::path::Path;
use std::time::Instant;

use anneal_model::backend::CpuBackend;
use anneal_model::chat::ModelTokenizer;
use anneal_model::generate::{SamplingParams, generate};
use anneal_model::llm::load_model;
use anneal_model::lora::peft::load_adapter;
use burn::tensor::DType;
use serde_json::{Value, json};

use crate::serve_api::{Events, chat_body, random_adapter};
use crate::support::serve::{Server, tiny_model};

fn model_ids(server: &Server) -> Vec<String> {
    let (status, body) = server.call("GET", "/v1/models", "");
    assert_eq!(status, 200, "{body}");
    let list: Value = serde_json::from_str(&body).unwrap();
    (list["data"].as_array().unwrap().iter())
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

fn load_body(name: &str, path: &str) -> String {
    json!({"lora_name": name, "lora_path": path}).to_string()
}

/// The `error` object of a refusal.
fn error(body: &str) -> Value {
    serde_json::from_str::<Value>(body).unwrap()["error"].clone()
}

fn ask(server: &Server, model: &str) -> (u16, String) {
    server.call(
        "POST",
        "/v1/chat/completions",
        &chat_body(json!({"model": model, "max_tokens": 12})),
    )
}

/// The server's greedy answer from `model`.
fn answer(server: &Server, model: &str) -> String {
    let (status, body) = ask(server, model);
    assert_eq!(status, 200, "{body}");
    let reply: Value = serde_json::from_str(&body).unwrap();
    reply["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The library's greedy answers (as `chat_body` asks, 12 tokens) from the base model
/// and from it with the adapter in `adapter`.
fn library_answers(adapter: &Path) -> (String, String) {
    let device = Default::default();
    let (config, base) = load_model::<CpuBackend>(&tiny_model(), &device, DType::F32).unwrap();
    let tokenizer = ModelTokenizer::from_model_dir(&tiny_model(), &config.architecture).unwrap();
    let adapted = load_adapter(base.clone(), adapter).unwrap();
    let messages: Vec<anneal_crds::dataset::ChatMessage> = serde_json::from_value(
        json!([{"role": "user", "content": "What should I wear when it is windy?"}]),
    )
    .unwrap();
    let prompt = tokenizer.encode_chat(&messages, true).unwrap().ids;
    let library = |model| {
        let params = SamplingParams {
            max_new_tokens: 12,
            ..Default::default()
        };
        let decode = |ids: &[u32]| tokenizer.decode(ids, true).unwrap();
        generate(
            model,
            &prompt,
            tokenizer.eos_token_ids(),
            &params,
            decode,
            |_| {},
        )
        .text
    };
    (library(&base), library(&adapted))
}

/// With `house` loaded (and `--max-loras 1`): each refusal names its field.
fn refusals_name_the_field(server: &Server, path: &str) {
    let (status, body) = server.call("POST", "/v1/load_lora_adapter", &load_body("house", path));
    assert_eq!(status, 400);
    assert_eq!(
        error(&body)["message"],
        "The lora adapter 'house' has already been loaded."
    );
    let (status, body) = server.call("POST", "/v1/load_lora_adapter", &load_body("second", path));
    assert_eq!(
        (status, error(&body)["param"].clone()),
        (400, json!("lora_name")),
        "--max-loras 1: {body}"
    );
    let (status, body) = server.call(
        "POST",
        "/v1/unload_lora_adapter",
        r#"{"lora_name": "anneal-tiny"}"#,
    );
    assert_eq!(status, 400, "{body}");
    let (status, body) = server.call(
        "POST",
        "/v1/unload_lora_adapter",
        r#"{"lora_name": "nope"}"#,
    );
    assert_eq!(
        (status, error(&body)["message"].clone()),
        (404, json!("The lora adapter 'nope' cannot be found."))
    );
    let (status, body) = server.call("POST", "/v1/load_lora_adapter", r#"{"lora_name": "x"}"#);
    assert_eq!(
        (status, error(&body)["param"].clone()),
        (400, json!("lora_path")),
        "{body}"
    );
}

/// A long reply streams on `house`; the unload sent meanwhile answers only once that
/// reply has been generated to its end, which arrives whole.
fn unload_waits_for_the_reply_in_flight(server: &Server) {
    let long =
        chat_body(json!({"model": "house", "max_tokens": 300, "ignore_eos": true, "stream": true}));
    let mut events = Events::new(server.open("POST", "/v1/chat/completions", &long));
    events.next().unwrap(); // the role
    events.next().unwrap(); // the first piece
    let address = server.address.clone();
    let unload = std::thread::spawn(move || {
        let server = Server::at(address);
        let answer = server.call(
            "POST",
            "/v1/unload_lora_adapter",
            r#"{"lora_name": "house"}"#,
        );
        (answer, Instant::now())
    });
    let (mut pieces, mut late_piece_at, mut finish) = (2, None, None);
    while let Some(data) = events.next() {
        if data == "[DONE]" {
            break;
        }
        let chunk: Value = serde_json::from_str(&data).unwrap();
        assert!(chunk.get("error").is_none(), "the reply failed: {data}");
        if let Some(reason) = chunk["choices"][0]["finish_reason"].as_str() {
            finish = Some(reason.to_owned());
        } else {
            pieces += 1;
            if pieces == 250 {
                late_piece_at = Some(Instant::now());
            }
        }
    }
    let ((status, body), unloaded_at) = unload.join().unwrap();
    assert_eq!(
        (status, body.as_str()),
        (200, "Success: LoRA adapter 'house' removed successfully.")
    );
    assert_eq!(
        finish.as_deref(),
        Some("length"),
        "the reply ran to its end"
    );
    assert!(
        unloaded_at > late_piece_at.expect("250 pieces"),
        "the unload answered before the reply in flight was generated"
    );
}

#[test]
fn an_adapter_loads_answers_and_unloads_after_its_request_in_flight() {
    let _generator = crate::support::generator_turn();
    let adapter = tempfile::tempdir().unwrap();
    random_adapter(adapter.path());
    let path = adapter.path().to_str().unwrap();
    let server = Server::start(&["--enable-runtime-lora", "--max-loras", "1"]);
    assert_eq!(model_ids(&server), ["anneal-tiny"]);
    assert_eq!(ask(&server, "house").0, 404, "not loaded yet");

    let (status, body) = server.call("POST", "/v1/load_lora_adapter", &load_body("house", path));
    assert_eq!(
        (status, body.as_str()),
        (200, "Success: LoRA adapter 'house' added successfully.")
    );
    assert_eq!(model_ids(&server), ["anneal-tiny", "house"]);
    let (_, listed) = server.call("GET", "/v1/models/house", "");
    assert_eq!(
        serde_json::from_str::<Value>(&listed).unwrap()["parent"],
        "anneal-tiny"
    );
    // It answers what the library answers with that adapter, not the base's answer.
    let (base, adapted) = library_answers(adapter.path());
    assert_ne!(adapted, base, "the adapter changes the answer");
    assert_eq!(answer(&server, "house"), adapted);
    assert_eq!(answer(&server, "anneal-tiny"), base);

    refusals_name_the_field(&server, path);
    unload_waits_for_the_reply_in_flight(&server);
    assert_eq!(model_ids(&server), ["anneal-tiny"]);
    let (status, body) = ask(&server, "house");
    assert_eq!(
        (status, error(&body)["code"].clone()),
        (404, json!("model_not_found"))
    );

    // Loaded again under another name, it answers as before.
    let (status, _) = server.call("POST", "/v1/load_lora_adapter", &load_body("house-2", path));
    assert_eq!(status, 200);
    assert_eq!(answer(&server, "house-2"), adapted);
}

#[test]
fn with_a_token_only_callers_presenting_it_change_adapters_and_the_source_is_listed() {
    let _generator = crate::support::generator_turn();
    let adapter = tempfile::tempdir().unwrap();
    random_adapter(adapter.path());
    let path = adapter.path().to_str().unwrap();
    let server = Server::start_with(
        tiny_model().to_str().unwrap(),
        &["--enable-runtime-lora"],
        &[("ANNEAL_RUNTIME_LORA_TOKEN", "s3cret-token".to_owned())],
    );
    for headers in [
        "",
        "Authorization: Bearer wrong-token!\r\n",
        "Authorization: s3cret-token\r\n",
    ] {
        let (status, body) = server.call_with(
            "POST",
            "/v1/load_lora_adapter",
            headers,
            &load_body("house", path),
        );
        assert_eq!(
            (status, error(&body)["code"].clone()),
            (401, json!("invalid_api_key")),
            "{headers:?}: {body}"
        );
    }
    assert_eq!(model_ids(&server), ["anneal-tiny"]);
    let bearer = "Authorization: Bearer s3cret-token\r\n";
    let (status, body) = server.call_with(
        "POST",
        "/v1/load_lora_adapter",
        bearer,
        &load_body("house", path),
    );
    assert_eq!(status, 200, "{body}");
    // Listed with the source it was loaded from, as vLLM lists an adapter's path.
    let (_, listed) = server.call("GET", "/v1/models/house", "");
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(
        (listed["root"].as_str(), listed["parent"].as_str()),
        (Some(path), Some("anneal-tiny"))
    );
    // The chat API needs no token.
    assert_eq!(ask(&server, "house").0, 200);
    let unload = r#"{"lora_name": "house"}"#;
    assert_eq!(
        server.call("POST", "/v1/unload_lora_adapter", unload).0,
        401
    );
    assert_eq!(model_ids(&server), ["anneal-tiny", "house"]);
    assert_eq!(
        server
            .call_with("POST", "/v1/unload_lora_adapter", bearer, unload)
            .0,
        200
    );
    assert_eq!(model_ids(&server), ["anneal-tiny"]);
}

#[test]
fn without_the_flag_runtime_changes_are_refused_saying_how_to_allow_them() {
    let _generator = crate::support::generator_turn();
    let server = Server::start(&[]);
    for (path, body) in [
        ("/v1/load_lora_adapter", load_body("house", "/nowhere")),
        (
            "/v1/unload_lora_adapter",
            r#"{"lora_name": "house"}"#.to_owned(),
        ),
    ] {
        let (status, body) = server.call("POST", path, &body);
        assert_eq!(status, 404, "{path}");
        let message = error(&body)["message"].as_str().unwrap().to_owned();
        assert!(message.contains("--enable-runtime-lora"), "{message}");
    }
    assert_eq!(model_ids(&server), ["anneal-tiny"]);
}

#[test]
fn an_image_server_says_its_adapters_are_given_at_start() {
    let _generator = crate::support::generator_turn();
    let flux = tiny_model().join("../anneal-flux-tiny");
    let server = Server::start_with(flux.to_str().unwrap(), &["--enable-runtime-lora"], &[]);
    let (status, body) = server.call("POST", "/v1/load_lora_adapter", &load_body("x", "/nowhere"));
    assert_eq!(
        (status, error(&body)["code"].clone()),
        (400, json!("unsupported_endpoint")),
        "{body}"
    );
    assert!(body.contains("--adapter"), "{body}");
}

/// `--adapters-file`: what a restarted pod's server comes back with. Its adapters are
/// served by the time `/health` first answers 200 (polled from the start), one that
/// cannot load is named in the log and left out, and they unload like any other.
#[test]
fn the_adapters_file_is_loaded_before_the_server_says_it_is_healthy() {
    let _generator = crate::support::generator_turn();
    let adapter = tempfile::tempdir().unwrap();
    random_adapter(adapter.path());
    let path = adapter.path().to_str().unwrap();
    let listing = tempfile::tempdir().unwrap();
    let file = listing.path().join("adapters.json");
    let entries = json!([
        {"lora_name": "house", "lora_path": path},
        {"lora_name": "missing", "lora_path": "/nowhere/adapter"},
    ]);
    std::fs::write(&file, entries.to_string()).unwrap();
    let file_arg = file.to_str().unwrap();
    let server = Server::start(&["--enable-runtime-lora", "--adapters-file", file_arg]);
    let started = Instant::now();
    loop {
        let (status, body) = server.call("GET", "/health", "");
        if status == 200 {
            break;
        }
        assert_eq!(
            (status, body.as_str()),
            (503, "loading the adapters of --adapters-file\n")
        );
        assert!(started.elapsed().as_secs() < 60, "never healthy");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(model_ids(&server), ["anneal-tiny", "house"]);
    let (_, adapted) = library_answers(adapter.path());
    assert_eq!(answer(&server, "house"), adapted);
    let log = server.log.lock().unwrap().clone();
    assert!(
        log.contains("adapter \"missing\" of ") && log.contains("loaded 1 of the 2 adapters of"),
        "{log}"
    );
    let unload = r#"{"lora_name": "house"}"#;
    assert_eq!(
        server.call("POST", "/v1/unload_lora_adapter", unload).0,
        200
    );
    assert_eq!(model_ids(&server), ["anneal-tiny"]);

    // A file that is not there yet loads nothing and the server still comes up.
    let empty = Server::start(&[
        "--enable-runtime-lora",
        "--adapters-file",
        listing.path().join("absent.json").to_str().unwrap(),
    ]);
    empty.wait_for("healthy", |s| s.call("GET", "/health", "").0 == 200);
    assert_eq!(model_ids(&empty), ["anneal-tiny"]);
}

#[test]
fn an_adapters_file_needs_runtime_loads() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(["serve", "--model", "m", "--adapters-file", "a.json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--enable-runtime-lora"), "{stderr}");
}
