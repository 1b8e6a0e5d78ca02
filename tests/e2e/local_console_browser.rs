//! `trainer console`'s playground in a real browser (headless Chromium, as in
//! `console_browser.rs`): over a job `trainer train` just trained on the bundled tiny
//! model, a checkpoint's playground streams, into the page, the answer `trainer
//! generate` gives with that checkpoint's adapter; on the run page, a drag across the
//! loss chart zooms the charts to the steps it spans and a box hides a series. The
//! pages work at both widths and load nothing from another host (screenshots
//! `local-playground-*.png`, `local-run-zoomed-*.png`).
//!
//! Needs `chromedriver` and `chromium` on PATH (`scripts/test.sh` installs them).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anneal_e2e::browser::{Driver, ask_in_playground, check_page, click, text_of, wait_for_answer};
use anneal_e2e::operator_harness::{quickstart_lines, repo, trainer_binary};
use fantoccini::{Client, Locator};
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
  hyperparameters: {{learningRate: 0.003, epochs: 2, batchSize: 4, maxTokens: 256, lora: {{rank: 4, alpha: 8}}}}
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
    let expected = generated(&runs.join("team-a/story/r1/checkpoints/ckpt-2"));
    ask_in_playground(
        &browser,
        QUESTION,
        &[("temperature", "0"), ("max_tokens", MAX_TOKENS)],
    )
    .await;
    // The first message starts the server: loading the tiny model takes a moment.
    wait_for_answer(&browser, &expected, Duration::from_secs(120)).await;
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
    a_drag_zooms_the_charts_and_a_box_hides_a_series(&browser, &console).await;
    browser.close().await.unwrap();
}

/// The number of training-loss points the page draws.
async fn train_points(browser: &Client) -> usize {
    let count = browser
        .execute(
            "return document.querySelectorAll('circle.train-point').length;",
            vec![],
        )
        .await
        .unwrap();
    count.as_u64().unwrap() as usize
}

async fn a_drag_zooms_the_charts_and_a_box_hides_a_series(browser: &Client, console: &str) {
    let run = format!("{console}/runs/team-a/story/r1");
    browser.goto(&run).await.unwrap();
    let all = train_points(browser).await;
    assert!(all >= 4, "{all} steps");
    let display = "return getComputedStyle(document.querySelector('circle.train-point')).display;";
    click(browser, Locator::Id("show-train")).await;
    assert_eq!(browser.execute(display, vec![]).await.unwrap(), "none");
    click(browser, Locator::Id("show-train")).await;
    assert_eq!(browser.execute(display, vec![]).await.unwrap(), "inline");

    // A drag from 50% to 95% of the loss chart's width, as the pointer events come.
    browser
        .execute(
            r#"var svg = document.querySelector('svg.chart[data-first-step]');
               var box = svg.getBoundingClientRect();
               function at(type, share) {
                 svg.dispatchEvent(new PointerEvent(type, {bubbles: true, button: 0,
                   clientX: box.left + box.width * share, clientY: box.top + box.height / 2}));
               }
               at('pointerdown', 0.5); at('pointermove', 0.7); at('pointerup', 0.95);"#,
            vec![],
        )
        .await
        .unwrap();
    let started = Instant::now();
    let url = loop {
        let url = browser.current_url().await.unwrap();
        if url.query().is_some_and(|q| q.contains("from=")) {
            break url;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no zoom: {url}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let bound = |name: &str| -> u64 {
        let (_, value) = url.query_pairs().find(|(k, _)| k == name).unwrap();
        value.parse().unwrap()
    };
    let (from, to) = (bound("from"), bound("to"));
    assert!(from > 1 && from < to, "{url}");
    browser
        .wait()
        .for_element(Locator::LinkText("All steps"))
        .await
        .unwrap();
    let zoomed = train_points(browser).await;
    assert_eq!(
        zoomed as u64,
        to - from + 1,
        "a point per step from {from} to {to}"
    );
    assert!(zoomed < all);
    check_page(browser, console, "local-run-zoomed").await;
}
