//! A stand-in for the `trainer` binary in the operator's chaos test, where hundreds of
//! jobs must run in minutes: what the operator sees of `trainer train` (events posted
//! to its report endpoint with the job's token until they are accepted, `events.jsonl`
//! copied to the run's folder at every checkpoint and at the end, the exit code and
//! termination message) without a model. `trainer serve` becomes an HTTP server that
//! answers the readiness probe and keeps the list of adapters the operator loads.
//!
//! `train`: 4 steps with checkpoints `ckpt-2` and `ckpt-4`, then `Succeeded`; a job
//! whose name starts with `fail-` stops after its first step with exit 2 and a
//! dataset error, as a bad line would.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anneal_crds::events::{EventBody, TrainerEvent};
use anneal_crds::finetunejob::{
    CheckpointStatus, JobPhase, JobResult, Metrics, Progress, fine_tuned_model_id,
};
use anneal_crds::storage::AsyncStorage;

/// Steps of every simulated run, and the steps that checkpoint.
const STEPS: u64 = 4;
const CHECKPOINT_EVERY: u64 = 2;
/// How long a step takes.
const STEP_TIME: Duration = Duration::from_millis(500);
/// How long undelivered events are tried again before the process gives up on them.
const DELIVERY_DEADLINE: Duration = Duration::from_secs(180);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("train") => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(train(&args[2]))
        }
        Some("serve") => serve(&args),
        _ => {
            eprintln!("sim-trainer: train MANIFEST | serve --port PORT");
            ExitCode::from(2)
        }
    }
}

/// The run's events: kept for `events.jsonl`, and posted in batches by a background
/// task, as `trainer train`'s poster thread does, each batch until it is accepted.
struct Reporter {
    next_seq: u64,
    all: Vec<TrainerEvent>,
    queue: tokio::sync::mpsc::UnboundedSender<TrainerEvent>,
    poster: tokio::task::JoinHandle<()>,
}

impl Reporter {
    fn start(url: String, token_file: String) -> Reporter {
        let (queue, mut queued) = tokio::sync::mpsc::unbounded_channel::<TrainerEvent>();
        let poster = tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut batch = Vec::new();
            while let Some(event) = queued.recv().await {
                batch.push(event);
                while let Ok(more) = queued.try_recv() {
                    batch.push(more);
                }
                let started = Instant::now();
                while !post(&client, &url, &token_file, &batch).await {
                    if started.elapsed() > DELIVERY_DEADLINE {
                        eprintln!("sim-trainer: {} events not delivered", batch.len());
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                batch.clear();
            }
        });
        Reporter {
            next_seq: 1,
            all: Vec::new(),
            queue,
            poster,
        }
    }

    fn emit(&mut self, body: EventBody) {
        let event = TrainerEvent::now(self.next_seq, body);
        self.next_seq += 1;
        self.all.push(event.clone());
        let _ = self.queue.send(event);
    }

    /// Waits until everything queued was accepted (or the poster gave up).
    async fn finish(self) {
        drop(self.queue);
        let _ = self.poster.await;
    }

    fn lines(&self) -> Vec<u8> {
        self.all
            .iter()
            .map(|e| format!("{}\n", e.to_line()))
            .collect::<String>()
            .into_bytes()
    }
}

/// One post of `batch`; whether the operator accepted it.
async fn post(
    client: &reqwest::Client,
    url: &str,
    token_file: &str,
    batch: &[TrainerEvent],
) -> bool {
    let token = std::fs::read_to_string(token_file).unwrap_or_default();
    let sent = client
        .post(url)
        .bearer_auth(token.trim())
        .header("content-type", "application/json")
        .body(serde_json::to_vec(batch).expect("events serialize"))
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    sent.is_ok_and(|r| r.status().is_success())
}

fn env(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| panic!("sim-trainer needs {key}"))
}

