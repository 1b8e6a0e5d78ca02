//! One end-to-end world for a test: a fake API server, moto holding the base model and
//! the dataset, the operator running in-process against both, and the fake kubelet
//! running trainer pods as real `trainer` processes.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anneal_crds::FineTuneJob;
use anneal_crds::finetunejob::FineTuneJobStatus;
use anneal_crds::storage::Storage;
use anneal_fake_apiserver::FakeApiServer;
use anneal_moto::MotoServer;
use anneal_operator::config::OperatorConfig;
use anneal_operator::console::ConsoleSettings;
use anneal_operator::console::viewer::AuthSettings;
use anneal_operator::operator_run::{Listeners, OperatorSettings, run_operator};
use anneal_operator::report::ReportSettings;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::fake_kubelet::FakeKubelet;

pub const NAMESPACE: &str = "team-a";
pub const BUCKET: &str = "anneal-e2e";
pub const CREDENTIALS: &str = "s3-creds";

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `trainer` binary `cargo test --workspace` builds beside the test binaries.
pub fn trainer_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("ANNEAL_TRAINER_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().parent().unwrap().join("trainer");
    assert!(
        path.is_file(),
        "{} is missing: build it first with `cargo build -p anneal-trainer --bin trainer` \
         (./scripts/test.sh does), or set ANNEAL_TRAINER_BIN",
        path.display()
    );
    path
}

/// A running operator, stoppable to test a restart.
pub struct RunningOperator {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    pub report_url: String,
    pub health_url: String,
    /// The console (`--console-listen`), which every test operator serves.
    pub console_url: String,
}

impl RunningOperator {
    /// Stops it as SIGTERM would, and waits until it has.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        self.task.await.unwrap().unwrap();
    }
}

pub struct World {
    pub moto: MotoServer,
    pub api: FakeApiServer,
    pub kubelet: FakeKubelet,
    pub scratch: tempfile::TempDir,
    pub config: OperatorConfig,
}

impl World {
    /// Moto with the tiny model and `dataset` (JSONL text) uploaded, the API server
    /// with the storage Secret, and the kubelet; the operator starts separately.
    pub async fn start(dataset: &str) -> World {
        Self::start_with(dataset, trainer_binary()).await
    }

