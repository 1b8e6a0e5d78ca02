//! End-to-end, the whole user journey of issue 6 without a cluster: a FineTuneJob
//! trains (the fake kubelet runs the real `trainer` process, moto holds the model, the
//! dataset and the checkpoints), a ModelDeployment serves its best checkpoint (the fake
//! kubelet runs the Deployment's pod as a real `trainer serve` on a loopback port), and
//! a client gets the fine-tuned model's answer from the OpenAI endpoint.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anneal_crds::ModelDeployment;
use anneal_crds::finetunejob::JobPhase;
use anneal_crds::modeldeployment::{DeploymentPhase, ModelDeploymentStatus};
use anneal_crds::storage::Storage;
use anneal_e2e::operator_harness::{
    NAMESPACE, World, job_yaml, quickstart_lines, repo, trainer_binary, upload_tree,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde_json::{Value, json};

const TRAINING: Duration = Duration::from_secs(240);
const SERVING: Duration = Duration::from_secs(60);
/// The question the client asks.
const QUESTION: &str = "Can I take a bike on the tram?";

/// Creates the ModelDeployment in `yaml` (parsed as `kubectl apply` would take it).
async fn deploy(world: &World, yaml: &str) -> Api<ModelDeployment> {
    let manifest = anneal_crds::manifest::parse_modeldeployment(yaml).unwrap();
    let deployments: Api<ModelDeployment> = Api::namespaced(world.client(), NAMESPACE);
    deployments
        .create(&PostParams::default(), &manifest)
        .await
        .unwrap();
    deployments
}

async fn deployment_status(world: &World, name: &str) -> ModelDeploymentStatus {
    let api: Api<ModelDeployment> = Api::namespaced(world.client(), NAMESPACE);
    api.get(name).await.unwrap().status.unwrap_or_default()
}

/// Polls the ModelDeployment until `done` holds for its status, or panics showing it
/// and its pods' output.
async fn wait_for_deployment(
    world: &World,
    name: &str,
    what: &str,
    done: impl Fn(&ModelDeploymentStatus) -> bool,
) -> ModelDeploymentStatus {
    let started = Instant::now();
    loop {
        let status = deployment_status(world, name).await;
        if done(&status) {
            return status;
        }
        if started.elapsed() > SERVING {
            let pods: Api<Pod> = Api::namespaced(world.client(), NAMESPACE);
            let logs: Vec<String> = pods
                .list(&ListParams::default().labels(&format!("anneal.dev/modeldeployment={name}")))
                .await
                .unwrap()
                .items
                .iter()
                .map(|p| {
                    let log = std::fs::read_to_string(
                        world
                            .pod_dir(&p.metadata.name.clone().unwrap())
                            .join("output.log"),
                    )
                    .unwrap_or_default();
                    format!("--- {:?}:\n{log}", p.metadata.name)
                })
                .collect();
            panic!(
                "{name}: not {what} after {SERVING:?}; status:\n{}\npods:\n{}",
                serde_json::to_string_pretty(&status).unwrap(),
                logs.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn condition<'a>(status: &'a ModelDeploymentStatus, type_: &str) -> (&'a str, &'a str) {
    let found = status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} in {:?}", status.conditions));
    (found.status.as_str(), found.reason.as_str())
}

/// What `trainer generate` answers `messages` with on the tiny model and `adapter`,
/// greedily, in at most `max_new_tokens` tokens.
fn trainer_generate(adapter: &Path, messages: &Path, max_new_tokens: u32) -> String {
    let output = Command::new(trainer_binary())
        .current_dir(repo())
        .args([
            "generate",
            "--model",
            "examples/models/anneal-tiny",
            "--adapter",
        ])
        .arg(adapter)
        .arg("--messages")
        .arg(messages)
        .args([
            "--max-new-tokens",
            &max_new_tokens.to_string(),
            "--json",
            "--device",
            "cpu",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "trainer generate failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let last: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    last["text"].as_str().unwrap().to_owned()
}

/// The model ids the server at `url` lists at /v1/models.
async fn served_ids(url: &str) -> Vec<String> {
    let models: Value = serde_json::from_str(
        &reqwest::get(format!("{url}/v1/models"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The PNG `/v1/images/generations` returns for `request`, checked to be one.
async fn generated_png(url: &str, request: &Value) -> Vec<u8> {
    use base64::Engine as _;
    let reply = post_json(&format!("{url}/v1/images/generations"), request).await;
    assert_eq!(reply.status(), 200);
    let body: Value = serde_json::from_str(&reply.text().await.unwrap()).unwrap();
    let png = base64::engine::general_purpose::STANDARD
        .decode(body["data"][0]["b64_json"].as_str().unwrap())
        .unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
    png
}

async fn post_json(url: &str, body: &Value) -> reqwest::Response {
    anneal_crds::storage::install_crypto_provider();
    reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

/// Starts a greedy streamed reply of `tokens` tokens from `model`, and once its first
/// chunk has arrived, reads the rest in a task that returns the whole text and when
/// it ended.
async fn stream_in_background(
    url: &str,
    model: &str,
    messages: &Value,
    tokens: u32,
) -> tokio::task::JoinHandle<(String, Instant)> {
    let mut stream = post_json(
        &format!("{url}/v1/chat/completions"),
        &json!({"model": model, "messages": messages, "temperature": 0,
                "max_tokens": tokens, "ignore_eos": true, "stream": true,
                "stream_options": {"include_usage": true}}),
    )
    .await;
    assert_eq!(stream.status(), 200);
    let mut streamed = String::from_utf8(stream.chunk().await.unwrap().unwrap().to_vec()).unwrap();
    tokio::spawn(async move {
        while let Some(chunk) = stream.chunk().await.unwrap() {
            streamed.push_str(std::str::from_utf8(&chunk).unwrap());
        }
        (streamed, Instant::now())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_trained_checkpoint_is_served_and_answers_as_trainer_generate_does() {
    let world = World::start(&quickstart_lines(24)).await;
    world.kubelet.run_deployments();
    let operator = world.start_operator(None).await;
    // Two epochs at a learning rate high enough that the tiny model picks up the
    // house style ("Good question! ...") within seconds.
    let job = job_yaml("story", 2, 2, "").replace("learningRate: 0.003", "learningRate: 0.01");
    assert!(job.contains("learningRate: 0.01"));
    world.apply(&job).await;
    let deployments = deploy(
        &world,
        &format!(
            r#"apiVersion: anneal.dev/v1alpha1
kind: ModelDeployment
metadata: {{name: chat, namespace: {NAMESPACE}}}
spec:
  model:
    fineTuneJob: {{name: story, checkpoint: best}}
  replicas: 1
  runtime: builtin
  resources: {{gpus: 0}}
"#
        ),
    )
    .await;

    waits_pending_while_the_job_trains(&world).await;
    let (best, model_id) = the_best_checkpoint(&world).await;
    let pod_name = ready_with_one_owned_pod(&world, &model_id).await;
    let url = world.kubelet.deployment_url("chat").unwrap();
    answers_as_trainer_generate_does(&world, &url, &model_id, &best).await;
    stopping_finishes_the_reply_in_flight(&world, &deployments, &url, &model_id, &pod_name).await;
    operator.stop().await;
}

/// While the job trains, the deployment waits, saying why, with nothing to run.
async fn waits_pending_while_the_job_trains(world: &World) {
    let pending = wait_for_deployment(world, "chat", "Pending", |s| {
        s.phase == Some(DeploymentPhase::Pending)
    })
    .await;
    let message = pending.message.clone().unwrap();
    assert!(
        message.starts_with("waiting for FineTuneJob story to succeed; it is "),
        "{message}"
    );
    assert_eq!(
        condition(&pending, "ModelResolved"),
        ("False", "FineTuneJobNotReady")
    );
    assert_eq!(pending.endpoint, None);
    let servers: Api<Deployment> = Api::namespaced(world.client(), NAMESPACE);
    assert!(servers.get_opt("chat").await.unwrap().is_none());
    assert_ne!(
        world.job("story").await.status.unwrap_or_default().phase,
        Some(JobPhase::Succeeded)
    );
}

/// The job succeeds; its best checkpoint is the one with the lowest validation loss,
/// and the model id it is served as.
async fn the_best_checkpoint(
    world: &World,
) -> (anneal_crds::finetunejob::CheckpointStatus, String) {
    let done = world
        .wait_for("story", TRAINING, "Succeeded", |s| {
            s.phase == Some(JobPhase::Succeeded) && s.result.is_some()
        })
        .await;
    let checkpoints = done.status.unwrap().checkpoints;
    assert!(checkpoints.len() >= 2, "{checkpoints:?}");
    let best = checkpoints
        .iter()
        .min_by(|a, b| a.valid_loss.unwrap().total_cmp(&b.valid_loss.unwrap()))
        .unwrap()
        .clone();
    let model_id = format!("ft:anneal-tiny:story:{}", best.name);

    (best, model_id)
}

/// The deployment turns Ready on one pod its Deployment owns, whose status is the fake
/// kubelet's from a pod that answered its probe; the pod's name.
async fn ready_with_one_owned_pod(world: &World, model_id: &str) -> String {
    let servers: Api<Deployment> = Api::namespaced(world.client(), NAMESPACE);
    let ready = wait_for_deployment(world, "chat", "Ready", |s| {
        s.phase == Some(DeploymentPhase::Ready)
    })
    .await;
    assert_eq!(ready.model_id.as_deref(), Some(model_id));
    assert_eq!(
        ready.endpoint.as_deref(),
        Some(format!("http://chat.{NAMESPACE}.svc:8000/v1").as_str())
    );
    assert_eq!(ready.ready_replicas, 1);
    assert_eq!(
        condition(&ready, "Available"),
        ("True", "MinimumReplicasAvailable")
    );
    // The Deployment's status is the fake kubelet's, from a pod that answered its probe.
    let server = servers.get("chat").await.unwrap();
    let server_status = server.status.unwrap();
    assert_eq!(
        (
            server_status.replicas,
            server_status.ready_replicas,
            server_status.available_replicas
        ),
        (Some(1), Some(1), Some(1))
    );
    assert_eq!(
        server_status.observed_generation,
        server.metadata.generation
    );
    let pods: Api<Pod> = Api::namespaced(world.client(), NAMESPACE);
    let serving_pods = pods
        .list(&ListParams::default().labels("anneal.dev/modeldeployment=chat"))
        .await
        .unwrap()
        .items;
    assert_eq!(serving_pods.len(), 1);
    let pod_name = serving_pods[0].metadata.name.clone().unwrap();
    assert_eq!(
        serving_pods[0].metadata.owner_references.as_ref().unwrap()[0].uid,
        server.metadata.uid.unwrap()
    );

    pod_name
}

/// On the pod's real port, the model is listed, and its greedy answer is what
/// `trainer generate` says with the checkpoint from storage; the base model, served
/// beside it, answers otherwise.
async fn answers_as_trainer_generate_does(
    world: &World,
    url: &str,
    model_id: &str,
    best: &anneal_crds::finetunejob::CheckpointStatus,
) {
    let ids = served_ids(url).await;
    assert!(ids.iter().any(|id| id == model_id), "{ids:?}");

    let messages = json!([{"role": "user", "content": QUESTION}]);
    let reply = post_json(
        &format!("{url}/v1/chat/completions"),
        &json!({"model": model_id, "messages": messages, "temperature": 0, "max_tokens": 16}),
    )
    .await;
    assert_eq!(reply.status(), 200);
    let reply: Value = serde_json::from_str(&reply.text().await.unwrap()).unwrap();
    assert_eq!(reply["model"], model_id);
    let answer = reply["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    // The base model, served beside it, answers otherwise: the adapter is applied.
    let base: Value = serde_json::from_str(
        &post_json(
            &format!("{url}/v1/chat/completions"),
            &json!({"model": "anneal-tiny", "messages": messages, "temperature": 0, "max_tokens": 16}),
        )
        .await
        .text()
        .await
        .unwrap(),
    )
    .unwrap();
    let base_answer = base["choices"][0]["message"]["content"].as_str().unwrap();
    assert_ne!(
        answer, base_answer,
        "the fine-tuned model answers as the base model does"
    );

    let local = tempfile::TempDir::new().unwrap();
    let adapter = local.path().join(&best.name);
    let messages_file = local.path().join("messages.json");
    std::fs::write(&messages_file, messages.to_string()).unwrap();
    let settings: Vec<(String, String)> = world
        .moto
        .settings()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    let expected = tokio::task::spawn_blocking({
        let (uri, adapter) = (best.uri.clone(), adapter.clone());
        move || {
            let (parent, name) = uri.rsplit_once('/').unwrap();
            Storage::open_with(parent, settings)
                .unwrap()
                .download_dir(name, &adapter)
                .unwrap();
            trainer_generate(&adapter, &messages_file, 16)
        }
    })
    .await
    .unwrap();
    assert!(!expected.is_empty());
    assert_eq!(answer, expected);
}

/// Deleting the deployment deletes its Deployment, Service and pod; the server gets
/// SIGTERM with a reply in flight, finishes it and exits 0.
async fn stopping_finishes_the_reply_in_flight(
    world: &World,
    deployments: &Api<ModelDeployment>,
    url: &str,
    model_id: &str,
    pod_name: &str,
) {
    let messages = json!([{"role": "user", "content": QUESTION}]);
    let servers: Api<Deployment> = Api::namespaced(world.client(), NAMESPACE);
    let pods: Api<Pod> = Api::namespaced(world.client(), NAMESPACE);
    let reader = stream_in_background(url, model_id, &messages, 400).await;
    deployments
        .delete("chat", &Default::default())
        .await
        .unwrap();
    let log = world.pod_dir(pod_name).join("output.log");
    let started = Instant::now();
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("stopping; finishing the replies in flight")
    {
        assert!(started.elapsed() < SERVING, "the server was not stopped");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stopping = Instant::now();
    let (streamed, finished) = reader.await.unwrap();
    assert!(
        stopping < finished,
        "the reply was no longer in flight when the server was stopped; make it longer"
    );
    assert!(streamed.trim_end().ends_with("data: [DONE]"), "{streamed}");
    assert!(
        streamed.contains(r#""completion_tokens":400"#),
        "the reply did not run to its end:\n{streamed}"
    );
    let started = Instant::now();
    let code = loop {
        if let Some(code) = world.kubelet.exit_code(pod_name) {
            break code;
        }
        assert!(started.elapsed() < SERVING, "the server did not exit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(code, 0, "{}", std::fs::read_to_string(&log).unwrap());
    assert!(servers.get_opt("chat").await.unwrap().is_none());
    let services: Api<Service> = Api::namespaced(world.client(), NAMESPACE);
    assert!(services.get_opt("chat").await.unwrap().is_none());
    assert!(pods.get_opt(pod_name).await.unwrap().is_none());
    assert!(deployments.get_opt("chat").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_image_model_and_its_lora_are_served_by_a_model_deployment() {
    use anneal_e2e::operator_harness::BUCKET;

    let world = World::start(&quickstart_lines(4)).await;
    world.kubelet.run_deployments();
    let _operator = world.start_operator(None).await;
    // A FLUX pipeline folder and a diffusers LoRA in object storage, as a user keeps them.
    let fixture = repo().join("trainer/tests/fixtures/reference/flux-tiny");
    let settings: Vec<(String, String)> = world
        .moto
        .settings()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    tokio::task::spawn_blocking(move || {
        upload_tree(
            &format!("s3://{BUCKET}/models/flux-tiny"),
            &fixture,
            settings.clone(),
        );
        upload_tree(
            &format!("s3://{BUCKET}/loras/styled"),
            &fixture.join("lora-a"),
            settings,
        );
    })
    .await
    .unwrap();
    deploy(
        &world,
        &format!(
            r#"apiVersion: anneal.dev/v1alpha1
kind: ModelDeployment
metadata: {{name: pictures, namespace: {NAMESPACE}}}
spec:
  model:
    baseModel:
      name: product-shots
      source: "s3://{BUCKET}/models/flux-tiny"
    adapters:
      - {{name: styled, uri: "s3://{BUCKET}/loras/styled"}}
  # A pipeline whose name does not say FLUX: the task does.
  task: text-to-image
  runtime: builtin
  resources: {{gpus: 0}}
"#
        ),
    )
    .await;
    let ready = wait_for_deployment(&world, "pictures", "Ready", |s| {
        s.phase == Some(DeploymentPhase::Ready)
    })
    .await;
    assert_eq!(ready.ready_replicas, 1);

    let url = world.kubelet.deployment_url("pictures").unwrap();
    let ids = served_ids(&url).await;
    assert_eq!(ids, ["product-shots", "styled"]);
    let mut pngs = Vec::new();
    for model in ["product-shots", "styled"] {
        let png = generated_png(
            &url,
            &json!({"model": model, "prompt": "a red circle", "size": "16x16",
                    "seed": 5, "num_inference_steps": 2}),
        )
        .await;
        pngs.push(png);
    }
    assert_ne!(pngs[0], pngs[1], "the adapter changes the image");
    // The same server refuses chat, naming the endpoint it has.
    let reply = post_json(
        &format!("{url}/v1/chat/completions"),
        &json!({"model": "product-shots", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(reply.status(), 400);
    assert!(
        reply
            .text()
            .await
            .unwrap()
            .contains("/v1/images/generations")
    );
}

/// The image job `ball` (five pictures twice an epoch, one a step) succeeds with a
/// checkpoint, its adapter and its sample image every 10 steps, the contact sheet and
/// the loss chart, all in the run folder `run`.
async fn a_lora_and_a_sample_per_epoch(world: &World, images: &str, run: &str) {
    let done = world
        .wait_for("ball", TRAINING, "Succeeded", |s| {
            s.phase == Some(JobPhase::Succeeded) && s.result.is_some()
        })
        .await;
    let status = done.status.unwrap();
    let validated = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Validated")
        .unwrap();
    assert_eq!(validated.reason, "Valid");
    assert!(
        validated
            .message
            .contains(&format!("spec.dataset.images {images}: 5 images")),
        "{}",
        validated.message
    );
    let names: Vec<&str> = status.checkpoints.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["ckpt-10", "ckpt-20"]);
    for checkpoint in &status.checkpoints {
        let folder = format!("{run}/checkpoints/{}", checkpoint.name);
        assert_eq!(checkpoint.samples, [format!("{folder}/sample-0.png")]);
        let sample = world.read_object(&folder, "sample-0.png").await.unwrap();
        assert!(sample.starts_with(b"\x89PNG\r\n\x1a\n"));
        assert!(
            world
                .read_object(&folder, "pytorch_lora_weights.safetensors")
                .await
                .is_some()
        );
    }
    let result = status.result.unwrap();
    assert_eq!(result.model_id, "ft:anneal-flux-tiny:ball:ckpt-20");
    assert_eq!(result.uri, format!("{run}/final"));
    assert!(world.read_object(run, "samples.png").await.is_some());
    assert!(world.read_object(run, "loss.svg").await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_image_job_trains_a_lora_per_epoch_and_a_model_deployment_serves_one() {
    use anneal_e2e::operator_harness::{BUCKET, image_job_yaml};

    let world = World::start(&quickstart_lines(4)).await;
    world.kubelet.run_deployments();
    let operator = world.start_operator(None).await;
    world
        .upload(
            repo().join("examples/models/anneal-flux-tiny"),
            format!("s3://{BUCKET}/models/anneal-flux-tiny"),
        )
        .await;
    world
        .upload(
            repo().join("examples/quickstart/sks-ball"),
            format!("s3://{BUCKET}/data/sks-ball"),
        )
        .await;
    let images = format!("s3://{BUCKET}/data/sks-ball/");
    let applied = world.apply(&image_job_yaml("ball", &images, 2, 2)).await;
    let uid = applied.metadata.uid.clone().unwrap();

    let run = format!("s3://{BUCKET}/runs/{NAMESPACE}/ball/{uid}");
    a_lora_and_a_sample_per_epoch(&world, &images, &run).await;

    // The first epoch's adapter, served: the same picture as its sample for the same
    // prompt and seed.
    deploy(
        &world,
        &format!(
            r#"apiVersion: anneal.dev/v1alpha1
kind: ModelDeployment
metadata: {{name: ball-pictures, namespace: {NAMESPACE}}}
spec:
  model:
    fineTuneJob: {{name: ball, checkpoint: ckpt-10}}
  runtime: builtin
  resources: {{gpus: 0}}
"#
        ),
    )
    .await;
    let ready = wait_for_deployment(&world, "ball-pictures", "Ready", |s| {
        s.phase == Some(DeploymentPhase::Ready)
    })
    .await;
    let model_id = "ft:anneal-flux-tiny:ball:ckpt-10";
    assert_eq!(ready.model_id.as_deref(), Some(model_id));
    let url = world.kubelet.deployment_url("ball-pictures").unwrap();
    let ids = served_ids(&url).await;
    assert!(ids.contains(&model_id.to_owned()), "{ids:?}");
    let png = generated_png(
        &url,
        &json!({"model": model_id, "prompt": "sks", "size": "64x64",
                "seed": 1, "num_inference_steps": 4}),
    )
    .await;
    let sample = world
        .read_object(&format!("{run}/checkpoints/ckpt-10"), "sample-0.png")
        .await
        .unwrap();
    // Serving computes on its own path (its own batch of one, its own threads): a
    // value may round the other way, never more.
    let pixels = |png: &[u8]| image::load_from_memory(png).unwrap().to_rgb8().into_raw();
    let (served, sampled) = (pixels(&png), pixels(&sample));
    assert_eq!(served.len(), 64 * 64 * 3);
    let off: Vec<i16> = served
        .iter()
        .zip(&sampled)
        .map(|(a, b)| i16::from(*a) - i16::from(*b))
        .filter(|d| *d != 0)
        .collect();
    assert!(
        off.iter().all(|d| d.abs() <= 1) && off.len() <= served.len() / 100,
        "the served picture differs from the checkpoint's sample: {off:?}"
    );
    operator.stop().await;
}

#[path = "serving/runtime_adapters.rs"]
mod runtime_adapters;