async fn train(manifest: &str) -> ExitCode {
    let text = std::fs::read_to_string(manifest).expect("the pod's manifest");
    let job = anneal_crds::manifest::parse_finetunejob(&text).expect("a valid manifest");
    let name = job.metadata.name.clone().unwrap_or_default();
    let namespace = job.metadata.namespace.clone().unwrap_or_default();
    let run = format!(
        "{}/{namespace}/{name}/{}",
        env("ANNEAL_OUTPUT").trim_end_matches('/'),
        env("ANNEAL_RUN_ID")
    );
    let storage = AsyncStorage::open(&run).expect("the run's storage");
    let mut reporter = Reporter::start(env("ANNEAL_REPORT_URL"), env("ANNEAL_REPORT_TOKEN_FILE"));
    reporter.emit(EventBody::Phase {
        phase: JobPhase::Running,
        message: Some(format!("training on 8 samples, {STEPS} steps")),
        result: None,
    });
    for step in 1..=STEPS {
        tokio::time::sleep(STEP_TIME).await;
        let epoch = step as f64 / STEPS as f64;
        if name.starts_with("fail-") {
            let message = "trainer train: s3://data/train.jsonl: line 3: messages is empty";
            let _ = std::fs::write(env("ANNEAL_TERMINATION_LOG"), message);
            reporter.finish().await;
            eprintln!("{message}");
            return ExitCode::from(2);
        }
        reporter.emit(EventBody::Progress(Progress {
            epoch,
            step,
            total_steps: STEPS,
            percent: (step * 100 / STEPS) as u32,
            eta_seconds: Some(0),
        }));
        reporter.emit(EventBody::Metrics {
            step,
            epoch,
            metrics: Metrics {
                train_loss: Some(2.0 / step as f64),
                ..Metrics::default()
            },
        });
        if step % CHECKPOINT_EVERY == 0 {
            let checkpoint = format!("ckpt-{step}");
            reporter.emit(EventBody::Checkpoint(CheckpointStatus {
                name: checkpoint.clone(),
                step,
                epoch,
                uri: format!("{run}/checkpoints/{checkpoint}"),
                valid_loss: Some(1.0 + 1.0 / step as f64),
                evaluation: Vec::new(),
                samples: Vec::new(),
            }));
            storage
                .put("events.jsonl", reporter.lines())
                .await
                .expect("events.jsonl written");
        }
    }
    reporter.emit(EventBody::Phase {
        phase: JobPhase::Succeeded,
        message: Some("training finished".to_owned()),
        result: Some(JobResult {
            model_id: fine_tuned_model_id(
                &job.spec.base_model.name,
                &name,
                &format!("ckpt-{STEPS}"),
            ),
            uri: format!("{run}/final"),
            stopped_early: None,
        }),
    });
    storage
        .put("events.jsonl", reporter.lines())
        .await
        .expect("events.jsonl written");
    reporter.finish().await;
    ExitCode::SUCCESS
}

/// Answers HTTP on `--host`:`--port` until killed: `GET /v1/models` lists the base
/// (`--served-model-name`) and the adapters loaded with `POST /v1/load_lora_adapter`
/// (taken off by `/v1/unload_lora_adapter`), as `trainer serve` lists them, so the
/// operator can sync a pod; anything else gets `200 ok` (the readiness probe).
fn serve(args: &[String]) -> ExitCode {
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|at| args.get(at + 1))
            .cloned()
    };
    let host = value("--host").unwrap_or_else(|| "127.0.0.1".to_owned());
    let port = value("--port").unwrap_or_else(|| "8000".to_owned());
    let base = value("--served-model-name").unwrap_or_else(|| "base".to_owned());
    let adapters: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let listener = TcpListener::bind(format!("{host}:{port}")).expect("the serving port");
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let (adapters, base) = (adapters.clone(), base.clone());
        std::thread::spawn(move || {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let (head, body) = read_request(&mut stream);
            let field = |name: &str| {
                serde_json::from_slice::<serde_json::Value>(&body).ok()?[name]
                    .as_str()
                    .map(str::to_owned)
            };
            let mut loaded = adapters.lock().unwrap();
            let answer = if head.starts_with("GET /v1/models") {
                let mut data = vec![serde_json::json!({"id": base, "object": "model"})];
                data.extend(loaded.iter().map(|(name, path)| {
                    serde_json::json!({"id": name, "object": "model", "root": path, "parent": base})
                }));
                serde_json::json!({"object": "list", "data": data}).to_string()
            } else if head.starts_with("POST /v1/load_lora_adapter") {
                if let (Some(name), Some(path)) = (field("lora_name"), field("lora_path")) {
                    loaded.push((name, path));
                }
                "ok".to_owned()
            } else if head.starts_with("POST /v1/unload_lora_adapter") {
                let name = field("lora_name");
                loaded.retain(|(loaded, _)| Some(loaded) != name.as_ref());
                "ok".to_owned()
            } else {
                "ok".to_owned()
            };
            drop(loaded);
            let _ = stream.write_all(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                )
                .as_bytes(),
            );
        });
    }
    ExitCode::SUCCESS
}

/// A request's head and its body (`Content-Length` bytes of it).
fn read_request(stream: &mut std::net::TcpStream) -> (String, Vec<u8>) {
    let mut bytes = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        if let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
            let length = (head.lines())
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if bytes.len() >= end + 4 + length {
                return (head, bytes[end + 4..end + 4 + length].to_vec());
            }
        }
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => return (String::from_utf8_lossy(&bytes).into_owned(), Vec::new()),
            Ok(read) => bytes.extend_from_slice(&buffer[..read]),
        }
    }
}
