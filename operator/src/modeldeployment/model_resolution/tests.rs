//! Table tests of model resolution: every checkpoint choice, a job that is not done,
//! and a base model with adapters.

use super::*;
use anneal_crds::finetunejob::{FineTuneJobStatus, JobResult};
use anneal_crds::manifest::{parse_finetunejob, parse_modeldeployment};

const JOB: &str = r#"
apiVersion: anneal.dev/v1alpha1
kind: FineTuneJob
metadata: {name: my-job, namespace: team-a, uid: uid-1}
spec:
  baseModel: {name: Qwen/Qwen2.5-0.5B-Instruct, source: "s3://models/qwen2.5-0.5b"}
  dataset: {train: "s3://data/chats.jsonl"}
  output: {uri: "s3://runs", credentialsSecret: job-creds}
"#;

const RUN: &str = "s3://runs/team-a/my-job/uid-1";

fn job(phase: JobPhase, losses: &[Option<f64>], result: bool) -> FineTuneJob {
    let mut job = parse_finetunejob(JOB).unwrap();
    let checkpoints: Vec<CheckpointStatus> = losses
        .iter()
        .enumerate()
        .map(|(i, loss)| CheckpointStatus {
            name: format!("ckpt-{}", (i + 1) * 9),
            step: (i as u64 + 1) * 9,
            epoch: i as f64 + 1.0,
            uri: format!("{RUN}/checkpoints/ckpt-{}", (i + 1) * 9),
            valid_loss: *loss,
            evaluation: Vec::new(),
            samples: Vec::new(),
        })
        .collect();
    job.status = Some(FineTuneJobStatus {
        phase: Some(phase),
        message: Some(format!("the job is {phase:?}")),
        result: result.then(|| JobResult {
            model_id: format!(
                "ft:qwen2.5-0.5b-instruct:my-job:{}",
                checkpoints.last().unwrap().name
            ),
            uri: format!("{RUN}/final"),
            stopped_early: None,
        }),
        checkpoints,
        ..FineTuneJobStatus::default()
    });
    job
}

fn deployment(checkpoint: &str, served: Option<&str>) -> ModelDeployment {
    let served = served
        .map(|name| format!("  servedModelName: {name}\n"))
        .unwrap_or_default();
    parse_modeldeployment(&format!(
        r#"
apiVersion: anneal.dev/v1alpha1
kind: ModelDeployment
metadata: {{name: chat, namespace: team-a}}
spec:
  model:
    fineTuneJob: {{name: my-job, checkpoint: {checkpoint}}}
{served}"#
    ))
    .unwrap()
}

fn config() -> OperatorConfig {
    OperatorConfig {
        default_credentials_secret: Some("anneal-storage".to_owned()),
        ..OperatorConfig::default()
    }
}

fn resolved(resolution: Resolution) -> ServedModel {
    match resolution {
        Resolution::Resolved(model) => model,
        other => panic!("not resolved: {other:?}"),
    }
}

const LOSSES: [Option<f64>; 3] = [Some(0.8), Some(0.5), Some(0.6)];

#[test]
fn checkpoints_resolve_to_their_folder_and_id() {
    // (checkpoint, served name, model id, adapter name, adapter URI)
    let cases = [
        (
            "final",
            None,
            "ft:qwen2.5-0.5b-instruct:my-job:ckpt-27",
            "ft:qwen2.5-0.5b-instruct:my-job:ckpt-27",
            format!("{RUN}/final"),
        ),
        (
            "best",
            None,
            "ft:qwen2.5-0.5b-instruct:my-job:ckpt-18",
            "ft:qwen2.5-0.5b-instruct:my-job:ckpt-18",
            format!("{RUN}/checkpoints/ckpt-18"),
        ),
        (
            "ckpt-9",
            Some("support"),
            "ft:qwen2.5-0.5b-instruct:my-job:ckpt-9",
            "support",
            format!("{RUN}/checkpoints/ckpt-9"),
        ),
    ];
    let job = job(JobPhase::Succeeded, &LOSSES, true);
    for (checkpoint, served, model_id, adapter_name, uri) in cases {
        let model = resolved(resolve_model(
            &deployment(checkpoint, served),
            Some(&job),
            &config(),
        ));
        assert_eq!(model.model_id, model_id, "{checkpoint}");
        assert_eq!(
            model.base_name, "Qwen/Qwen2.5-0.5B-Instruct",
            "{checkpoint}"
        );
        assert_eq!(model.base.uri, "s3://models/qwen2.5-0.5b", "{checkpoint}");
        assert_eq!(model.adapters.len(), 1, "{checkpoint}");
        assert_eq!(model.adapters[0].name, adapter_name, "{checkpoint}");
        assert_eq!(model.adapters[0].source.uri, uri, "{checkpoint}");
        assert_eq!(
            model.credentials_secret.as_deref(),
            Some("job-creds"),
            "the job's own storage credentials"
        );
    }
}

