//! `spec.tracking.mlflow`: the run logged to an MLflow tracking server through its
//! REST API (2.0) as it trains: a run per training run (found again on resume by its
//! `anneal.run` tag), the job's parameters, every step's metrics, each checkpoint's
//! sample answers and scores, the loss chart, and the outcome.
//!
//! The trainer's event stream feeds it through a channel; a thread of its own talks
//! to the server, so a slow or absent server never holds training up. A call that
//! fails is tried 3 times, then given up with a warning: tracking is a record, not a
//! condition of training.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anneal_crds::FineTuneJob;
use anneal_crds::events::{EventBody, TrainerEvent};
use anneal_crds::finetunejob::{JobPhase, Metrics};
use anneal_crds::storage::Storage;
use anneal_train::event_log::EventSink;
use anneal_train::loss_chart::CHART_FILE;
use serde_json::{Value, json};

/// Tries per call.
const ATTEMPTS: u32 = 3;
/// The longest one call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// What the tracker needs to know of the run.
pub struct TrackedRun {
    /// The server's base URL.
    pub uri: String,
    pub experiment: String,
    /// `{namespace}/{job}/{run id}`: the run's `anneal.run` tag and what finds it again.
    pub key: String,
    /// `{job}/{run id}`.
    pub name: String,
    pub params: Vec<(String, String)>,
    /// The run's folder, where `loss.svg` is written at the end.
    pub output: Storage,
}

impl TrackedRun {
    /// The run of `job` at `output` (run id `run_id`), when the job asks for MLflow
    /// (`spec.tracking.mlflow`), or the install does for every job (`default_uri`,
    /// the operator's `--mlflow-tracking-uri` as `ANNEAL_MLFLOW_TRACKING_URI`).
    pub fn of(
        job: &FineTuneJob,
        run_id: &str,
        output: Storage,
        default_uri: Option<&str>,
    ) -> Option<Self> {
        let spec = job.spec.tracking.as_ref().and_then(|t| t.mlflow.as_ref());
        let uri = spec
            .map(|m| m.uri.as_str())
            .or(default_uri.filter(|u| !u.is_empty()))?;
        let name = job.metadata.name.clone().unwrap_or_default();
        let namespace = (job.metadata.namespace.clone()).unwrap_or_else(|| "default".to_owned());
        Some(Self {
            uri: uri.trim_end_matches('/').to_owned(),
            experiment: (spec.and_then(|m| m.experiment.clone())).unwrap_or_else(|| name.clone()),
            key: format!("{namespace}/{name}/{run_id}"),
            name: format!("{name}/{run_id}"),
            params: job_params(job),
            output,
        })
    }
}

/// The job's settings as MLflow parameters: the base model, method, training and
/// every resolved hyperparameter.
fn job_params(job: &FineTuneJob) -> Vec<(String, String)> {
    let mut params = vec![
        ("base_model".to_owned(), job.spec.base_model.name.clone()),
        (
            "method".to_owned(),
            format!("{:?}", job.spec.method).to_lowercase(),
        ),
        (
            "training".to_owned(),
            format!("{:?}", job.spec.training).to_lowercase(),
        ),
    ];
    if let Ok(Value::Object(h)) = serde_json::to_value(job.resolved_hyperparameters()) {
        for (key, value) in h {
            let text = match value {
                Value::String(text) => text,
                Value::Null => continue,
                other => other.to_string(),
            };
            // MLflow keeps at most 6,000 characters of a value.
            params.push((key, text.chars().take(6000).collect()));
        }
    }
    params
}

/// The sink the event stream feeds, and the handle that waits for the last calls.
pub fn start(run: TrackedRun) -> (Box<dyn EventSink>, TrackingFinish) {
    let (sender, receiver) = mpsc::channel::<TrainerEvent>();
    let worker = std::thread::Builder::new()
        .name("mlflow".to_owned())
        .spawn(move || track(run, receiver))
        .ok();
    (Box::new(ChannelSink(sender)), TrackingFinish(worker))
}

