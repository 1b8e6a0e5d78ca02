//! `trainer train` reporting to the operator as in a pod: every event in the
//! run's `events.jsonl` reaches the report URL with the bearer token, an operator
//! that answers 503 for a while still gets them all, and with nothing listening
//! training still succeeds and exits soon after its flush timeout.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anneal_crds::events::{EventBody, TrainerEvent};
use anneal_crds::finetunejob::JobPhase;
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A job folder for a run of a few steps on the tiny model, with a token file.
fn job_dir(dir: &Path) -> PathBuf {
    let data =
        std::fs::read_to_string(repo().join("examples/quickstart/house-style.jsonl")).unwrap();
    let lines = data.lines().take(16).collect::<Vec<_>>().join("\n") + "\n";
    std::fs::write(dir.join("train.jsonl"), lines).unwrap();
    // The trailing newline a Secret file often has must not end up in the header.
    std::fs::write(dir.join("token"), "s3cret-token\n").unwrap();
    let model = std::path::absolute(repo().join("examples/models/anneal-tiny")).unwrap();
    let manifest = format!(
        r#"apiVersion: anneal.dev/v1alpha1
kind: FineTuneJob
metadata: {{name: report, namespace: team-a}}
spec:
  baseModel: {{name: anneal-tiny, source: "file://{}"}}
  dataset: {{train: "file://train.jsonl", validationSplit: 0.25}}
  hyperparameters:
    learningRate: 0.003
    epochs: 1
    batchSize: 4
    maxTokens: 256
    lora: {{rank: 4, alpha: 8}}
  checkpoints: {{everySteps: 2}}
"#,
        model.display()
    );
    let path = dir.join("job.yaml");
    std::fs::write(&path, manifest).unwrap();
    path
}

/// `trainer train` with events reported to `url` and a flush of `flush_seconds`.
fn trainer_train(dir: &Path, url: &str, flush_seconds: u64) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_trainer"));
    command
        .arg("train")
        .arg(job_dir(dir))
        .arg("--output")
        .arg(dir.join("out"))
        .args(["--run-id", "r1", "--json", "--device", "cpu"])
        .env("ANNEAL_REPORT_URL", url)
        .env("ANNEAL_REPORT_TOKEN_FILE", dir.join("token"))
        .env("ANNEAL_REPORT_FLUSH_SECONDS", flush_seconds.to_string())
        .env_remove("ANNEAL_RESUME")
        .env_remove("ANNEAL_RUN_ID")
        .env_remove("ANNEAL_OUTPUT");
    command
}

fn run_dir(dir: &Path) -> PathBuf {
    dir.join("out/team-a/report/r1")
}

/// The lines of the run's `events.jsonl` in storage, as JSON.
fn stored_events(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(run_dir(dir).join("events.jsonl"))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn expect_success(output: &Output) {
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// One request the test operator received.
#[derive(Clone, Debug)]
struct Post {
    path: String,
    authorization: Option<String>,
    events: Vec<Value>,
    status: u16,
}

/// A stand-in for the operator's report endpoint on 127.0.0.1: answers 503 to
/// the first `unavailable_first` posts and 200 after, and records every post.
struct TestOperator {
    url: String,
    posts: Arc<Mutex<Vec<Post>>>,
}

impl TestOperator {
    fn start(unavailable_first: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "http://{}/v1/jobs/team-a/report/events",
            listener.local_addr().unwrap()
        );
        let posts = Arc::new(Mutex::new(Vec::new()));
        let answered = Arc::new(AtomicUsize::new(0));
        let recorded = posts.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let posts = recorded.clone();
                let answered = answered.clone();
                std::thread::spawn(move || {
                    serve_connection(stream, &posts, &answered, unavailable_first)
                });
            }
        });
        Self { url, posts }
    }

    fn posts(&self) -> Vec<Post> {
        self.posts.lock().unwrap().clone()
    }
}