#[test]
fn final_without_a_recorded_result_is_the_last_checkpoint() {
    let job = job(JobPhase::Succeeded, &LOSSES, false);
    let model = resolved(resolve_model(
        &deployment("final", None),
        Some(&job),
        &config(),
    ));
    assert_eq!(model.model_id, "ft:qwen2.5-0.5b-instruct:my-job:ckpt-27");
    assert_eq!(
        model.adapters[0].source.uri,
        format!("{RUN}/checkpoints/ckpt-27")
    );
    assert_eq!(
        model.summary,
        "FineTuneJob my-job checkpoint ckpt-27 as ft:qwen2.5-0.5b-instruct:my-job:ckpt-27"
    );
}

#[test]
fn a_result_or_checkpoint_outside_the_jobs_run_is_never_served() {
    for (checkpoint, field) in [
        ("final", "status.result.uri"),
        ("ckpt-9", "status.checkpoints[ckpt-9].uri"),
    ] {
        let mut job = job(JobPhase::Succeeded, &LOSSES, true);
        let status = job.status.as_mut().unwrap();
        status.result.as_mut().unwrap().uri = "s3://someone-else/model".into();
        status.checkpoints[0].uri = format!("{RUN}/../uid-2/checkpoints/ckpt-9");
        match resolve_model(&deployment(checkpoint, None), Some(&job), &config()) {
            Resolution::Failed { reason, message } => {
                assert_eq!(reason, "CheckpointOutsideRun");
                assert!(message.contains(field), "{message}");
            }
            other => panic!("{checkpoint}: {other:?}"),
        }
    }
}

#[test]
fn best_ignores_checkpoints_without_a_loss_and_takes_the_earliest_of_equals() {
    let job = job(
        JobPhase::Succeeded,
        &[None, Some(0.4), Some(0.4), Some(f64::NAN)],
        true,
    );
    let model = resolved(resolve_model(
        &deployment("best", None),
        Some(&job),
        &config(),
    ));
    assert_eq!(model.model_id, "ft:qwen2.5-0.5b-instruct:my-job:ckpt-18");
}

#[test]
fn best_follows_the_checkpoint_evaluation_where_the_job_has_one() {
    // ckpt-18 has the lowest loss; ckpt-27 answers the held-out chats best.
    let mut job = job(
        JobPhase::Succeeded,
        &[Some(0.9), Some(0.4), Some(0.6)],
        true,
    );
    let checkpoints = &mut job.status.as_mut().unwrap().checkpoints;
    for (checkpoint, score) in checkpoints.iter_mut().zip([0.2, 0.5, 0.8]) {
        checkpoint.evaluation = vec![anneal_crds::modelevaluation::MetricScore {
            metric: "contains \"In short:\"".into(),
            score,
            low: score - 0.1,
            high: score + 0.1,
            unscored: 0,
        }];
    }
    let model = resolved(resolve_model(
        &deployment("best", None),
        Some(&job),
        &config(),
    ));
    assert_eq!(model.model_id, "ft:qwen2.5-0.5b-instruct:my-job:ckpt-27");
}

#[test]
fn a_job_past_its_deadline_serves_the_checkpoints_it_kept() {
    let failed = |reason: &str| {
        let mut job = job(JobPhase::Failed, &LOSSES, false);
        job.status.as_mut().unwrap().conditions =
            vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
                type_: "Failed".into(),
                status: "True".into(),
                reason: reason.into(),
                message: "ran past spec.activeDeadlineSeconds".into(),
                last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    anneal_crds::jiff::Timestamp::UNIX_EPOCH,
                ),
                observed_generation: None,
            }];
        job
    };
    let past_deadline = failed("DeadlineExceeded");
    let last = resolved(resolve_model(
        &deployment("final", None),
        Some(&past_deadline),
        &config(),
    ));
    assert_eq!(last.model_id, "ft:qwen2.5-0.5b-instruct:my-job:ckpt-27");
    let best = resolved(resolve_model(
        &deployment("best", None),
        Some(&past_deadline),
        &config(),
    ));
    assert_eq!(best.model_id, "ft:qwen2.5-0.5b-instruct:my-job:ckpt-18");
    // Any other failure has nothing to serve.
    let diverged = failed("Diverged");
    assert!(matches!(
        resolve_model(&deployment("final", None), Some(&diverged), &config()),
        Resolution::Failed {
            reason: "FineTuneJobFailed",
            ..
        }
    ));
}

