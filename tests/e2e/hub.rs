//! End-to-end: FineTuneJobs whose base model is on a model hub (a fake Hugging Face
//! Hub on loopback). The operator checks the repository, revision and token in
//! Validating; trainer pods fetch the model through the install's shared model cache
//! (a claim every pod mounts), so a second job on the same model downloads nothing.

use std::time::Duration;

use anneal_crds::finetunejob::{FineTuneJobStatus, JobPhase};
use anneal_e2e::operator_harness::{CREDENTIALS, NAMESPACE, World, job_yaml, quickstart_lines};
use anneal_fake_hub::FakeHub;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{Patch, PatchParams};

const TRAINING: Duration = Duration::from_secs(240);
const CACHE_CLAIM: &str = "anneal-models";

/// A world whose operator checks models on `hub` and whose pods share a model cache.
async fn world_with_hub(hub: &FakeHub) -> World {
    let mut world = World::start(&quickstart_lines(24)).await;
    world.config.hf_endpoint = Some(hub.endpoint());
    world.config.model_cache_claim = Some(CACHE_CLAIM.to_owned());
    world
}

/// `job_yaml` with its base model given as `base_model` (YAML).
fn hub_job(name: &str, base_model: &str) -> String {
    let yaml = job_yaml(name, 1, 2, "");
    let line = yaml
        .lines()
        .find(|line| line.trim_start().starts_with("baseModel:"))
        .unwrap()
        .to_owned();
    yaml.replace(&line, &format!("  baseModel: {base_model}"))
}

fn file_size(name: &str) -> u64 {
    let path = anneal_e2e::operator_harness::repo()
        .join("examples/models/anneal-tiny")
        .join(name);
    std::fs::metadata(path).unwrap().len()
}

