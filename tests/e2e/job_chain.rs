//! SFT then DPO through the operator: a DPO job that names an SFT job's `final`
//! checkpoint in `spec.baseModel.fineTuneJob` waits, Pending, while that job does not
//! exist and while it trains; then it trains the SFT adapter further (its trainer is
//! told which checkpoint), records its lineage in `status.startedFrom` and in its
//! checkpoints' state, and its result is served on the SFT job's base model.

use std::time::{Duration, Instant};

use anneal_crds::events::{EventBody, TrainerEvent};
use anneal_crds::finetunejob::{JobPhase, TrainingType};
use anneal_e2e::console_support::{TRAINING, deploy_final, greedy_answer};
use anneal_e2e::operator_harness::{BUCKET, NAMESPACE, World, job_yaml, quickstart_lines, repo};
use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use serde_json::json;

fn dpo_yaml() -> String {
    format!(
        r#"apiVersion: anneal.dev/v1alpha1
kind: FineTuneJob
metadata: {{name: dpo, namespace: {NAMESPACE}}}
spec:
  method: dpo
  baseModel: {{name: anneal-tiny, fineTuneJob: {{name: sft, checkpoint: final}}}}
  dataset: {{train: "s3://{BUCKET}/data/pairs.jsonl", validationSplit: 0.25}}
  hyperparameters:
    learningRate: 0.001
    epochs: 1
    batchSize: 4
    maxTokens: 256
    lora: {{rank: 4, alpha: 8, dropout: 0.0}}
  checkpoints: {{everySteps: 2}}
  resources: {{gpus: 0}}
"#
    )
}

/// Uploads 16 of the quick start's preference pairs as `data/pairs.jsonl`.
async fn upload_pairs(world: &World) {
    let pairs =
        std::fs::read_to_string(repo().join("examples/quickstart/house-style-dpo.jsonl")).unwrap();
    let pairs = pairs.lines().take(16).collect::<Vec<_>>().join("\n") + "\n";
    let (settings, uri) = (world.storage_settings(), format!("s3://{BUCKET}/data"));
    tokio::task::spawn_blocking(move || {
        anneal_crds::storage::Storage::open_with(&uri, settings)
            .unwrap()
            .put("pairs.jsonl", pairs.into_bytes())
            .unwrap();
    })
    .await
    .unwrap();
}

