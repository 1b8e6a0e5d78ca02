//! `trainer console`'s playground in a real browser (headless Chromium, as in
//! `console_browser.rs`): over a job `trainer train` just trained on the bundled tiny
//! model, a checkpoint's playground streams, into the page, the answer `trainer
//! generate` gives with that checkpoint's adapter; the page works at both widths and
//! loads nothing from another host (screenshots `local-playground-*.png`).
//!
//! Needs `chromedriver` and `chromium` on PATH (`scripts/test.sh` installs them).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anneal_e2e::browser::{Driver, check_page, click, text_of};
use anneal_e2e::operator_harness::{quickstart_lines, repo, trainer_binary};
use fantoccini::Locator;
use serde_json::json;

const QUESTION: &str = "Can I take a bike on the tram?";
const MAX_TOKENS: &str = "24";

/// A `trainer console`, killed when dropped.
struct Console(Child);

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Trains a small LoRA job on the tiny model into `runs` (run `team-a/story/r1`).
fn train(dir: &Path, runs: &Path) {
    std::fs::write(dir.join("train.jsonl"), quickstart_lines(16)).unwrap();
    let model = std::path::absolute(repo().join("examples/models/anneal-tiny")).unwrap();
    let manifest = format!(
        r#"apiVersion: anneal.dev/v1alpha1
kind: FineTuneJob
metadata: {{name: story, namespace: team-a}}
spec:
  baseModel: {{name: anneal-tiny, source: "file://{}"}}
  dataset: {{train: "file://train.jsonl", validationSplit: 0.25}}
  hyperparameters: {{learningRate: 0.003, epochs: 1, batchSize: 4, maxTokens: 256, lora: {{rank: 4, alpha: 8}}}}
  checkpoints: {{everySteps: 2}}
"#,
        model.display()
    );
    std::fs::write(dir.join("job.yaml"), manifest).unwrap();
    let output = Command::new(trainer_binary())
        .arg("train")
        .arg(dir.join("job.yaml"))
        .arg("--output")
        .arg(runs)
        .args(["--run-id", "r1", "--device", "cpu"])
        .env_remove("ANNEAL_RESUME")
        .env_remove("ANNEAL_RUN_ID")
        .env_remove("ANNEAL_OUTPUT")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `trainer console --port 0` over `runs`: the console and its base URL.
fn start_console(runs: &Path) -> (Console, String) {
    let mut child = Command::new(trainer_binary())
        .args(["console", "--port", "0", "--runs"])
        .arg(runs)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let console = Console(child);
    let mut first = String::new();
    BufReader::new(stdout).read_line(&mut first).unwrap();
    let url = first
        .strip_prefix("console: ")
        .and_then(|rest| rest.split_once(' '))
        .map(|(url, _)| url.trim_end_matches('/').to_owned())
        .unwrap_or_else(|| panic!("{first}"));
    (console, url)
}

/// `trainer generate` with `adapter`, greedy, on the question.
fn generated(adapter: &Path) -> String {
    let mut child = Command::new(trainer_binary())
        .args(["generate", "--device", "cpu", "--messages", "-"])
        .arg("--model")
        .arg(repo().join("examples/models/anneal-tiny"))
        .arg("--adapter")
        .arg(adapter)
        .args(["--max-new-tokens", MAX_TOKENS])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let messages = json!([{"role": "user", "content": QUESTION}]).to_string();
    (child.stdin.take().unwrap())
        .write_all(messages.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    text.strip_suffix('\n').unwrap_or(&text).to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoints_playground_streams_trainer_generates_answer_in_the_browser() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    train(dir.path(), &runs);
    let (_console, console) = start_console(&runs);
    let driver = Driver::start();
    let browser = driver.browser().await;

    // From the run page, a checkpoint's playground.
    browser
        .goto(&format!("{console}/runs/team-a/story/r1"))
        .await
        .unwrap();
    click(&browser, Locator::LinkText("Chat with ckpt-2")).await;
    browser
        .wait()
        .for_element(Locator::Id("playground"))
        .await
        .unwrap();
    let chosen = browser.find(Locator::Id("model")).await.unwrap();
    assert_eq!(
        chosen.prop("value").await.unwrap().as_deref(),
        Some("ft:anneal-tiny:story:ckpt-2"),
        "the checkpoint followed is chosen"
    );
    browser
        .find(Locator::Id("message"))
        .await
        .unwrap()
        .send_keys(QUESTION)
        .await
        .unwrap();
    for (name, value) in [("temperature", "0"), ("max_tokens", MAX_TOKENS)] {
        let field = browser
            .find(Locator::Css(&format!("input[name='{name}']")))
            .await
            .unwrap();
        field.clear().await.unwrap();
        field.send_keys(value).await.unwrap();
    }
    let expected = generated(&runs.join("team-a/story/r1/checkpoints/ckpt-2"));
    click(&browser, Locator::Css("#playground button")).await;
    // The first message starts the server: loading the tiny model takes a moment.
    let started = Instant::now();
    loop {
        let answer = text_of(&browser, "#answer").await;
        if answer.trim() == expected.trim() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "streamed {answer:?}, trainer generate says {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        browser.current_url().await.unwrap().path(),
        "/runs/team-a/story/r1/playground",
        "streamed in the page, not a form round trip"
    );
    // Once the answer is over, the snippets name the server the console started.
    let started = Instant::now();
    loop {
        let curl = text_of(&browser, "#curl").await;
        if curl.starts_with("curl -N http://127.0.0.1:") && !curl.contains(":PORT/") {
            assert!(curl.contains("\"max_tokens\": 24"), "{curl}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the snippet: {curl}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    check_page(&browser, &console, "local-playground").await;
    browser.close().await.unwrap();
}