#[test]
fn a_job_not_done_waits_and_a_wrong_choice_fails() {
    // (job, checkpoint, waits (else fails), reason, message)
    let cases: [(Option<FineTuneJob>, &str, bool, &str, &str); 7] = [
        (
            None,
            "final",
            true,
            "FineTuneJobNotFound",
            "waiting for FineTuneJob my-job (spec.model.fineTuneJob.name): it does not exist in this namespace",
        ),
        (
            Some(job(JobPhase::Running, &LOSSES, false)),
            "final",
            true,
            "FineTuneJobNotReady",
            "waiting for FineTuneJob my-job to succeed; it is Running: the job is Running",
        ),
        (
            Some(job(JobPhase::Suspended, &[], false)),
            "best",
            true,
            "FineTuneJobNotReady",
            "waiting for FineTuneJob my-job to succeed; it is Suspended: the job is Suspended",
        ),
        (
            Some(job(JobPhase::Failed, &LOSSES, false)),
            "final",
            false,
            "FineTuneJobFailed",
            "FineTuneJob my-job is Failed, so it has no model to serve: the job is Failed",
        ),
        (
            Some(job(JobPhase::Succeeded, &LOSSES, true)),
            "ckpt-7",
            false,
            "CheckpointNotFound",
            "spec.model.fineTuneJob.checkpoint: FineTuneJob my-job has no checkpoint ckpt-7; it has ckpt-9, ckpt-18, ckpt-27, or use final or best",
        ),
        (
            Some(job(JobPhase::Succeeded, &[None, None], true)),
            "best",
            false,
            "NoValidationLoss",
            "checkpoint best: no checkpoint of FineTuneJob my-job has a validation loss or a checkpoints.evaluation score (it held out no validation data); name a checkpoint or use final",
        ),
        (
            Some({
                let mut job = job(JobPhase::Succeeded, &[], false);
                job.status.as_mut().unwrap().result = None;
                job
            }),
            "final",
            true,
            "FineTuneJobResultMissing",
            "FineTuneJob my-job succeeded but its status has no result or checkpoint yet",
        ),
    ];
    for (job, checkpoint, waits, expected_reason, expected_message) in cases {
        let resolution = resolve_model(&deployment(checkpoint, None), job.as_ref(), &config());
        match (waits, resolution) {
            (true, Resolution::Waiting { reason, message })
            | (false, Resolution::Failed { reason, message }) => {
                assert_eq!(reason, expected_reason);
                assert_eq!(message, expected_message);
            }
            (_, other) => panic!("{expected_reason}: got {other:?}"),
        }
    }
}

