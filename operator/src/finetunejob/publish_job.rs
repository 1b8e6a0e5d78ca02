//! A `spec.publish` entry planned as a `batch/v1 Job` that runs `trainer publish`: the
//! checkpoint the entry names (resolved against the job's status), its destination,
//! and for a merge the job's base model. A pure function of the job, the entry and the
//! operator's configuration; the Job's name comes from the entry itself, so a
//! re-run reconcile finds what it made and a changed list never reuses a name.

use std::collections::BTreeMap;

use anneal_crds::FineTuneJob;
use anneal_crds::finetunejob::{FineTuneJobStatus, PublishSpec};
use k8s_openapi::api::batch::v1::{
    Job, JobSpec, PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement, PodFailurePolicyRule,
};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;

use crate::config::OperatorConfig;
use crate::finetunejob::trainer_job::{
    EXIT_NOT_RETRYABLE, JOB_LABEL, PlanError, base_model_source, check_trainer_image,
    credentials_secret,
};
use crate::modeldeployment::model_resolution::best_checkpoint;
use crate::shared::pod_parts::{
    TMP_SIZE, container_security, credentials_env, empty_dir_limited, env, hub_endpoint_env,
    model_cache, mount, pod_security, quantity_of, scratch_limit,
};

/// Name of the publishing container.
pub const PUBLISH_CONTAINER: &str = "publish";
/// Label of a publish pod: its Job's name.
pub const PUBLISH_LABEL: &str = "anneal.dev/publish";

/// The checkpoint an entry names, as (its name, its folder's URI); or why there is none.
pub fn publish_source(
    status: &FineTuneJobStatus,
    entry: &PublishSpec,
) -> Result<(String, String), String> {
    let named = |name: &str| {
        status
            .checkpoints
            .iter()
            .find(|c| c.name == name)
            .map(|c| (c.name.clone(), c.uri.clone()))
    };
    match entry.checkpoint.as_str() {
        "final" => status
            .result
            .as_ref()
            .map(|result| ("final".to_owned(), result.uri.clone()))
            .ok_or_else(|| "the job has no result (status.result) to publish".to_owned()),
        "best" => best_checkpoint(&status.checkpoints)
            .map(|best| (best.name.clone(), best.uri.clone()))
            .ok_or_else(|| {
                "no checkpoint has a validation loss or a checkpoints.evaluation score (the job held out no validation data); name a checkpoint or use final".to_owned()
            }),
        name => named(name).ok_or_else(|| {
            let known: Vec<&str> = status.checkpoints.iter().map(|c| c.name.as_str()).collect();
            format!(
                "the job has no checkpoint {name}; it has {}, or use final or best",
                if known.is_empty() { "none".to_owned() } else { known.join(", ") }
            )
        }),
    }
}

/// `{job}-publish-{8 hex digits of the entry}`: at most 48 + 17 characters.
pub fn publish_job_name(job_name: &str, entry: &PublishSpec) -> String {
    // FNV-1a: stable across versions and platforms, unlike std's hasher.
    let mut hash: u32 = 0x811c_9dc5;
    let key = format!("{}\n{}\n{}", entry.checkpoint, entry.to, entry.merge);
    for byte in key.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    format!("{job_name}-publish-{hash:08x}")
}

