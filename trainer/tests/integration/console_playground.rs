//! `trainer console`'s playground over a run just trained: the run page links each
//! checkpoint's playground; the first message starts a `trainer serve` for the run's
//! models, and the streamed answer equals what `trainer generate` says with that
//! checkpoint's adapter; the form's round trip answers whole, refuses a bad field by
//! name and a request from another site; the server stops with the console.

use std::io::Write;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::console_cli::{get, start_console};
use crate::support::http_runtime;
use crate::train_cli::{expect, job_dir, repo, trainer_train};

const QUESTION: &str = "What should I wear when it is windy?";
const MAX_TOKENS: u32 = 24;

/// `trainer generate` with `adapter` on the question, greedy: its answer.
fn generated(adapter: &std::path::Path) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(["generate", "--device", "cpu", "--messages", "-"])
        .arg("--model")
        .arg(repo().join("examples/models/anneal-tiny"))
        .arg("--adapter")
        .arg(adapter)
        .args(["--max-new-tokens", &MAX_TOKENS.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let messages = json!([{"role": "user", "content": QUESTION}]).to_string();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(messages.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    expect(&output, 0);
    let text = String::from_utf8(output.stdout).unwrap();
    text.strip_suffix('\n').unwrap_or(&text).to_owned()
}

/// The deltas of a `text/event-stream` answer, joined.
fn streamed_text(body: &str) -> String {
    body.lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .filter(|data| *data != "[DONE]")
        .filter_map(|data| serde_json::from_str::<Value>(data).ok())
        .filter_map(|chunk| {
            chunk["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

/// `POST path` with `body` as JSON: the status and the whole body.
fn post_json(address: &str, path: &str, body: &Value) -> (u16, String) {
    http_runtime().block_on(async {
        let response = reqwest::Client::new()
            .post(format!("http://{address}{path}"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    })
}

/// `POST path` with the form `fields` and the extra `headers`.
fn post_form(
    address: &str,
    path: &str,
    fields: &[(&str, &str)],
    headers: &[(&str, &str)],
) -> (u16, String) {
    let body: String = fields
        .iter()
        .map(|(k, v)| format!("{k}={}", form_escape(v)))
        .collect::<Vec<_>>()
        .join("&");
    http_runtime().block_on(async {
        let mut request = reqwest::Client::new()
            .post(format!("http://{address}{path}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    })
}

fn form_escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            b' ' => "+".to_owned(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The port of the `trainer serve` the page says answers it.
fn serving_port(page: &str) -> u16 {
    let at = page
        .find("at <code>http://127.0.0.1:")
        .unwrap_or_else(|| panic!("no server named in {page}"));
    let rest = &page[at + "at <code>http://127.0.0.1:".len()..];
    rest[..rest.find('<').unwrap()].parse().unwrap()
}

#[test]
fn the_playground_streams_what_trainer_generate_says_with_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = job_dir(dir.path(), None);
    let out = dir.path().join("out");
    expect(&trainer_train(&manifest, &out, &[]).output().unwrap(), 0);
    let run = out.join("team-a/cli/r1");
    let (console, address) = start_console(&out);
    let page_path = "/runs/team-a/cli/r1/playground";

    let (_, run_page) = get(&address, "/runs/team-a/cli/r1");
    assert!(
        run_page.contains(&format!("href=\"{page_path}?checkpoint=ckpt-4\"")),
        "{run_page}"
    );
    let (status, page) = get(&address, &format!("{page_path}?checkpoint=ckpt-4"));
    assert_eq!(status, 200);
    let tuned = "ft:anneal-tiny:cli:ckpt-4";
    assert!(
        page.contains(&format!("<option value=\"{tuned}\" selected>")),
        "{page}"
    );
    for other in ["ft:anneal-tiny:cli:ckpt-10", "anneal-tiny"] {
        assert!(
            page.contains(&format!("<option value=\"{other}\">")),
            "{other}"
        );
    }
    assert!(page.contains("The first message starts"), "{page}");

    // The script's request: the answer streams, and equals trainer generate's.
    let fields = json!({"model": tuned, "system": "", "message": QUESTION,
        "temperature": "0", "top_p": "1", "max_tokens": MAX_TOKENS.to_string()});
    let (status, body) = post_json(&address, "/runs/team-a/cli/r1/chat", &fields);
    assert_eq!(status, 200, "{body}");
    let expected = generated(&run.join("checkpoints/ckpt-4"));
    assert!(!expected.is_empty());
    assert_eq!(streamed_text(&body), expected, "{body}");
    assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");

    // The snippets name the server the console started.
    let (_, page) = get(&address, page_path);
    let port = serving_port(&page);
    let (status, snippets) = post_json(&address, "/runs/team-a/cli/r1/snippets", &fields);
    assert_eq!(status, 200);
    let snippets: Value = serde_json::from_str(&snippets).unwrap();
    assert!(
        snippets["curl"].as_str().unwrap().starts_with(&format!(
            "curl -N http://127.0.0.1:{port}/v1/chat/completions"
        )),
        "{snippets}"
    );

    // The form's round trip, with the base model of the same server.
    let form = [
        ("model", "anneal-tiny"),
        ("system", ""),
        ("message", QUESTION),
        ("temperature", "0"),
        ("top_p", "1"),
        ("max_tokens", "8"),
    ];
    let (status, answered) = post_form(&address, page_path, &form, &[]);
    assert_eq!(status, 200, "{answered}");
    assert!(!answered.contains("id=\"answer-error\""), "{answered}");
    let answer_at = answered
        .find("id=\"answer\" aria-live=\"polite\">")
        .unwrap();
    assert!(
        !answered[answer_at..].contains("polite\"></pre>"),
        "the base model answered: {answered}"
    );
    assert_eq!(
        serving_port(&answered),
        port,
        "the same server answers the base model"
    );
    let mut bad = form;
    bad[3] = ("temperature", "5");
    let (status, refused) = post_form(&address, page_path, &bad, &[]);
    assert_eq!(status, 422);
    assert!(
        refused.contains("temperature must be a number from 0 to 2, not &quot;5&quot;"),
        "{refused}"
    );
    let (status, _) = post_form(
        &address,
        page_path,
        &form,
        &[("origin", "https://evil.example")],
    );
    assert_eq!(status, 403, "another site's page may not start servers");
    let (status, _) = http_runtime().block_on(async {
        let response = reqwest::Client::new()
            .post(format!("http://{address}/runs/team-a/cli/r1/chat"))
            .header("content-type", "application/json")
            .header("sec-fetch-site", "cross-site")
            .body(fields.to_string())
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), ())
    });
    assert_eq!(status, 403, "nor stream from one");
    let (status, unknown) = post_json(
        &address,
        "/runs/team-a/cli/r1/chat",
        &json!({"model": "ft:anneal-tiny:cli:ckpt-99", "message": "Hi",
            "temperature": "0", "top_p": "1", "max_tokens": "4"}),
    );
    assert_eq!(status, 422);
    assert!(unknown.starts_with("model \"ft:anneal-tiny:cli:ckpt-99\" is not one served here"));

    // Killed, the console takes its server with it.
    drop(console);
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "trainer serve outlived its console"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_run_without_its_job_yaml_has_no_playground() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("team-a/dog/r1");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(
        run.join("events.jsonl"),
        r#"{"seq":1,"time":"2026-12-05T10:00:00Z","type":"phase","phase":"Running"}"#.to_owned()
            + "\n",
    )
    .unwrap();
    let (_console, address) = start_console(dir.path());
    let (status, page) = get(&address, "/runs/team-a/dog/r1/playground");
    assert_eq!(status, 200);
    assert!(
        page.contains("Not offered for this run: the run has no job.yaml"),
        "{page}"
    );
    assert_eq!(get(&address, "/runs/team-a/cat/r1/playground").0, 404);
}
