//! The ModelDeployment controller against the fake API server: FineTuneJob statuses
//! written by the test (no trainer runs), Deployment statuses written by the test (no
//! pods run), and the controller's Deployment, Service, status and Events read back.
//! Each test is one user story. Most run the controller alone, so that the
//! FineTuneJob controller does not move the jobs the test sets up; the last runs the
//! whole operator.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anneal_crds::finetunejob::JobPhase;
use anneal_crds::modeldeployment::{DeploymentPhase, ModelDeploymentStatus};
use anneal_crds::{FineTuneJob, ModelDeployment};
use anneal_e2e::operator_harness::{events_once, start_operator};
use anneal_fake_apiserver::FakeApiServer;
use anneal_fake_hub::FakeHub;
use anneal_operator::config::OperatorConfig;
use anneal_operator::metrics::Metrics;
use anneal_operator::modeldeployment::controller::{Context, run_modeldeployment_controller};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, Service};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::events::{Recorder, Reporter};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::watch;

const NAMESPACE: &str = "team-a";
/// Job `name`'s run folder, as the FineTuneJob controller names it from the job's uid.
async fn run_of(client: &Client, name: &str) -> String {
    let api: Api<FineTuneJob> = Api::namespaced(client.clone(), NAMESPACE);
    let uid = api.get(name).await.unwrap().metadata.uid.unwrap();
    format!("s3://runs/{NAMESPACE}/{name}/{uid}")
}
const WAIT: Duration = Duration::from_secs(20);

fn config() -> OperatorConfig {
    OperatorConfig {
        trainer_image: "anneal-trainer:test".to_owned(),
        default_credentials_secret: Some("anneal-storage".to_owned()),
        ..OperatorConfig::default()
    }
}

/// The fake API server with the ModelDeployment controller running against it.
struct Serving {
    api: FakeApiServer,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Serving {
    async fn start() -> Self {
        let api = FakeApiServer::start().await;
        let client = api.client();
        let context = Arc::new(Context {
            client: client.clone(),
            recorder: Recorder::new(
                client,
                Reporter {
                    controller: "anneal-operator".to_owned(),
                    instance: Some("e2e".to_owned()),
                },
            ),
            metrics: Metrics::new(),
            config: config(),
        });
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run_modeldeployment_controller(
            context,
            None,
            wait_for(stopped),
        ));
        Serving { api, stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        self.task.await.unwrap();
    }

    fn client(&self) -> Client {
        self.api.client()
    }
}

async fn wait_for(mut flag: watch::Receiver<bool>) {
    let _ = flag.wait_for(|stop| *stop).await;
}

/// Creates a FineTuneJob and writes its status as the FineTuneJob controller would:
/// `phase`, and checkpoints `ckpt-9`, `ckpt-18`, ... with these validation losses.
async fn job(client: &Client, name: &str, phase: JobPhase, losses: &[f64]) {
    let job = anneal_crds::manifest::parse_finetunejob(&format!(
        r#"apiVersion: anneal.dev/v1alpha1
kind: FineTuneJob
metadata: {{name: {name}, namespace: {NAMESPACE}}}
spec:
  baseModel: {{name: anneal-tiny, source: "s3://models/anneal-tiny"}}
  dataset: {{train: "s3://data/train.jsonl"}}
  output: {{uri: "s3://runs", credentialsSecret: s3-creds}}
"#
    ))
    .unwrap();
    let api: Api<FineTuneJob> = Api::namespaced(client.clone(), NAMESPACE);
    api.create(&PostParams::default(), &job).await.unwrap();
    set_job_status(client, name, phase, losses).await;
}

async fn set_job_status(client: &Client, name: &str, phase: JobPhase, losses: &[f64]) {
    let run = run_of(client, name).await;
    let checkpoints: Vec<serde_json::Value> = losses
        .iter()
        .enumerate()
        .map(|(i, loss)| {
            let step = (i + 1) * 9;
            json!({"name": format!("ckpt-{step}"), "step": step, "epoch": i + 1,
                   "uri": format!("{run}/checkpoints/ckpt-{step}"), "validLoss": loss})
        })
        .collect();
    let mut status = json!({"phase": phase, "checkpoints": checkpoints,
                            "message": format!("the job is {phase:?}")});
    if phase == JobPhase::Succeeded {
        let last = losses.len() * 9;
        status["result"] = json!({"modelId": format!("ft:anneal-tiny:{name}:ckpt-{last}"), "uri": format!("{run}/final")});
    }
    let api: Api<FineTuneJob> = Api::namespaced(client.clone(), NAMESPACE);
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(&json!({ "status": status })),
    )
    .await
    .unwrap();
}