/// The output of the (first) pod whose name starts with `prefix`.
fn pod_log(world: &World, prefix: &str) -> String {
    let pod = std::fs::read_dir(world.scratch.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .find(|name| name.starts_with(prefix))
        .unwrap_or_else(|| panic!("no pod {prefix}*"));
    std::fs::read_to_string(world.pod_dir(&pod).join("output.log")).unwrap_or_default()
}

async fn ended(world: &World, name: &str) -> FineTuneJobStatus {
    world
        .wait_for(name, TRAINING, "Succeeded or Failed", |s| {
            matches!(s.phase, Some(JobPhase::Succeeded | JobPhase::Failed))
        })
        .await
        .status
        .unwrap()
}

fn failed_condition(status: &FineTuneJobStatus) -> (String, String) {
    let failed = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Failed")
        .expect("a Failed condition");
    (failed.reason.clone(), failed.message.clone())
}

async fn trainer_job_exists(world: &World, name: &str) -> bool {
    let jobs: Api<Job> = Api::namespaced(world.client(), NAMESPACE);
    jobs.get_opt(&format!("{name}-trainer"))
        .await
        .unwrap()
        .is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hub_model_trains_through_the_shared_cache_and_a_second_job_downloads_nothing() {
    let hub = tokio::task::spawn_blocking(FakeHub::start).await.unwrap();
    let tiny = anneal_e2e::operator_harness::repo().join("examples/models/anneal-tiny");
    let commit = hub.publish_folder("anneal/tiny", "main", &tiny);
    let world = world_with_hub(&hub).await;
    let operator = world.start_operator(None).await;

    // By name alone: the hub form of the name.
    world.apply(&hub_job("first", "{name: anneal/tiny}")).await;
    let first = ended(&world, "first").await;
    assert_eq!(first.phase, Some(JobPhase::Succeeded), "{first:?}");
    let validated = first
        .conditions
        .iter()
        .find(|c| c.type_ == "Validated")
        .unwrap();
    assert_eq!(validated.reason, "Valid");
    // Every file once; config.json also as the operator's look at the model, and the
    // tokenizer also for its estimate of the job.
    let weights = |hub: &FakeHub| {
        let served = hub.bytes_served_by_file();
        (served["model.safetensors"], served["tokenizer.json"])
    };
    let sizes = (
        file_size("model.safetensors"),
        2 * file_size("tokenizer.json"),
    );
    assert_eq!(weights(&hub), sizes);
    let snapshot = world
        .scratch
        .path()
        .join("claims")
        .join(CACHE_CLAIM)
        .join("hf/anneal/tiny/snapshots")
        .join(&commit);
    assert!(
        snapshot.join("model.safetensors").is_file(),
        "{}",
        snapshot.display()
    );

    // The same model by URI and revision: from the cache.
    world
        .apply(&hub_job(
            "second",
            r#"{name: anneal/tiny, source: "hf://anneal/tiny@main"}"#,
        ))
        .await;
    let second = ended(&world, "second").await;
    assert_eq!(second.phase, Some(JobPhase::Succeeded), "{second:?}");
    assert_eq!(
        weights(&hub),
        sizes,
        "the second job downloads nothing: the trainer reads the cache, the operator its last tokenizer"
    );
    let log = pod_log(&world, "second-trainer");
    assert!(
        log.contains("hf://anneal/tiny@main: commit ") && log.contains(", 0 bytes downloaded"),
        "{log}"
    );
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_revision_or_an_unreadable_gated_model_fails_in_validating() {
    let hub = tokio::task::spawn_blocking(FakeHub::start).await.unwrap();
    let tiny = anneal_e2e::operator_harness::repo().join("examples/models/anneal-tiny");
    hub.publish_folder("anneal/tiny", "main", &tiny);
    hub.publish_folder("meta-llama/tiny", "main", &tiny);
    hub.gate("meta-llama/tiny", "hf_reader");
    let world = world_with_hub(&hub).await;
    let operator = world.start_operator(None).await;

    world
        .apply(&hub_job(
            "wrong-revision",
            r#"{name: anneal/tiny, source: "hf://anneal/tiny@v9"}"#,
        ))
        .await;
    world
        .apply(&hub_job("gated", "{name: meta-llama/tiny}"))
        .await;
    let wrong = ended(&world, "wrong-revision").await;
    assert_eq!(
        failed_condition(&wrong),
        (
            "ModelUnavailable".to_owned(),
            "spec.baseModel.source: hf://anneal/tiny@v9: the repository has no revision \"v9\" (a branch, tag or commit)".to_owned()
        )
    );
    let gated = ended(&world, "gated").await;
    let (reason, message) = failed_condition(&gated);
    assert_eq!(reason, "ModelUnavailable");
    assert!(
        message.starts_with(
            "spec.baseModel.source: hf://meta-llama/tiny: the model is gated and needs a token"
        ),
        "{message}"
    );
    assert!(!trainer_job_exists(&world, "wrong-revision").await);
    assert!(!trainer_job_exists(&world, "gated").await);
    assert_eq!(hub.bytes_served(), 0, "nothing but listings was read");

    // A token in the credentials Secret that cannot read it is named as such.
    let secrets: Api<Secret> = Api::namespaced(world.client(), NAMESPACE);
    let patch = serde_json::json!({"stringData": {"HF_TOKEN": "hf_someone_else"}});
    secrets
        .patch(CREDENTIALS, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    world
        .apply(&hub_job("wrong-token", "{name: meta-llama/tiny}"))
        .await;
    let (_, message) = failed_condition(&ended(&world, "wrong-token").await);
    assert!(
        message.contains("the token in HF_TOKEN cannot read it"),
        "{message}"
    );
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_hub_keeps_the_job_pending_until_it_answers() {
    let hub = tokio::task::spawn_blocking(FakeHub::start).await.unwrap();
    let tiny = anneal_e2e::operator_harness::repo().join("examples/models/anneal-tiny");
    hub.publish_folder("anneal/tiny", "main", &tiny);
    hub.set_down(true);
    let world = world_with_hub(&hub).await;
    let operator = world.start_operator(None).await;

    world
        .apply(&hub_job("patient", "{name: anneal/tiny}"))
        .await;
    let pending = world
        .wait_for("patient", TRAINING, "Pending on the hub", |s| {
            s.phase == Some(JobPhase::Pending)
                && s.message.as_deref().is_some_and(|m| m.contains("HTTP 503"))
        })
        .await
        .status
        .unwrap();
    assert!(
        pending
            .message
            .unwrap()
            .starts_with("spec.baseModel.source: "),
        "the message names the field"
    );
    assert!(!trainer_job_exists(&world, "patient").await);

    hub.set_down(false);
    let done = ended(&world, "patient").await;
    assert_eq!(done.phase, Some(JobPhase::Succeeded), "{done:?}");
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_succeeded_job_publishes_its_checkpoints_once_each_and_later_entries_too() {
    let hub = tokio::task::spawn_blocking(FakeHub::start).await.unwrap();
    let tiny = anneal_e2e::operator_harness::repo().join("examples/models/anneal-tiny");
    hub.publish_folder("anneal/tiny", "main", &tiny);
    hub.allow_writes("hf_writer");
    let world = world_with_hub(&hub).await;
    // The job's token, beside its storage keys.
    let secrets: Api<Secret> = Api::namespaced(world.client(), NAMESPACE);
    let patch =
        serde_json::json!({"data": {"HF_TOKEN": k8s_openapi::ByteString(b"hf_writer".to_vec())}});
    secrets
        .patch(CREDENTIALS, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let operator = world.start_operator(None).await;

    let publish = r#"  publish:
  - {to: "hf://team/bot"}
  - {checkpoint: best, to: "hf://team/bot-merged", merge: true}
"#;
    let yaml = hub_job("publisher", "{name: anneal/tiny}") + publish;
    world.apply(&yaml).await;
    let done = world
        .wait_for("publisher", TRAINING, "both entries published", |s| {
            s.published.len() == 2 && s.published.iter().all(|p| p.phase != "Publishing")
        })
        .await
        .status
        .unwrap();
    for (record, repo) in done.published.iter().zip(["team/bot", "team/bot-merged"]) {
        assert_eq!(record.phase, "Published", "{record:?}");
        assert_eq!(record.commit, hub.branch_commit(repo, "main"), "{record:?}");
        assert!(record.uri.as_deref().unwrap().contains(repo));
    }
    let best = &done.published[1];
    assert!(
        best.resolved_checkpoint
            .as_deref()
            .unwrap()
            .starts_with("ckpt-"),
        "{best:?}"
    );
    assert_eq!(hub.commits_made(), 2);
    assert_eq!(
        hub.files_at("team/bot", "main"),
        [
            "README.md",
            "adapter_config.json",
            "adapter_model.safetensors"
        ]
    );
    let merged = hub.files_at("team/bot-merged", "main");
    for name in [
        "README.md",
        "config.json",
        "model.safetensors",
        "tokenizer.json",
    ] {
        assert!(merged.contains(&name.to_owned()), "{merged:?}");
    }
    assert!(
        !merged.contains(&"adapter_config.json".to_owned()),
        "a whole model: {merged:?}"
    );

    // "Save to repository" on the finished job: a third entry, to S3, runs once; the
    // two before are not published again.
    let jobs: Api<anneal_crds::FineTuneJob> = Api::namespaced(world.client(), NAMESPACE);
    let patch = serde_json::json!({"spec": {"publish": [
        {"to": "hf://team/bot"},
        {"checkpoint": "best", "to": "hf://team/bot-merged", "merge": true},
        {"to": "s3://anneal-e2e/published/bot"},
    ]}});
    jobs.patch("publisher", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let done = world
        .wait_for("publisher", TRAINING, "the third entry published", |s| {
            s.published.len() == 3 && s.published[2].phase != "Publishing"
        })
        .await
        .status
        .unwrap();
    assert_eq!(
        done.published[2].phase, "Published",
        "{:?}",
        done.published[2]
    );
    let marker = world
        .read_object("s3://anneal-e2e/published/bot", "COMPLETE")
        .await;
    assert!(
        marker.is_some(),
        "the adapter and its card, with a COMPLETE marker"
    );
    assert_eq!(hub.commits_made(), 2, "nothing published twice");
    operator.stop().await;
}

/// Waits until the ModelDeployment's status satisfies `done`.
async fn deployment_status(
    world: &World,
    name: &str,
    done: impl Fn(&anneal_crds::ModelDeploymentStatus) -> bool,
) -> anneal_crds::ModelDeploymentStatus {
    let api: Api<anneal_crds::ModelDeployment> = Api::namespaced(world.client(), NAMESPACE);
    let start = std::time::Instant::now();
    loop {
        let status = api.get(name).await.unwrap().status.unwrap_or_default();
        if done(&status) {
            return status;
        }
        assert!(start.elapsed() < TRAINING, "{name}: {status:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deployment_of_a_hub_model_is_checked_before_its_pods_are_planned() {
    let hub = tokio::task::spawn_blocking(FakeHub::start).await.unwrap();
    let tiny = anneal_e2e::operator_harness::repo().join("examples/models/anneal-tiny");
    hub.publish_folder("anneal/tiny", "main", &tiny);
    let world = world_with_hub(&hub).await;
    let operator = world.start_operator(None).await;
    let api: Api<anneal_crds::ModelDeployment> = Api::namespaced(world.client(), NAMESPACE);
    let create = |name: &str, model: &str| {
        anneal_crds::manifest::parse_modeldeployment(&format!(
            "apiVersion: anneal.dev/v1alpha1\nkind: ModelDeployment\nmetadata: {{name: {name}, namespace: {NAMESPACE}}}\nspec:\n  model:\n    baseModel: {model}\n  resources: {{gpus: 0}}\n"
        ))
        .unwrap()
    };
    let servers: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(world.client(), NAMESPACE);

    api.create(
        &Default::default(),
        &create("missing", "{name: anneal/nothing}"),
    )
    .await
    .unwrap();
    let failed = deployment_status(&world, "missing", |s| s.message.is_some()).await;
    assert_eq!(
        failed.phase,
        Some(anneal_crds::modeldeployment::DeploymentPhase::Failed),
        "{failed:?}"
    );
    assert!(
        failed
            .message
            .as_deref()
            .unwrap()
            .contains("hf://anneal/nothing: no such repository"),
        "{failed:?}"
    );
    assert!(servers.get_opt("missing").await.unwrap().is_none());

    // An adapter from the hub is looked up too.
    let with_adapter = anneal_crds::manifest::parse_modeldeployment(&format!(
        "apiVersion: anneal.dev/v1alpha1\nkind: ModelDeployment\nmetadata: {{name: with-adapter, namespace: {NAMESPACE}}}\nspec:\n  model:\n    baseModel: {{name: anneal/tiny}}\n    adapters: [{{name: support, uri: \"hf://anneal/no-adapter\"}}]\n  resources: {{gpus: 0}}\n"
    ))
    .unwrap();
    api.create(&Default::default(), &with_adapter)
        .await
        .unwrap();
    let failed = deployment_status(&world, "with-adapter", |s| s.message.is_some()).await;
    assert!(
        failed
            .message
            .as_deref()
            .unwrap()
            .contains("spec.model.adapters[0].uri: hf://anneal/no-adapter: no such repository"),
        "{failed:?}"
    );

    hub.set_down(true);
    api.create(
        &Default::default(),
        &create("waiting", "{name: anneal/tiny}"),
    )
    .await
    .unwrap();
    let waiting = deployment_status(&world, "waiting", |s| s.message.is_some()).await;
    assert_eq!(
        waiting.phase,
        Some(anneal_crds::modeldeployment::DeploymentPhase::Pending),
        "{waiting:?}"
    );
    assert!(
        waiting.message.as_deref().unwrap().contains("HTTP 503"),
        "{waiting:?}"
    );
    assert!(servers.get_opt("waiting").await.unwrap().is_none());
    hub.set_down(false);
    let start = std::time::Instant::now();
    while servers.get_opt("waiting").await.unwrap().is_none() {
        assert!(
            start.elapsed() < TRAINING,
            "no serving Deployment once the hub answers"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    operator.stop().await;
}