struct ChannelSink(mpsc::Sender<TrainerEvent>);

impl EventSink for ChannelSink {
    fn emit(&mut self, event: &TrainerEvent) {
        let _ = self.0.send(event.clone());
    }
}

/// Waits, after the run, for the tracker to send what it still has.
pub struct TrackingFinish(Option<JoinHandle<()>>);

impl TrackingFinish {
    /// Waits up to `limit` once the event stream has closed (the run is over).
    pub fn wait(self, limit: Duration) {
        let Some(worker) = self.0 else { return };
        let started = Instant::now();
        while !worker.is_finished() && started.elapsed() < limit {
            std::thread::sleep(Duration::from_millis(50));
        }
        if worker.is_finished() {
            let _ = worker.join();
        } else {
            eprintln!(
                "warning: MLflow tracking: the last calls did not finish in {} s",
                limit.as_secs()
            );
        }
    }
}

fn track(run: TrackedRun, events: mpsc::Receiver<TrainerEvent>) {
    anneal_crds::storage::install_crypto_provider();
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let mut tracker = Tracker::new(run);
    while let Ok(event) = events.recv() {
        runtime.block_on(tracker.on(&event));
    }
}

/// The run on the server, once created or found.
struct ServerRun {
    run_id: String,
    /// `{experiment id}/{run id}/artifacts` under the server's artifact proxy, when
    /// the run's artifacts go through it (`mlflow-artifacts:/`).
    artifacts: Option<String>,
}

struct Tracker {
    run: TrackedRun,
    http: reqwest::Client,
    auth: Option<String>,
    server: Option<ServerRun>,
    /// Set once the server could not be reached for the run: no more tries.
    given_up: bool,
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

impl Tracker {
    fn new(run: TrackedRun) -> Self {
        let env = |name| std::env::var(name).ok().filter(|v| !v.is_empty());
        let auth = match (
            env("MLFLOW_TRACKING_TOKEN"),
            env("MLFLOW_TRACKING_USERNAME"),
        ) {
            (Some(token), _) => Some(format!("Bearer {token}")),
            (None, Some(user)) => {
                use base64::Engine;
                let password = env("MLFLOW_TRACKING_PASSWORD").unwrap_or_default();
                let pair =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                Some(format!("Basic {pair}"))
            }
            (None, None) => None,
        };
        Self {
            run,
            http: reqwest::Client::builder()
                .timeout(CALL_TIMEOUT)
                .build()
                .unwrap_or_default(),
            auth,
            server: None,
            given_up: false,
        }
    }