/// Creates a ModelDeployment serving `checkpoint` of job `story`.
async fn serve(client: &Client, name: &str, checkpoint: &str, replicas: u32) -> ModelDeployment {
    let deployment = anneal_crds::manifest::parse_modeldeployment(&format!(
        r#"apiVersion: anneal.dev/v1alpha1
kind: ModelDeployment
metadata: {{name: {name}, namespace: {NAMESPACE}}}
spec:
  model:
    fineTuneJob: {{name: story, checkpoint: {checkpoint}}}
  replicas: {replicas}
  resources: {{gpus: 0}}
"#
    ))
    .unwrap();
    let api: Api<ModelDeployment> = Api::namespaced(client.clone(), NAMESPACE);
    api.create(&PostParams::default(), &deployment)
        .await
        .unwrap()
}

/// Polls the deployment until `done` holds for its status, or panics showing it.
async fn wait_until(
    client: &Client,
    name: &str,
    what: &str,
    done: impl Fn(&ModelDeploymentStatus) -> bool,
) -> ModelDeploymentStatus {
    let api: Api<ModelDeployment> = Api::namespaced(client.clone(), NAMESPACE);
    let started = Instant::now();
    loop {
        let status = api.get(name).await.unwrap().status.unwrap_or_default();
        if done(&status) {
            return status;
        }
        assert!(
            started.elapsed() < WAIT,
            "{name}: not {what} after {WAIT:?}; status:\n{}",
            serde_json::to_string_pretty(&status).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn server(client: &Client, name: &str) -> Option<Deployment> {
    Api::<Deployment>::namespaced(client.clone(), NAMESPACE)
        .get_opt(name)
        .await
        .unwrap()
}

/// Polls until the serving Deployment exists and `done` holds for it.
async fn wait_for_server(
    client: &Client,
    name: &str,
    done: impl Fn(&Deployment) -> bool,
) -> Deployment {
    let started = Instant::now();
    loop {
        if let Some(found) = server(client, name).await
            && done(&found)
        {
            return found;
        }
        assert!(started.elapsed() < WAIT, "{name}: no matching Deployment");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn container(deployment: &Deployment) -> &Container {
    &deployment
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
}

fn args(deployment: &Deployment) -> Vec<String> {
    container(deployment).args.clone().unwrap()
}

/// The value after `flag` in the server's arguments.
fn flag(deployment: &Deployment, flag: &str) -> String {
    let args = args(deployment);
    let at = args.iter().position(|a| a == flag).unwrap();
    args[at + 1].clone()
}

/// Writes the Deployment's status as its controller would once pods are ready.
async fn pods_ready(client: &Client, name: &str, ready: i32) {
    Api::<Deployment>::namespaced(client.clone(), NAMESPACE)
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {
                "replicas": ready, "readyReplicas": ready, "updatedReplicas": ready,
                "availableReplicas": ready}})),
        )
        .await
        .unwrap();
}

/// The (reason, type) of the Events about `name`, once every one of `wanted` is there
/// (or after the harness's wait, so the caller's assertion names what is missing).
async fn event_reasons(client: &Client, name: &str, wanted: &[&str]) -> Vec<(String, String)> {
    let reasons_of = |events: &[Event]| -> Vec<String> {
        events
            .iter()
            .map(|e| e.reason.clone().unwrap_or_default())
            .collect()
    };
    events_once(client, NAMESPACE, name, |events| {
        let reasons = reasons_of(events);
        wanted.iter().all(|w| reasons.iter().any(|r| r == w))
    })
    .await
    .into_iter()
    .map(|e| (e.reason.unwrap_or_default(), e.type_.unwrap_or_default()))
    .collect()
}

fn condition<'a>(status: &'a ModelDeploymentStatus, type_: &str) -> (&'a str, &'a str) {
    let found = status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} in {:?}", status.conditions));
    (found.status.as_str(), found.reason.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_waits_for_its_job_then_serves_the_final_checkpoint_until_ready() {
    let serving = Serving::start().await;
    let client = serving.client();
    job(&client, "story", JobPhase::Running, &[0.9]).await;
    let applied = serve(&client, "chat", "final", 1).await;
    waits_pending_while_the_job_trains(&serving).await;
    let created = loads_the_final_checkpoint_when_the_job_succeeds(&client).await;
    owned_server_and_service(&client, &applied, &created).await;
    turns_ready_with_its_endpoint(&client).await;
    serving.stop().await;
}

/// Pending while the job runs, with one status write and one Event however the job's
/// progress changes, and no pods planned.
async fn waits_pending_while_the_job_trains(serving: &Serving) {
    let client = serving.client();
    let pending = wait_until(&client, "chat", "Pending", |s| {
        s.phase == Some(DeploymentPhase::Pending)
    })
    .await;
    assert_eq!(
        pending.message.as_deref(),
        Some("waiting for FineTuneJob story to succeed; it is Running: the job is Running")
    );
    assert_eq!(
        condition(&pending, "ModelResolved"),
        ("False", "FineTuneJobNotReady")
    );
    assert_eq!(pending.endpoint, None);
    // The job's progress goes on; the waiting deployment neither plans pods nor
    // rewrites its status.
    set_job_status(&client, "story", JobPhase::Running, &[0.9, 0.7]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(server(&client, "chat").await.is_none());
    assert_eq!(
        serving
            .api
            .writes_to("modeldeployments", NAMESPACE, "chat", Some("status"))
            .iter()
            .filter(|write| write.code < 300)
            .count(),
        1,
        "one status write landed for Pending"
    );
    let pending_events = event_reasons(&client, "chat", &["Pending"]).await;
    assert_eq!(
        pending_events.len(),
        1,
        "one Pending Event: {pending_events:?}"
    );
}

/// The job succeeds: the FineTuneJob watch brings the deployment its model, and the
/// server Deployment runs `trainer serve` with the adapter loaded at runtime.
async fn loads_the_final_checkpoint_when_the_job_succeeds(client: &Client) -> Deployment {
    set_job_status(client, "story", JobPhase::Succeeded, &[0.9, 0.7, 0.8]).await;
    let loading = wait_until(client, "chat", "Loading", |s| {
        s.phase == Some(DeploymentPhase::Loading)
    })
    .await;
    assert_eq!(
        loading.model_id.as_deref(),
        Some("ft:anneal-tiny:story:ckpt-27")
    );
    assert_eq!(condition(&loading, "ModelResolved"), ("True", "Resolved"));
    assert_eq!(condition(&loading, "Available"), ("False", "Loading"));
    // The checkpoint is an adapter the operator loads into each pod once it runs.
    assert_eq!(
        condition(&loading, "AdaptersLoaded"),
        ("False", "NoServingPods")
    );
    let created = server(client, "chat").await.unwrap();
    assert_eq!(
        args(&created),
        [
            "serve",
            "--model",
            "s3://models/anneal-tiny",
            "--enable-runtime-lora",
            "--max-loras",
            "8",
            "--adapters-file",
            "/etc/anneal/adapters/adapters.json",
            "--served-model-name",
            "anneal-tiny",
            "--host",
            "0.0.0.0",
            "--port",
            "8000",
            "--work-dir",
            "/work",
            "--device",
            "cpu",
        ]
    );
    assert_eq!(
        container(&created).image.as_deref(),
        Some("anneal-trainer:test")
    );
    assert_eq!(
        container(&created).env_from.as_ref().unwrap()[0]
            .secret_ref
            .as_ref()
            .unwrap()
            .name,
        "s3-creds",
        "the job's storage credentials"
    );
    created
}

/// The server Deployment and its Service belong to the ModelDeployment, and the Service
/// selects the server's pods.
async fn owned_server_and_service(
    client: &Client,
    applied: &ModelDeployment,
    created: &Deployment,
) {
    let uid = applied.metadata.uid.clone().unwrap();
    let owner = &created.metadata.owner_references.clone().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("ModelDeployment", uid.as_str())
    );
    let service: Service = Api::namespaced(client.clone(), NAMESPACE)
        .get("chat")
        .await
        .unwrap();
    assert_eq!(service.metadata.owner_references.unwrap()[0].uid, uid);
    let service_spec = service.spec.unwrap();
    assert_eq!(service_spec.ports.unwrap()[0].port, 8000);
    assert_eq!(
        service_spec.selector.as_ref(),
        created
            .spec
            .as_ref()
            .unwrap()
            .selector
            .match_labels
            .as_ref()
    );
}

/// A pod turns ready: the deployment is Ready with its endpoint, and each phase was an Event.
async fn turns_ready_with_its_endpoint(client: &Client) {
    pods_ready(client, "chat", 1).await;
    let ready = wait_until(client, "chat", "Ready", |s| {
        s.phase == Some(DeploymentPhase::Ready)
    })
    .await;
    assert_eq!(ready.ready_replicas, 1);
    assert_eq!(
        ready.endpoint.as_deref(),
        Some("http://chat.team-a.svc:8000/v1")
    );
    assert_eq!(
        ready.model_id.as_deref(),
        Some("ft:anneal-tiny:story:ckpt-27")
    );
    assert_eq!(ready.observed_generation, Some(1));
    assert_eq!(
        condition(&ready, "Available"),
        ("True", "MinimumReplicasAvailable")
    );
    assert_eq!(ready.message.as_deref(), Some("1 of 1 serving pods ready"));
    let reasons = event_reasons(client, "chat", &["Pending", "Loading", "Ready"]).await;
    for phase in ["Pending", "Loading", "Ready"] {
        assert!(
            reasons.contains(&(phase.to_owned(), "Normal".to_owned())),
            "{phase} not in {reasons:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn best_serves_the_lowest_validation_loss_and_spec_changes_update_the_deployment() {
    let serving = Serving::start().await;
    let client = serving.client();
    job(&client, "story", JobPhase::Succeeded, &[0.9, 0.5, 0.6]).await;
    serve(&client, "best", "best", 1).await;
    let loading = wait_until(&client, "best", "Loading", |s| {
        s.phase == Some(DeploymentPhase::Loading)
    })
    .await;
    assert_eq!(
        loading.model_id.as_deref(),
        Some("ft:anneal-tiny:story:ckpt-18")
    );
    let created = server(&client, "best").await.unwrap();
    assert_eq!(created.spec.as_ref().unwrap().replicas, Some(1));

    // More capacity and another checkpoint: the same Deployment, updated.
    let api: Api<ModelDeployment> = Api::namespaced(client.clone(), NAMESPACE);
    api.patch(
        "best",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"replicas": 3,
            "model": {"fineTuneJob": {"name": "story", "checkpoint": "ckpt-9"}}}})),
    )
    .await
    .unwrap();
    let updated = wait_for_server(&client, "best", |d| {
        d.spec.as_ref().unwrap().replicas == Some(3)
    })
    .await;
    // The checkpoint is loaded into the running pods: their template is unchanged,
    // so none restarts.
    assert_eq!(
        updated.spec.as_ref().unwrap().template,
        created.spec.as_ref().unwrap().template
    );
    assert_eq!(updated.metadata.uid, created.metadata.uid);
    let status = wait_until(&client, "best", "at generation 2", |s| {
        s.observed_generation == Some(2)
    })
    .await;
    assert_eq!(
        status.model_id.as_deref(),
        Some("ft:anneal-tiny:story:ckpt-9")
    );
    assert_eq!(
        status.message.as_deref(),
        Some("0 of 3 serving pods ready: fetching and loading the model")
    );
    serving.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_checkpoint_fails_naming_the_ones_there_are() {
    let serving = Serving::start().await;
    let client = serving.client();
    job(&client, "story", JobPhase::Succeeded, &[0.9, 0.5]).await;
    serve(&client, "typo", "ckpt-7", 1).await;
    let failed = wait_until(&client, "typo", "Failed", |s| {
        s.phase == Some(DeploymentPhase::Failed)
    })
    .await;
    assert_eq!(
        failed.message.as_deref(),
        Some(
            "spec.model.fineTuneJob.checkpoint: FineTuneJob story has no checkpoint ckpt-7; it has ckpt-9, ckpt-18, or use final or best"
        )
    );
    assert_eq!(
        condition(&failed, "ModelResolved"),
        ("False", "CheckpointNotFound")
    );
    assert!(server(&client, "typo").await.is_none());
    let reasons = event_reasons(&client, "typo", &["Failed"]).await;
    assert!(
        reasons.contains(&("Failed".to_owned(), "Warning".to_owned())),
        "{reasons:?}"
    );
    serving.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_deployment_removes_its_deployment_and_service() {
    let serving = Serving::start().await;
    let client = serving.client();
    job(&client, "story", JobPhase::Succeeded, &[0.9]).await;
    serve(&client, "gone", "final", 1).await;
    wait_until(&client, "gone", "Loading", |s| {
        s.phase == Some(DeploymentPhase::Loading)
    })
    .await;
    // The reconciles the new children and status set off come to rest first: the fake
    // API server does not collect dependents created after their owner is gone (a real
    // garbage collector does).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let api: Api<ModelDeployment> = Api::namespaced(client.clone(), NAMESPACE);
    api.delete("gone", &Default::default()).await.unwrap();
    let started = Instant::now();
    let services: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
    while server(&client, "gone").await.is_some()
        || services.get_opt("gone").await.unwrap().is_some()
    {
        assert!(started.elapsed() < WAIT, "children still there");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        api.get_opt("gone").await.unwrap().is_none(),
        "no finalizer holds it"
    );
    serving.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_serves_a_base_model_with_adapters_on_vllm() {
    let api = FakeApiServer::start().await;
    let client = api.client();
    // The hub the operator looks the base model up on before planning its pods.
    let hub = tokio::task::spawn_blocking(FakeHub::start).await.unwrap();
    let tiny = anneal_e2e::operator_harness::repo().join("examples/models/anneal-tiny");
    hub.publish_folder("Qwen/Qwen2.5-7B-Instruct", "main", &tiny);
    let config = OperatorConfig {
        hf_endpoint: Some(hub.endpoint()),
        ..config()
    };
    let operator = start_operator(client.clone(), config, None).await;
    let deployment = anneal_crds::manifest::parse_modeldeployment(&format!(
        r#"apiVersion: anneal.dev/v1alpha1
kind: ModelDeployment
metadata: {{name: adapters, namespace: {NAMESPACE}}}
spec:
  model:
    baseModel: {{name: Qwen/Qwen2.5-7B-Instruct, source: "hf://Qwen/Qwen2.5-7B-Instruct"}}
    adapters:
      - {{name: support, uri: "s3://runs/support/final"}}
  runtime: vllm
"#
    ))
    .unwrap();
    Api::<ModelDeployment>::namespaced(client.clone(), NAMESPACE)
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap();
    let created = wait_for_server(&client, "adapters", |_| true).await;
    assert_eq!(
        container(&created).image.as_deref(),
        Some("vllm/vllm-openai:v0.11.0")
    );
    // The hub model is fetched into the model cache first, like the adapter from S3.
    assert_eq!(flag(&created, "--model"), "/models/base");
    assert_eq!(
        flag(&created, "--lora-modules"),
        "support=/models/adapters/0"
    );
    let init = created
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .init_containers
        .clone()
        .unwrap();
    assert_eq!(
        init[0].args.as_deref().unwrap(),
        ["fetch", "hf://Qwen/Qwen2.5-7B-Instruct", "/models/base"]
    );
    assert_eq!(
        init[1].args.as_deref().unwrap(),
        ["fetch", "s3://runs/support/final", "/models/adapters/0"]
    );
    pods_ready(&client, "adapters", 1).await;
    let ready = wait_until(&client, "adapters", "Ready", |s| {
        s.phase == Some(DeploymentPhase::Ready)
    })
    .await;
    assert_eq!(ready.model_id.as_deref(), Some("Qwen/Qwen2.5-7B-Instruct"));
    // The phase gauge is refreshed from the cache every 5 seconds.
    let started = Instant::now();
    loop {
        let metrics = reqwest::get(format!("{}/metrics", operator.health_url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if metrics.contains("anneal_modeldeployments{phase=\"Ready\"} 1") {
            assert!(
                metrics.contains("anneal_reconciles_total{kind=\"ModelDeployment\"}"),
                "{metrics}"
            );
            break;
        }
        assert!(started.elapsed() < WAIT, "{metrics}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_of_the_same_name_that_is_not_its_own_is_left_alone() {
    let serving = Serving::start().await;
    let client = serving.client();
    let theirs: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "taken", "namespace": NAMESPACE},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "nginx", "args": ["web"]}]}}}
    }))
    .unwrap();
    Api::<Deployment>::namespaced(client.clone(), NAMESPACE)
        .create(&PostParams::default(), &theirs)
        .await
        .unwrap();
    job(&client, "story", JobPhase::Succeeded, &[0.9]).await;
    serve(&client, "taken", "final", 1).await;
    let failed = wait_until(&client, "taken", "Failed", |s| {
        s.phase == Some(DeploymentPhase::Failed)
    })
    .await;
    assert_eq!(
        failed.message.as_deref(),
        Some(
            "a Deployment named taken already exists and does not belong to this ModelDeployment; delete it or rename the ModelDeployment"
        )
    );
    assert_eq!(
        condition(&failed, "ModelResolved"),
        ("False", "NameConflict")
    );
    assert_eq!(failed.endpoint, None);
    let untouched = server(&client, "taken").await.unwrap();
    assert_eq!(args(&untouched), ["web"]);
    assert!(untouched.metadata.owner_references.is_none());
    serving.stop().await;
}