#[test]
fn the_fine_tuned_model_needs_a_name_other_than_the_base_models() {
    let job = job(JobPhase::Succeeded, &LOSSES, true);
    match resolve_model(
        &deployment("final", Some("Qwen/Qwen2.5-0.5B-Instruct")),
        Some(&job),
        &config(),
    ) {
        Resolution::Failed { reason, message } => {
            assert_eq!(reason, "InvalidSpec");
            assert_eq!(
                message,
                "spec.servedModelName: Qwen/Qwen2.5-0.5B-Instruct is the name of the base model, which is served too; give the fine-tuned model a name of its own"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_fully_trained_checkpoint_is_served_as_the_model() {
    let mut job = job(JobPhase::Succeeded, &LOSSES, true);
    job.spec.training = TrainingType::Full;
    let model = resolved(resolve_model(
        &deployment("ckpt-18", Some("support")),
        Some(&job),
        &config(),
    ));
    assert_eq!(model.base.uri, format!("{RUN}/checkpoints/ckpt-18"));
    assert_eq!(model.base_name, "support");
    assert!(model.adapters.is_empty());
    assert_eq!(model.model_id, "ft:qwen2.5-0.5b-instruct:my-job:ckpt-18");
}

#[test]
fn image_models_are_told_by_the_jobs_task_or_the_base_models_name() {
    let chat = job(JobPhase::Succeeded, &LOSSES, true);
    let served = |job: &FineTuneJob| {
        resolved(resolve_model(
            &deployment("final", Some("x")),
            Some(job),
            &config(),
        ))
        .image
    };
    assert!(!served(&chat));
    let mut image = chat.clone();
    image.spec.task = anneal_crds::finetunejob::Task::TextToImage;
    assert!(served(&image));
    for (name, flux) in [
        ("black-forest-labs/FLUX.1-dev", true),
        ("flux-tiny", true),
        ("Qwen/Qwen2.5-7B-Instruct", false),
        ("fluxion-labs/Llama-3", false),
        // Only the model's part counts, not its organisation's.
        ("fluxai-labs/Qwen2.5-7B", false),
        ("me/my-flux-lora-base", true),
    ] {
        assert_eq!(is_flux_name(name), flux, "{name}");
    }
}

#[test]
fn spec_task_says_what_a_base_model_does_where_its_name_does_not() {
    let base = |name: &str, task: &str| {
        let deployment = parse_modeldeployment(&format!(
            r#"
apiVersion: anneal.dev/v1alpha1
kind: ModelDeployment
metadata: {{name: shots, namespace: team-a}}
spec:
  model:
    baseModel: {{name: {name}, source: "s3://models/x"}}
{task}"#
        ))
        .unwrap();
        resolved(resolve_model(&deployment, None, &config())).image
    };
    assert!(!base("acme/product-shots", ""));
    assert!(base("acme/product-shots", "  task: text-to-image"));
    assert!(base("black-forest-labs/FLUX.1-dev", ""));
    assert!(!base("black-forest-labs/FLUX.1-dev", "  task: chat"));
}

#[test]
fn spec_task_other_than_the_jobs_is_refused() {
    let chat_job = job(JobPhase::Succeeded, &LOSSES, true);
    let mut image = deployment("final", None);
    image.spec.task = Some(Task::TextToImage);
    match resolve_model(&image, Some(&chat_job), &config()) {
        Resolution::Failed { reason, message } => {
            assert_eq!(reason, "InvalidSpec");
            assert_eq!(
                message,
                "spec.task: text-to-image, but FineTuneJob my-job (spec.model.fineTuneJob.name) trained chat (its spec.task); leave spec.task out to serve what the job trained"
            );
        }
        other => panic!("{other:?}"),
    }
    // The same task as the job's is what leaving it out gives.
    let mut same = deployment("final", None);
    same.spec.task = Some(Task::Chat);
    assert!(!resolved(resolve_model(&same, Some(&chat_job), &config())).image);
}

#[test]
fn a_base_model_with_adapters_serves_each_under_its_name() {
    let deployment = parse_modeldeployment(
        r#"
apiVersion: anneal.dev/v1alpha1
kind: ModelDeployment
metadata: {name: many, namespace: team-a}
spec:
  model:
    baseModel: {name: Qwen/Qwen2.5-7B-Instruct, source: "pvc://models/qwen2.5-7b"}
    adapters:
      - {name: support, uri: "s3://runs/a/final"}
      - {name: sales, uri: "s3://runs/b/final"}
"#,
    )
    .unwrap();
    let model = resolved(resolve_model(&deployment, None, &config()));
    assert_eq!(model.model_id, "Qwen/Qwen2.5-7B-Instruct");
    assert_eq!(model.base_name, "Qwen/Qwen2.5-7B-Instruct");
    assert_eq!(model.base.field, "spec.model.baseModel.source");
    let adapters: Vec<(&str, &str, &str)> = model
        .adapters
        .iter()
        .map(|a| {
            (
                a.name.as_str(),
                a.source.uri.as_str(),
                a.source.field.as_str(),
            )
        })
        .collect();
    assert_eq!(
        adapters,
        [
            ("support", "s3://runs/a/final", "spec.model.adapters[0].uri"),
            ("sales", "s3://runs/b/final", "spec.model.adapters[1].uri"),
        ]
    );
    assert_eq!(
        model.credentials_secret.as_deref(),
        Some("anneal-storage"),
        "the operator's default credentials"
    );

    let mut clash = deployment.clone();
    clash.spec.served_model_name = Some("sales".to_owned());
    match resolve_model(&clash, None, &config()) {
        Resolution::Failed { reason, message } => {
            assert_eq!(reason, "InvalidSpec");
            assert!(
                message.contains("the name sales is used twice"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
}