    /// One REST call, tried [`ATTEMPTS`] times: the answer's JSON, or why not.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let url = format!("{}/api/2.0/{path}", self.run.uri);
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            let mut request = self.http.request(method.clone(), &url);
            if let Some(auth) = &self.auth {
                request = request.header("authorization", auth);
            }
            if let Some(body) = &body {
                request = request
                    .header("content-type", "application/json")
                    .body(body.to_string());
            }
            match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let text = response.text().await.unwrap_or_default();
                    if status.is_success() {
                        return Ok(serde_json::from_str(&text).unwrap_or(Value::Null));
                    }
                    last = format!("{status}: {text}");
                    // A refusal of the request itself does not change on retry.
                    if status.is_client_error() {
                        return Err(last);
                    }
                }
                Err(error) => last = error.to_string(),
            }
            if attempt < ATTEMPTS {
                tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
            }
        }
        Err(last)
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value, String> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    /// The id of the experiment named `name`, if there is one.
    async fn find_experiment(&self, name: &str) -> Result<String, String> {
        let mut path = reqwest::Url::parse("http://mlflow/mlflow/experiments/get-by-name")
            .map_err(|e| e.to_string())?;
        path.query_pairs_mut().append_pair("experiment_name", name);
        let query = path.query().unwrap_or_default();
        let found = self
            .call(
                reqwest::Method::GET,
                &format!("mlflow/experiments/get-by-name?{query}"),
                None,
            )
            .await?;
        found["experiment"]["experiment_id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("no experiment {name}"))
    }

    /// The experiment's id, created when missing.
    async fn experiment_id(&self) -> Result<String, String> {
        let name = &self.run.experiment;
        if let Ok(id) = self.find_experiment(name).await {
            return Ok(id);
        }
        match self
            .post("mlflow/experiments/create", json!({"name": name}))
            .await
        {
            Ok(created) => created["experiment_id"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("no experiment id in {created}")),
            // Created meanwhile by another run: read it again.
            Err(_) => self.find_experiment(name).await,
        }
    }

    /// The run on the server: found by its `anneal.run` tag (a resumed run), else
    /// created with its parameters.
    async fn open_run(&self) -> Result<ServerRun, String> {
        let experiment = self.experiment_id().await?;
        let filter = format!("tags.`anneal.run` = '{}'", self.run.key.replace('\'', ""));
        let found = self
            .post(
                "mlflow/runs/search",
                json!({"experiment_ids": [experiment], "filter": filter, "max_results": 1}),
            )
            .await?;
        let info = match found["runs"].get(0) {
            Some(run) => run["info"].clone(),
            None => {
                let created = self
                    .post(
                        "mlflow/runs/create",
                        json!({
                            "experiment_id": experiment,
                            "run_name": self.run.name,
                            "start_time": now_ms() as u64,
                            "tags": [
                                {"key": "anneal.run", "value": self.run.key},
                                {"key": "mlflow.runName", "value": self.run.name},
                            ],
                        }),
                    )
                    .await?;
                created["run"]["info"].clone()
            }
        };
        let run_id = info["run_id"]
            .as_str()
            .ok_or_else(|| format!("no run id in {info}"))?
            .to_owned();
        let params: Vec<Value> = (self.run.params.iter())
            .map(|(key, value)| json!({"key": key, "value": value}))
            .collect();
        // MLflow takes at most 100 parameters a call.
        for chunk in params.chunks(100) {
            self.post(
                "mlflow/runs/log-batch",
                json!({"run_id": run_id, "params": chunk}),
            )
            .await?;
        }
        let artifacts = (info["artifact_uri"].as_str())
            .and_then(|uri| uri.strip_prefix("mlflow-artifacts:/"))
            .map(|path| path.trim_start_matches('/').to_owned());
        Ok(ServerRun { run_id, artifacts })
    }

    async fn on(&mut self, event: &TrainerEvent) {
        if self.given_up {
            return;
        }
        if self.server.is_none() {
            match self.open_run().await {
                Ok(run) => self.server = Some(run),
                Err(why) => {
                    eprintln!(
                        "warning: MLflow tracking at {}: {why}; the run is not tracked",
                        self.run.uri
                    );
                    self.given_up = true;
                    return;
                }
            }
        }
        let done = match &event.body {
            EventBody::Metrics { step, metrics, .. } => {
                self.log_metrics(*step, &metric_values(metrics)).await
            }
            EventBody::Checkpoint(checkpoint) => {
                let scores: Vec<(String, f64)> = (checkpoint.evaluation.iter())
                    .map(|s| (format!("checkpoint_{}", metric_key(&s.metric)), s.score))
                    .collect();
                let logged = self.log_metrics(checkpoint.step, &scores).await;
                let samples = json!({"checkpoint": checkpoint.name, "step": checkpoint.step,
                    "uri": checkpoint.uri, "samples": checkpoint.samples});
                let path = format!("checkpoints/{}.json", checkpoint.name);
                logged.and(
                    self.upload(&path, samples.to_string().into_bytes(), "application/json")
                        .await,
                )
            }
            EventBody::Phase {
                phase,
                result,
                message,
            } => {
                self.on_phase(
                    *phase,
                    result.as_ref().map(|r| r.model_id.as_str()),
                    message.as_deref(),
                )
                .await
            }
            EventBody::Progress(_) | EventBody::Log { .. } => Ok(()),
        };
        if let Err(why) = done {
            eprintln!("warning: MLflow tracking at {}: {why}", self.run.uri);
        }
    }

    async fn log_metrics(&self, step: u64, values: &[(String, f64)]) -> Result<(), String> {
        let Some(server) = &self.server else {
            return Ok(());
        };
        if values.is_empty() {
            return Ok(());
        }
        let timestamp = now_ms() as u64;
        let metrics: Vec<Value> = (values.iter())
            .filter(|(_, value)| value.is_finite())
            .map(|(key, value)| json!({"key": key, "value": value, "timestamp": timestamp, "step": step}))
            .collect();
        self.post(
            "mlflow/runs/log-batch",
            json!({"run_id": server.run_id, "metrics": metrics}),
        )
        .await
        .map(drop)
    }

    /// Puts `bytes` at `path` among the run's artifacts, through the server's
    /// artifact proxy; nothing when the run's artifacts are elsewhere.
    async fn upload(&self, path: &str, bytes: Vec<u8>, content_type: &str) -> Result<(), String> {
        let Some(root) = self.server.as_ref().and_then(|s| s.artifacts.clone()) else {
            return Ok(());
        };
        let url = format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/{root}/{path}",
            self.run.uri
        );
        let mut request = self
            .http
            .put(&url)
            .header("content-type", content_type)
            .body(bytes);
        if let Some(auth) = &self.auth {
            request = request.header("authorization", auth);
        }
        match request.send().await {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => Err(format!("uploading {path}: {}", response.status())),
            Err(error) => Err(format!("uploading {path}: {error}")),
        }
    }

    async fn on_phase(
        &self,
        phase: JobPhase,
        model_id: Option<&str>,
        message: Option<&str>,
    ) -> Result<(), String> {
        let Some(server) = &self.server else {
            return Ok(());
        };
        let status = match phase {
            JobPhase::Succeeded => "FINISHED",
            JobPhase::Failed => "FAILED",
            JobPhase::Cancelled => "KILLED",
            _ => return Ok(()),
        };
        let mut tags = vec![json!({"key": "anneal.phase", "value": format!("{phase:?}")})];
        if let Some(id) = model_id {
            tags.push(json!({"key": "anneal.model_id", "value": id}));
        }
        if let Some(message) = message {
            tags.push(json!({"key": "anneal.message", "value": message.chars().take(5000).collect::<String>()}));
        }
        self.post(
            "mlflow/runs/log-batch",
            json!({"run_id": server.run_id, "tags": tags}),
        )
        .await?;
        let output = self.run.output.clone();
        let chart = tokio::task::spawn_blocking(move || output.get(CHART_FILE)).await;
        if let Ok(Ok(Some(svg))) = chart {
            self.upload(CHART_FILE, svg, "image/svg+xml").await?;
        }
        self.post(
            "mlflow/runs/update",
            json!({"run_id": server.run_id, "status": status, "end_time": now_ms() as u64}),
        )
        .await
        .map(drop)
    }
}

/// A step's metrics by MLflow key.
fn metric_values(metrics: &Metrics) -> Vec<(String, f64)> {
    let Ok(Value::Object(values)) = serde_json::to_value(metrics) else {
        return Vec::new();
    };
    values
        .into_iter()
        .filter_map(|(key, value)| value.as_f64().map(|v| (snake_case(&key), v)))
        .collect()
}

/// `trainLoss` as `train_loss`.
fn snake_case(key: &str) -> String {
    let mut out = String::new();
    for c in key.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// A metric name MLflow takes as a key: letters, digits, `_ - . / space`.
fn metric_key(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_-./ ".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_and_scores_become_mlflow_keys() {
        let metrics = Metrics {
            train_loss: Some(1.5),
            learning_rate: Some(0.001),
            ..Metrics::default()
        };
        let mut values = metric_values(&metrics);
        values.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            values,
            [
                ("learning_rate".to_owned(), 0.001),
                ("train_loss".to_owned(), 1.5)
            ]
        );
        assert_eq!(
            metric_key("regex /^Good question!/"),
            "regex /_Good question_/"
        );
    }
}