/// The Job that publishes `entry`'s checkpoint, found at `source_uri`.
pub fn plan_publish_job(
    job: &FineTuneJob,
    entry: &PublishSpec,
    source_uri: &str,
    config: &OperatorConfig,
) -> Result<Job, PlanError> {
    let name = job
        .metadata
        .name
        .as_deref()
        .ok_or(PlanError::MissingMetadata("name"))?;
    let namespace = job
        .metadata
        .namespace
        .as_deref()
        .ok_or(PlanError::MissingMetadata("namespace"))?;
    check_trainer_image(job, config)?;
    let job_name = publish_job_name(name, entry);
    let mut args = vec![
        "publish".to_owned(),
        source_uri.to_owned(),
        entry.to.clone(),
        "--json".to_owned(),
        "--work-dir".to_owned(),
        "/work".to_owned(),
    ];
    let mut env_vars = vec![
        env("HOME", "/work"),
        env("ANNEAL_TERMINATION_LOG", "/dev/termination-log"),
    ];
    let mut mounts = vec![mount("work", "/work", false), mount("tmp", "/tmp", false)];
    let resources = &job.spec.resources;
    let mut volumes = vec![
        empty_dir_limited("work", scratch_limit(resources, None, config)),
        empty_dir_limited("tmp", TMP_SIZE),
    ];
    if entry.merge {
        let base = base_model_source(job)?;
        if base.starts_with("pvc://") || base.starts_with("file://") {
            return Err(PlanError::UnsupportedSource {
                field: "spec.baseModel.source",
                scheme: base.split("://").next().unwrap_or_default().to_owned(),
            });
        }
        args.extend(["--merge".to_owned(), "--base-model".to_owned(), base]);
        // A hub base model comes through the model cache, as for training.
        let (volume, variables) = model_cache(config);
        if let Some((volume, cache_mount)) = volume {
            volumes.push(volume);
            mounts.push(cache_mount);
        }
        env_vars.extend(variables);
    } else {
        env_vars.extend(hub_endpoint_env(config));
    }
    env_vars.sort_by(|a, b| a.name.cmp(&b.name));
    // The merge holds one tensor in f32 at a time; the CPU trainer's memory is plenty.
    let memory = quantity_of(config.cpu_trainer_memory);
    let container = Container {
        name: PUBLISH_CONTAINER.to_owned(),
        image: Some(
            resources
                .image
                .clone()
                .unwrap_or_else(|| config.trainer_image.clone()),
        ),
        args: Some(args),
        env: Some(env_vars),
        env_from: credentials_env(credentials_secret(job, config).as_deref()),
        volume_mounts: Some(mounts),
        resources: Some(ResourceRequirements {
            limits: Some(BTreeMap::from([("memory".to_owned(), memory.clone())])),
            requests: Some(BTreeMap::from([("memory".to_owned(), memory)])),
            ..ResourceRequirements::default()
        }),
        security_context: Some(container_security()),
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        ..Container::default()
    };
    let labels = BTreeMap::from([
        (JOB_LABEL.to_owned(), name.to_owned()),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "anneal-operator".to_owned(),
        ),
    ]);
    Ok(Job {
        metadata: ObjectMeta {
            name: Some(job_name.clone()),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels),
            owner_references: job.controller_owner_ref(&()).map(|owner| vec![owner]),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(config.trainer_backoff_limit),
            completions: Some(1),
            parallelism: Some(1),
            pod_failure_policy: Some(PodFailurePolicy {
                rules: vec![PodFailurePolicyRule {
                    action: "FailJob".to_owned(),
                    on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                        container_name: Some(PUBLISH_CONTAINER.to_owned()),
                        operator: "In".to_owned(),
                        values: vec![EXIT_NOT_RETRYABLE],
                    }),
                    on_pod_conditions: None,
                }],
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    // Not the trainer's label: the controller tells trainer pods by it.
                    labels: Some(BTreeMap::from([
                        (PUBLISH_LABEL.to_owned(), job_name),
                        (
                            "app.kubernetes.io/name".to_owned(),
                            "anneal-publish".to_owned(),
                        ),
                    ])),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".to_owned()),
                    automount_service_account_token: Some(false),
                    node_selector: resources.node_selector.clone(),
                    security_context: Some(pod_security()),
                    containers: vec![container],
                    volumes: Some(volumes),
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use anneal_crds::finetunejob::{CheckpointStatus, JobResult};
    use anneal_crds::manifest::parse_finetunejob;

    fn job(publish: &str) -> FineTuneJob {
        let yaml = format!(
            r#"
apiVersion: anneal.dev/v1alpha1
kind: FineTuneJob
metadata: {{name: support-bot, namespace: team-a}}
spec:
  baseModel: {{name: Qwen/Qwen2.5-7B-Instruct}}
  dataset: {{train: "s3://data/chats.jsonl"}}
  output: {{uri: "s3://runs", credentialsSecret: creds}}
  publish: {publish}
"#
        );
        let mut job = parse_finetunejob(&yaml).unwrap();
        job.metadata.uid = Some("uid-1".to_owned());
        job
    }

    fn status() -> FineTuneJobStatus {
        let checkpoint = |name: &str, step, loss: Option<f64>| CheckpointStatus {
            name: name.to_owned(),
            step,
            uri: format!("s3://runs/team-a/support-bot/uid-1/checkpoints/{name}"),
            valid_loss: loss,
            ..CheckpointStatus::default()
        };
        FineTuneJobStatus {
            checkpoints: vec![
                checkpoint("ckpt-4", 4, Some(0.9)),
                checkpoint("ckpt-8", 8, Some(1.1)),
            ],
            result: Some(JobResult {
                model_id: "ft:x".to_owned(),
                uri: "s3://runs/team-a/support-bot/uid-1/final".to_owned(),
                stopped_early: None,
            }),
            ..FineTuneJobStatus::default()
        }
    }

    #[test]
    fn entries_name_final_best_or_a_checkpoint() {
        let job = job(
            r#"[{to: "hf://team/bot"}, {checkpoint: best, to: "s3://models/bot", merge: true}, {checkpoint: ckpt-5, to: "hf://team/bot"}]"#,
        );
        let entries = &job.spec.publish;
        assert_eq!(entries[0].checkpoint, "final");
        assert_eq!(
            publish_source(&status(), &entries[0]).unwrap(),
            (
                "final".to_owned(),
                "s3://runs/team-a/support-bot/uid-1/final".to_owned()
            )
        );
        assert_eq!(publish_source(&status(), &entries[1]).unwrap().0, "ckpt-4");
        assert_eq!(
            publish_source(&status(), &entries[2]).unwrap_err(),
            "the job has no checkpoint ckpt-5; it has ckpt-4, ckpt-8, or use final or best"
        );
        let names: Vec<String> = entries
            .iter()
            .map(|e| publish_job_name("support-bot", e))
            .collect();
        assert_ne!(names[0], names[2], "another checkpoint, another Job");
        assert!(
            names.iter().all(|n| n.len() == "support-bot".len() + 17),
            "{names:?}"
        );
    }

    #[test]
    fn a_merge_runs_trainer_publish_with_the_base_model_through_the_cache() {
        let merging = job(r#"[{checkpoint: best, to: "hf://team/bot", merge: true}]"#);
        let entry = &merging.spec.publish[0];
        let config = OperatorConfig {
            model_cache_claim: Some("anneal-models".to_owned()),
            ..OperatorConfig::default()
        };
        let planned = plan_publish_job(&merging, entry, "s3://runs/x/ckpt-4", &config).unwrap();
        let pod = planned
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap();
        let container = &pod.containers[0];
        assert_eq!(
            container.args.as_deref().unwrap(),
            [
                "publish",
                "s3://runs/x/ckpt-4",
                "hf://team/bot",
                "--json",
                "--work-dir",
                "/work",
                "--merge",
                "--base-model",
                "hf://Qwen/Qwen2.5-7B-Instruct"
            ]
        );
        let envs: Vec<&str> = container
            .env
            .iter()
            .flatten()
            .map(|e| e.name.as_str())
            .collect();
        assert!(
            envs.contains(&"ANNEAL_MODEL_CACHE") && envs.contains(&"ANNEAL_TERMINATION_LOG"),
            "{envs:?}"
        );
        assert_eq!(
            container.env_from.as_ref().unwrap()[0]
                .secret_ref
                .as_ref()
                .unwrap()
                .name,
            "creds"
        );
        assert!(
            pod.volumes
                .iter()
                .flatten()
                .any(|v| v.name == "model-cache")
        );
        let labels = pod_labels(&planned);
        assert_eq!(labels.get(PUBLISH_LABEL), planned.metadata.name.as_ref());
        assert!(
            !labels.contains_key(JOB_LABEL),
            "not taken for a trainer pod"
        );

        // Without a merge: the adapter alone, no base model, no cache.
        let plain = job(r#"[{to: "s3://models/bot"}]"#);
        let planned =
            plan_publish_job(&plain, &plain.spec.publish[0], "s3://runs/x/final", &config).unwrap();
        let args = planned.spec.unwrap().template.spec.unwrap().containers[0]
            .args
            .clone()
            .unwrap();
        assert!(!args.contains(&"--merge".to_owned()), "{args:?}");
    }

    fn pod_labels(job: &Job) -> BTreeMap<String, String> {
        job.spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .clone()
            .unwrap()
    }
}