    /// `start`, with the kubelet running `trainer` as its pods' program.
    pub async fn start_with(dataset: &str, trainer: PathBuf) -> World {
        let moto = tokio::task::spawn_blocking(MotoServer::start)
            .await
            .unwrap();
        let settings: Vec<(String, String)> = moto
            .settings()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        let upload_settings = settings.clone();
        let dataset = dataset.to_owned();
        moto.create_bucket(BUCKET);
        tokio::task::spawn_blocking(move || {
            let models = Storage::open_with(
                &format!("s3://{BUCKET}/models/anneal-tiny"),
                upload_settings.clone(),
            )
            .unwrap();
            for entry in std::fs::read_dir(repo().join("examples/models/anneal-tiny")).unwrap() {
                let entry = entry.unwrap();
                if entry.file_type().unwrap().is_file() {
                    models
                        .put(
                            entry.file_name().to_str().unwrap(),
                            std::fs::read(entry.path()).unwrap(),
                        )
                        .unwrap();
                }
            }
            let data = Storage::open_with(&format!("s3://{BUCKET}/data"), upload_settings).unwrap();
            data.put("train.jsonl", dataset.into_bytes()).unwrap();
        })
        .await
        .unwrap();

        let api = FakeApiServer::start().await;
        let secrets: Api<Secret> = Api::namespaced(api.client(), NAMESPACE);
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(CREDENTIALS.to_owned()),
                ..ObjectMeta::default()
            },
            data: Some(
                settings
                    .iter()
                    .map(|(k, v)| (k.clone(), ByteString(v.clone().into_bytes())))
                    .collect(),
            ),
            ..Secret::default()
        };
        secrets
            .create(&PostParams::default(), &secret)
            .await
            .unwrap();

        let scratch = tempfile::TempDir::new().unwrap();
        let kubelet = FakeKubelet::start(
            api.client(),
            NAMESPACE,
            trainer,
            vec![("ANNEAL_REPORT_FLUSH_SECONDS".to_owned(), "5".to_owned())],
            scratch.path(),
        );
        let config = OperatorConfig {
            trainer_image: "anneal-trainer:test".to_owned(),
            default_output_uri: Some(format!("s3://{BUCKET}/runs")),
            default_credentials_secret: Some(CREDENTIALS.to_owned()),
            report_base_url: String::new(),
            trainer_backoff_limit: 2,
            trainer_grace_seconds: 30,
            // The operator checks datasets and models on the test's S3 server.
            allowed_storage_endpoints: settings
                .iter()
                .filter(|(key, _)| key.starts_with("AWS_ENDPOINT"))
                .map(|(_, endpoint)| endpoint.clone())
                .collect(),
            ..OperatorConfig::default()
        };
        World {
            moto,
            api,
            kubelet,
            scratch,
            config,
        }
    }

    pub fn client(&self) -> Client {
        self.api.client()
    }

    /// Starts an operator (a second one after `stop` is an operator restart).
    pub async fn start_operator(&self, report_port: Option<u16>) -> RunningOperator {
        start_operator(self.client(), self.config.clone(), report_port).await
    }

    /// `start_operator`, its console signing viewers in by `auth` and reaching
    /// deployments on the loopback ports the kubelet's serving pods listen on.
    pub async fn start_operator_with_console(&self, auth: AuthSettings) -> RunningOperator {
        let urls = self.kubelet.deployment_urls();
        let console = ConsoleSettings {
            auth,
            serving_address: std::sync::Arc::new(move |deployment| {
                urls(deployment.metadata.name.as_deref().unwrap_or_default())
            }),
        };
        start_operator_with(self.client(), self.config.clone(), None, console).await
    }

    /// Applies a FineTuneJob from YAML.
    pub async fn apply(&self, yaml: &str) -> FineTuneJob {
        let job: FineTuneJob = parse_job(yaml);
        let api: Api<FineTuneJob> = Api::namespaced(self.client(), NAMESPACE);
        api.create(&PostParams::default(), &job).await.unwrap()
    }

    /// Job `name`'s report token, as `kubectl get secret NAME-trainer -o
    /// jsonpath={.data.token}` gives it.
    pub async fn report_token(&self, name: &str) -> String {
        let secrets: Api<Secret> = Api::namespaced(self.client(), NAMESPACE);
        let secret = secrets.get(&format!("{name}-trainer")).await.unwrap();
        String::from_utf8(secret.data.unwrap()["token"].0.clone()).unwrap()
    }

    pub async fn job(&self, name: &str) -> FineTuneJob {
        let api: Api<FineTuneJob> = Api::namespaced(self.client(), NAMESPACE);
        api.get(name).await.unwrap()
    }

    /// Polls the job until `done` holds for its status, or panics after `timeout`
    /// showing the status and the pods' output.
    pub async fn wait_for(
        &self,
        name: &str,
        timeout: Duration,
        what: &str,
        done: impl Fn(&FineTuneJobStatus) -> bool,
    ) -> FineTuneJob {
        let started = Instant::now();
        loop {
            let job = self.job(name).await;
            if done(&job.status.clone().unwrap_or_default()) {
                return job;
            }
            if started.elapsed() > timeout {
                let logs: Vec<String> = std::fs::read_dir(self.scratch.path())
                    .map(|dir| {
                        dir.flatten()
                            .map(|e| {
                                let log = std::fs::read_to_string(e.path().join("output.log"))
                                    .unwrap_or_default();
                                let tail: String = log
                                    .lines()
                                    .rev()
                                    .take(15)
                                    .collect::<Vec<_>>()
                                    .into_iter()
                                    .rev()
                                    .collect::<Vec<_>>()
                                    .join("\n");
                                format!("--- {}:\n{tail}", e.file_name().to_string_lossy())
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                panic!(
                    "{name}: not {what} after {timeout:?}; status:\n{}\npods:\n{}",
                    serde_json::to_string_pretty(&job.status).unwrap(),
                    logs.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Folder of the pod's emulated volumes and output.
    pub fn pod_dir(&self, pod: &str) -> PathBuf {
        self.scratch.path().join(pod)
    }

    /// Reads an object of the run from moto.
    pub async fn read_object(&self, uri_folder: &str, name: &str) -> Option<Vec<u8>> {
        let settings: Vec<(String, String)> = self
            .moto
            .settings()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        let (folder, name) = (uri_folder.to_owned(), name.to_owned());
        tokio::task::spawn_blocking(move || {
            Storage::open_with(&folder, settings)
                .unwrap()
                .get(&name)
                .unwrap()
        })
        .await
        .unwrap()
    }
}

/// Starts an operator in-process against `client`'s API server, with its report
/// endpoint on `report_port` (any free port when `None`).
pub async fn start_operator(
    client: Client,
    config: OperatorConfig,
    report_port: Option<u16>,
) -> RunningOperator {
    start_operator_with(client, config, report_port, ConsoleSettings::default()).await
}

/// `start_operator`, its console set up by `console`.
pub async fn start_operator_with(
    client: Client,
    mut config: OperatorConfig,
    report_port: Option<u16>,
    console: ConsoleSettings,
) -> RunningOperator {
    let report = TcpListener::bind(("127.0.0.1", report_port.unwrap_or(0)))
        .await
        .unwrap();
    let health = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let console_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let console_url = format!("http://{}", console_listener.local_addr().unwrap());
    let report_url = format!("http://{}", report.local_addr().unwrap());
    let health_url = format!("http://{}", health.local_addr().unwrap());
    config.report_base_url = report_url.clone();
    let settings = OperatorSettings {
        config,
        namespace: None,
        lease: None,
        report: ReportSettings::default(),
        instance: "e2e".to_owned(),
        webhook: None,
        console,
    };
    let (stop, stopped) = watch::channel(false);
    let listeners = Listeners {
        report,
        health,
        console: Some(console_listener),
    };
    let task = tokio::spawn(run_operator(client, settings, listeners, stopped));
    RunningOperator {
        stop,
        task,
        report_url,
        health_url,
        console_url,
    }
}

/// Parses a FineTuneJob manifest with the same strict parser `kubectl apply` stands in for.
fn parse_job(yaml: &str) -> FineTuneJob {
    anneal_crds::manifest::parse_finetunejob(yaml).expect("test manifest is valid")
}

/// A job manifest on the uploaded model and dataset.
pub fn job_yaml(name: &str, epochs: u32, every_steps: u32, extra_spec: &str) -> String {
    format!(
        r#"apiVersion: anneal.dev/v1alpha1
kind: FineTuneJob
metadata: {{name: {name}, namespace: {NAMESPACE}}}
spec:
  baseModel: {{name: anneal-tiny, source: "s3://{BUCKET}/models/anneal-tiny"}}
  dataset: {{train: "s3://{BUCKET}/data/train.jsonl", validationSplit: 0.2}}
  hyperparameters:
    learningRate: 0.003
    epochs: {epochs}
    batchSize: 4
    maxTokens: 256
    lora: {{rank: 4, alpha: 8, dropout: 0.0}}
  checkpoints: {{everyEpoch: true, everySteps: {every_steps}}}
  resources: {{gpus: 0}}
{extra_spec}"#
    )
}

/// Uploads a local folder, subfolders included, under `uri` (blocking).
pub fn upload_tree(uri: &str, local: &Path, settings: Vec<(String, String)>) {
    let storage = Storage::open_with(uri, settings).unwrap();
    let mut stack = vec![local.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let relative = path
                    .strip_prefix(local)
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_owned();
                storage
                    .put(&relative, std::fs::read(&path).unwrap())
                    .unwrap();
            }
        }
    }
}

impl World {
    /// The moto settings as the storage layer takes them.
    pub fn storage_settings(&self) -> Vec<(String, String)> {
        self.moto
            .settings()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect()
    }

    /// Uploads the local folder `local` under `uri`.
    pub async fn upload(&self, local: PathBuf, uri: String) {
        let settings = self.storage_settings();
        tokio::task::spawn_blocking(move || upload_tree(&uri, &local, settings))
            .await
            .unwrap();
    }
}

/// An image job (`task: text-to-image`) on the bundled tiny FLUX model at
/// `s3://{BUCKET}/models/anneal-flux-tiny` and the pictures under `images`: each
/// picture `repeats` times an epoch, one a step, a checkpoint and a sample each epoch.
pub fn image_job_yaml(name: &str, images: &str, epochs: u32, repeats: u32) -> String {
    format!(
        r#"apiVersion: anneal.dev/v1alpha1
kind: FineTuneJob
metadata: {{name: {name}, namespace: {NAMESPACE}}}
spec:
  task: text-to-image
  baseModel: {{name: anneal-flux-tiny, source: "s3://{BUCKET}/models/anneal-flux-tiny"}}
  dataset: {{images: "{images}"}}
  hyperparameters:
    learningRate: 0.002
    epochs: {epochs}
    batchSize: 1
    repeats: {repeats}
    resolution: 64
    triggerWord: sks
    lora: {{rank: 4, alpha: 4}}
  checkpoints:
    everyEpoch: true
    samplePrompts: [{{prompt: sks, seed: 1, steps: 4}}]
  resources: {{gpus: 0}}
"#
    )
}

/// The first `lines` lines of the quick start's dataset.
pub fn quickstart_lines(lines: usize) -> String {
    let data =
        std::fs::read_to_string(repo().join("examples/quickstart/house-style.jsonl")).unwrap();
    data.lines().take(lines).collect::<Vec<_>>().join("\n") + "\n"
}

/// The `events.k8s.io` Events in `namespace` about the object named `name`.
pub async fn events_about(client: &Client, namespace: &str, name: &str) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(client.clone(), namespace);
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .collect()
}

/// The Events about `name` once `done` holds for them, or after ten seconds
/// whatever there is. Controllers publish an Event after writing the status it
/// announces, so a test that has just seen the status must wait for the Event.
pub async fn events_once(
    client: &Client,
    namespace: &str,
    name: &str,
    done: impl Fn(&[Event]) -> bool,
) -> Vec<Event> {
    let started = Instant::now();
    loop {
        let events = events_about(client, namespace, name).await;
        if done(&events) || started.elapsed() > Duration::from_secs(10) {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The body of a GET of `url` (a console page), which must answer 200.
pub async fn page_text(url: String) -> String {
    let response = reqwest::get(&url).await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    response.text().await.unwrap()
}