/// Answers the requests on one connection until the client closes it.
fn serve_connection(
    stream: TcpStream,
    posts: &Mutex<Vec<Post>>,
    answered: &AtomicUsize,
    unavailable_first: usize,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        let mut length = 0;
        let mut authorization = None;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap();
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap(),
                "authorization" => authorization = Some(value.trim().to_owned()),
                _ => {}
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let events: Vec<Value> = serde_json::from_slice(&body).unwrap();
        let n = answered.fetch_add(1, Ordering::SeqCst);
        let (status, reply) = if n < unavailable_first {
            (503, r#"{"error":"starting"}"#.to_owned())
        } else {
            let last = events.iter().filter_map(|e| e["seq"].as_u64()).max();
            (
                200,
                format!(
                    r#"{{"accepted":{},"lastSeq":{}}}"#,
                    events.len(),
                    last.unwrap_or(0)
                ),
            )
        };
        posts.lock().unwrap().push(Post {
            path,
            authorization,
            events,
            status,
        });
        let reason = if status == 200 {
            "OK"
        } else {
            "Service Unavailable"
        };
        let response = format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{reply}",
            reply.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// Checks that the accepted posts hold each stored event, every one equal to its
/// `events.jsonl` line, and nothing else (repeats of the same event allowed).
fn assert_delivered_all(operator: &TestOperator, stored: &[Value]) {
    let mut received: std::collections::BTreeMap<u64, Value> = Default::default();
    for post in operator.posts().iter().filter(|p| p.status == 200) {
        for event in &post.events {
            let seq = event["seq"].as_u64().unwrap();
            if let Some(earlier) = received.insert(seq, event.clone()) {
                assert_eq!(&earlier, event, "seq {seq} sent twice, differently");
            }
        }
    }
    let n = stored.len() as u64;
    assert!(n > 5, "a run has more events than {n}");
    assert_eq!(
        received.keys().copied().collect::<Vec<_>>(),
        (1..=n).collect::<Vec<_>>()
    );
    for (event, line) in received.values().zip(stored) {
        assert_eq!(event, line);
        // And it is a TrainerEvent the operator can read.
        serde_json::from_value::<TrainerEvent>(event.clone()).unwrap();
    }
}

#[test]
fn every_event_reaches_the_operator_once_with_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let operator = TestOperator::start(0);
    let output = trainer_train(dir.path(), &operator.url, 10)
        .output()
        .unwrap();
    expect_success(&output);

    let stored = stored_events(dir.path());
    assert_delivered_all(&operator, &stored);
    let posts = operator.posts();
    // With the operator answering at once, nothing had to be sent twice.
    let sent: usize = posts.iter().map(|p| p.events.len()).sum();
    assert_eq!(sent, stored.len());
    for post in &posts {
        assert_eq!(post.path, "/v1/jobs/team-a/report/events");
        assert_eq!(post.authorization.as_deref(), Some("Bearer s3cret-token"));
        assert!(post.events.len() <= 100);
    }
    let last = stored.last().unwrap();
    assert_eq!(last["type"], "phase");
    assert_eq!(last["phase"], "Succeeded");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("warning"), "{stderr}");
}

#[test]
fn an_operator_that_answers_503_for_a_while_still_gets_every_event() {
    let dir = tempfile::tempdir().unwrap();
    let operator = TestOperator::start(3);
    let output = trainer_train(dir.path(), &operator.url, 30)
        .output()
        .unwrap();
    expect_success(&output);

    let posts = operator.posts();
    assert_eq!(
        posts.iter().filter(|p| p.status == 503).count(),
        3,
        "{posts:?}"
    );
    assert_delivered_all(&operator, &stored_events(dir.path()));
    // One warning for the outage and one line when it ended, not one per retry.
    let stderr = String::from_utf8_lossy(&output.stderr);
    let reporting_lines = stderr.lines().filter(|l| l.contains("reporting")).count();
    assert!(reporting_lines <= 2, "{stderr}");
}

#[test]
fn with_nothing_listening_training_succeeds_and_exits_after_the_flush_timeout() {
    let dir = tempfile::tempdir().unwrap();
    // A port that was just free: connecting to it is refused.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/v1/jobs/team-a/report/events");
    let mut child = trainer_train(dir.path(), &url, 1)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // From the last event on, only the flush (1 s) stands between the run and its exit.
    let mut succeeded_at = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let event = TrainerEvent::from_line(&line.unwrap()).unwrap();
        if let EventBody::Phase {
            phase: JobPhase::Succeeded,
            ..
        } = event.body
        {
            succeeded_at = Some(Instant::now());
        }
    }
    let output = child.wait_with_output().unwrap();
    let exit_after = succeeded_at.expect("a Succeeded event").elapsed();
    expect_success(&output);
    assert!(exit_after < Duration::from_secs(5), "{exit_after:?}");

    let run = run_dir(dir.path());
    assert!(run.join("final/adapter_model.safetensors").exists());
    assert!(
        run.join("checkpoints/ckpt-2/adapter_model.safetensors")
            .exists()
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not delivered"), "{stderr}");
    let reporting_lines = stderr.lines().filter(|l| l.contains("reporting")).count();
    assert!(reporting_lines <= 2, "{stderr}");
}