async fn wait_for_message(world: &World, name: &str, message: &str) {
    let started = Instant::now();
    loop {
        let status = world.job(name).await.status.unwrap_or_default();
        if status.message.as_deref() == Some(message) {
            assert_eq!(status.phase, Some(JobPhase::Pending));
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{name}: {status:?}, waiting for {message:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dpo_starts_from_the_sft_jobs_final_checkpoint_once_it_has_ended() {
    let world = World::start(&quickstart_lines(24)).await;
    upload_pairs(&world).await;
    let operator = world.start_operator(None).await;

    world.apply(&dpo_yaml()).await;
    wait_for_message(
        &world,
        "dpo",
        "waiting for FineTuneJob sft, which does not exist",
    )
    .await;
    let sft_yaml = job_yaml("sft", 1, 2, "");
    assert!(sft_yaml.contains("lora: {rank: 4, alpha: 8, dropout: 0.0}"));
    world.apply(&sft_yaml).await;

    let sft = world
        .wait_for("sft", TRAINING, "Succeeded", |s| {
            s.phase == Some(JobPhase::Succeeded) && s.result.is_some()
        })
        .await;
    let dpo = world
        .wait_for("dpo", TRAINING, "Succeeded or Failed", |s| {
            matches!(s.phase, Some(JobPhase::Succeeded | JobPhase::Failed)) && s.result.is_some()
                || s.phase == Some(JobPhase::Failed)
        })
        .await;
    let status = dpo.status.clone().unwrap();
    assert_eq!(
        status.phase,
        Some(JobPhase::Succeeded),
        "{}",
        serde_json::to_string_pretty(&status).unwrap()
    );
    let sft_status = sft.status.unwrap();
    let sft_final = sft_status.result.clone().unwrap().uri;
    let from = status.started_from.clone().unwrap();
    assert_eq!(
        (
            from.fine_tune_job.as_str(),
            from.checkpoint.as_str(),
            from.uri.as_str()
        ),
        ("sft", "final", sft_final.as_str())
    );
    assert_eq!(from.training, TrainingType::Lora);
    let base = from.base_model.unwrap();
    assert_eq!(
        (base.name.as_str(), base.source.as_deref()),
        (
            "anneal-tiny",
            Some(format!("s3://{BUCKET}/models/anneal-tiny").as_str())
        )
    );
    let result = status.result.clone().unwrap();
    assert!(
        result.model_id.starts_with("ft:anneal-tiny:dpo:ckpt-"),
        "{}",
        result.model_id
    );

    // Its trainer was told which checkpoint to train further.
    let jobs: Api<Job> = Api::namespaced(world.client(), NAMESPACE);
    let trainer = jobs.get("dpo-trainer").await.unwrap();
    let created = trainer.metadata.creation_timestamp.clone().unwrap();
    let sft_ended = sft_status.completion_time.clone().unwrap();
    assert!(
        created >= sft_ended,
        "DPO's trainer at {created:?}, SFT ended at {sft_ended:?}"
    );
    let env = trainer.spec.unwrap().template.spec.unwrap().containers[0]
        .env
        .clone()
        .unwrap();
    let starts_from = env.iter().find(|e| e.name == "ANNEAL_STARTS_FROM").unwrap();
    assert_eq!(
        starts_from.value.as_deref(),
        Some(format!("sft/final={sft_final}").as_str())
    );

    // Its run: DPO against the SFT model, so the first step's margin is 0; the
    // lineage in the final state.
    let run = result.uri.trim_end_matches("/final").to_owned();
    let events = world.read_object(&run, "events.jsonl").await.unwrap();
    let first_margin = String::from_utf8(events)
        .unwrap()
        .lines()
        .filter_map(|line| TrainerEvent::from_line(line).ok())
        .find_map(|event| match event.body {
            EventBody::Metrics {
                step: 1, metrics, ..
            } => metrics.reward_margin,
            _ => None,
        })
        .unwrap();
    assert!(first_margin.abs() < 1e-4, "margin {first_margin}");
    let state = world
        .read_object(&result.uri, "trainer_state.json")
        .await
        .unwrap();
    let state: serde_json::Value = serde_json::from_slice(&state).unwrap();
    assert_eq!(state["startedFrom"]["fineTuneJob"], "sft");
    assert_eq!(state["startedFrom"]["uri"], sft_final.as_str());

    // Served on the SFT job's base model, with the DPO adapter.
    world.kubelet.run_deployments();
    let model = deploy_final(&world, "dpo", "dpo-chat").await;
    assert_eq!(model, result.model_id);
    let server = world.kubelet.deployment_url("dpo-chat").unwrap();
    let messages = json!([{"role": "user", "content": "Can I take a bike on the tram?"}]);
    let answer = greedy_answer(&server, &model, messages, 8).await;
    assert!(!answer.is_empty());
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_that_names_a_checkpoint_its_job_never_saved_fails_naming_the_field() {
    let world = World::start(&quickstart_lines(24)).await;
    upload_pairs(&world).await;
    let operator = world.start_operator(None).await;
    world.apply(&job_yaml("sft", 1, 2, "")).await;
    world
        .apply(&dpo_yaml().replace("checkpoint: final", "checkpoint: ckpt-99"))
        .await;
    let dpo = world
        .wait_for("dpo", TRAINING, "Failed", |s| {
            s.phase == Some(JobPhase::Failed)
        })
        .await;
    let status = dpo.status.unwrap();
    let failed = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Failed")
        .unwrap();
    assert_eq!(failed.reason, "InvalidSpec");
    assert!(
        failed.message.starts_with(
            "spec.baseModel.fineTuneJob.checkpoint: ckpt-99: FineTuneJob sft ended Succeeded without it (its checkpoints: "
        ),
        "{}",
        failed.message
    );
    operator.stop().await;
}
