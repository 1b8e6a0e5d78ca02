//! A ModelEvaluation planned as the children that run it: a Secret holding the
//! manifest the pod evaluates (the evaluation itself, a ConfigMap dataset pointed at
//! its mounted file), and a `batch/v1 Job` running `trainer evaluate` on it. A pure
//! function of the evaluation, where its FineTuneJobs' runs are, and the operator's
//! configuration.
//!
//! The pod gets:
//! - the run id (the evaluation's uid), so that a retried pod continues from the
//!   answers the last one kept;
//! - each endpoint's credentials Secret, mounted where `trainer evaluate` reads keys
//!   (`/var/run/secrets/anneal/{secret}/apiKey`);
//! - the storage credentials, as a trainer pod gets them.
//!
//! It asks for a GPU only when it generates with weights it loads (a base model, a
//! checkpoint, or a judge of its own). When every model and judge is served, it is a
//! small CPU pod.

use std::collections::{BTreeMap, BTreeSet};

use anneal_crds::common::BaseModelSpec;
use anneal_crds::modelevaluation::{ModelEvaluation, ModelEvaluationSpec};
use k8s_openapi::ByteString;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, KeyToPath, PodSpec, PodTemplateSpec, ResourceRequirements, Secret,
    SecretVolumeSource, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;

use crate::config::OperatorConfig;
use crate::finetunejob::trainer_job::{
    Meta, PlanError, cpu_trainer_memory, failure_policy, with_memory,
};
use crate::shared::image_policy::check_image;
use crate::shared::pod_parts::{
    config_map_file, container_security, credentials_env, env, gpu_resources, gpu_tolerations,
    hub_endpoint_env, kernel_cache, model_cache, mount, pod_security, scratch_limit,
    secret_work_and_tmp,
};

/// Name of the evaluating container.
pub const EVALUATE_CONTAINER: &str = "evaluate";
/// Label every object the operator creates for an evaluation carries.
pub const EVALUATION_LABEL: &str = "anneal.dev/modelevaluation";
/// Key of the manifest in the evaluation's Secret.
pub const MANIFEST_KEY: &str = "modelevaluation.yaml";
/// Where the evaluation's Secret is mounted.
const FILES_DIR: &str = "/var/run/anneal/evaluation";
/// Where a ConfigMap dataset is mounted.
const DATASET_DIR: &str = "/var/run/anneal/dataset";
/// Where endpoints' credentials Secrets are mounted, one folder each.
pub const SECRETS_DIR: &str = "/var/run/secrets/anneal";
/// The key of a credentials Secret that holds the API key.
const API_KEY: &str = "apiKey";

/// Why an evaluation cannot be planned; each names the field to change.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EvaluationPlanError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("{field}: {message}")]
    Field { field: String, message: String },
}

/// The run folder of a FineTuneJob the evaluation names: `{output}/{ns}/{job}/{uid}`,
/// read by the controller from the job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobRun {
    pub job: String,
    pub run_uri: String,
}

/// The Job's (and the Secret's) name: fixed, so a re-run reconcile finds what it made.
pub fn evaluation_job_name(evaluation_name: &str) -> String {
    format!("{evaluation_name}-evaluate")
}

/// The output prefix the report goes under.
pub fn evaluation_output_uri(
    evaluation: &ModelEvaluation,
    config: &OperatorConfig,
) -> Result<String, PlanError> {
    evaluation
        .spec
        .output
        .as_ref()
        .map(|output| output.uri.clone())
        .or_else(|| config.default_output_uri.clone())
        .ok_or(PlanError::NoOutput)
}

/// Where the report lands: `{output}/{namespace}/{evaluation}/{uid}`.
pub fn evaluation_run_uri(
    evaluation: &ModelEvaluation,
    config: &OperatorConfig,
) -> Result<String, PlanError> {
    let meta = Meta::of(evaluation)?;
    Ok(format!(
        "{}/{}/{}/{}",
        evaluation_output_uri(evaluation, config)?.trim_end_matches('/'),
        meta.namespace,
        meta.name,
        meta.uid
    ))
}

/// The manifest the pod evaluates: the evaluation without its status, a ConfigMap
/// dataset turned into the file the pod mounts.
pub fn pod_evaluation_manifest(evaluation: &ModelEvaluation) -> Result<String, PlanError> {
    let meta = Meta::of(evaluation)?;
    let mut spec = evaluation.spec.clone();
    if let Some(config_map) = spec.dataset.config_map.take() {
        spec.dataset.uri = Some(format!("file://{DATASET_DIR}/{}", config_map.key));
    }
    let mut planned = ModelEvaluation::new(meta.name, spec);
    planned.metadata.namespace = Some(meta.namespace.to_owned());
    Ok(serde_yaml_ng::to_string(&planned).expect("a ModelEvaluation serializes"))
}

/// The Secret with the pod's manifest.
pub fn plan_evaluation_secret(evaluation: &ModelEvaluation) -> Result<Secret, PlanError> {
    let meta = Meta::of(evaluation)?;
    Ok(Secret {
        metadata: child_metadata(evaluation, &meta),
        data: Some(BTreeMap::from([(
            MANIFEST_KEY.to_owned(),
            ByteString(pod_evaluation_manifest(evaluation)?.into_bytes()),
        )])),
        type_: Some("Opaque".to_owned()),
        ..Secret::default()
    })
}

/// The `batch/v1 Job` that runs `trainer evaluate`, with `job_runs` naming the run of
/// every FineTuneJob the evaluation compares.
pub fn plan_evaluation_job(
    evaluation: &ModelEvaluation,
    job_runs: &[JobRun],
    config: &OperatorConfig,
) -> Result<Job, EvaluationPlanError> {
    let meta = Meta::of(evaluation)?;
    let spec = &evaluation.spec;
    check_sources(spec)?;
    let resources = &spec.resources;
    check_image(resources.image.as_deref(), config).map_err(PlanError::from)?;
    let image = resources
        .image
        .clone()
        .unwrap_or_else(|| config.trainer_image.clone());
    let on_gpu = loads_weights(spec) && resources.gpus > 0;

    let mut args = vec![
        "evaluate".to_owned(),
        format!("{FILES_DIR}/{MANIFEST_KEY}"),
        "--device".to_owned(),
        if on_gpu { "cuda" } else { "cpu" }.to_owned(),
    ];
    for run in job_runs {
        args.extend([
            "--job-run".to_owned(),
            format!("{}={}", run.job, run.run_uri),
        ]);
    }
    let mut env_vars = vec![
        env("ANNEAL_OUTPUT", &evaluation_output_uri(evaluation, config)?),
        env("ANNEAL_RUN_ID", meta.uid),
        env("ANNEAL_SECRETS_DIR", SECRETS_DIR),
        env("HOME", "/work"),
        env("ANNEAL_TERMINATION_LOG", "/dev/termination-log"),
    ];
    let mut files = pod_files(evaluation, &meta, config, on_gpu, &mut env_vars);
    files.add_endpoint_keys(spec);
    env_vars.sort_by(|a, b| a.name.cmp(&b.name));

    let (requirements, memory_limit) = match on_gpu {
        true => (gpu_resources(resources, config), None),
        false => (
            ResourceRequirements::default(),
            Some(cpu_trainer_memory(resources, config).0),
        ),
    };
    let container = Container {
        name: EVALUATE_CONTAINER.to_owned(),
        image: Some(image),
        args: Some(args),
        env: Some(env_vars),
        env_from: credentials_env(credentials_secret(evaluation, config).as_deref()),
        volume_mounts: Some(files.mounts),
        resources: Some(with_memory(requirements, memory_limit)),
        security_context: Some(container_security()),
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        ..Container::default()
    };
    Ok(Job {
        metadata: child_metadata(evaluation, &meta),
        spec: Some(JobSpec {
            backoff_limit: Some(config.trainer_backoff_limit),
            completions: Some(1),
            parallelism: Some(1),
            pod_failure_policy: Some(failure_policy(EVALUATE_CONTAINER)),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(BTreeMap::from([
                        (EVALUATION_LABEL.to_owned(), meta.name.to_owned()),
                        (
                            "app.kubernetes.io/name".to_owned(),
                            "anneal-evaluate".to_owned(),
                        ),
                    ])),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".to_owned()),
                    // The pod never talks to the API server.
                    automount_service_account_token: Some(false),
                    termination_grace_period_seconds: Some(config.trainer_grace_seconds),
                    node_selector: resources.node_selector.clone(),
                    tolerations: match on_gpu {
                        true => gpu_tolerations(resources, config),
                        false => None,
                    },
                    security_context: Some(pod_security()),
                    containers: vec![container],
                    volumes: Some(files.volumes),
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        status: None,
    })
}

/// Whether the pod loads weights (a base model or checkpoint, evaluated or judging)
/// rather than asking only servers.
pub fn loads_weights(spec: &ModelEvaluationSpec) -> bool {
    spec.models
        .iter()
        .any(|m| m.base_model.is_some() || m.fine_tune_job.is_some())
        || spec
            .metrics
            .iter()
            .filter_map(|m| m.judge.as_ref())
            .any(|judge| judge.model.base_model.is_some())
}

/// Every base model the pod fetches (evaluated or judging), with its field.
fn base_models(spec: &ModelEvaluationSpec) -> Vec<(String, &BaseModelSpec)> {
    let evaluated = spec.models.iter().enumerate().filter_map(|(i, m)| {
        let base = m.base_model.as_ref()?;
        Some((format!("spec.models[{i}].baseModel.source"), base))
    });
    let judging = spec.metrics.iter().enumerate().filter_map(|(i, m)| {
        let base = m.judge.as_ref()?.model.base_model.as_ref()?;
        Some((
            format!("spec.metrics[{i}].judge.model.baseModel.source"),
            base,
        ))
    });
    evaluated.chain(judging).collect()
}

/// Sources a pod can fetch: object storage and the hubs.
fn check_sources(spec: &ModelEvaluationSpec) -> Result<(), EvaluationPlanError> {
    let mut sources: Vec<(String, String)> = base_models(spec)
        .into_iter()
        .map(|(field, base)| (field, base.source_uri().unwrap_or_default()))
        .collect();
    if let Some(uri) = &spec.dataset.uri {
        sources.push(("spec.dataset.uri".to_owned(), uri.clone()));
    }
    for (field, uri) in sources {
        let scheme = uri.split("://").next().unwrap_or_default();
        if !matches!(scheme, "s3" | "hf" | "modelscope") {
            return Err(EvaluationPlanError::Field {
                field,
                message: format!(
                    "{uri:?}: an evaluation pod reads s3://, hf:// and modelscope:// sources (file:// is for trainer evaluate on your machine)"
                ),
            });
        }
    }
    Ok(())
}

/// The Secret with the storage credentials the pod gets as environment, if any.
fn credentials_secret(evaluation: &ModelEvaluation, config: &OperatorConfig) -> Option<String> {
    evaluation
        .spec
        .output
        .as_ref()
        .and_then(|output| output.credentials_secret.clone())
        .or_else(|| config.default_credentials_secret.clone())
}

/// The pod's volumes and where they are mounted.
struct PodFiles {
    volumes: Vec<Volume>,
    mounts: Vec<VolumeMount>,
}

impl PodFiles {
    /// Each endpoint's credentials Secret (evaluated or judging), at
    /// `{SECRETS_DIR}/{secret}/apiKey`.
    fn add_endpoint_keys(&mut self, spec: &ModelEvaluationSpec) {
        let evaluated = spec.models.iter().filter_map(|m| m.endpoint.as_ref());
        let judging = spec
            .metrics
            .iter()
            .filter_map(|m| m.judge.as_ref()?.model.endpoint.as_ref());
        let secrets: BTreeSet<&str> = evaluated
            .chain(judging)
            .filter_map(|e| e.credentials_secret.as_deref())
            .collect();
        for (index, secret) in secrets.into_iter().enumerate() {
            let name = format!("endpoint-key-{index}");
            self.mounts
                .push(mount(&name, &format!("{SECRETS_DIR}/{secret}"), true));
            self.volumes.push(Volume {
                name,
                secret: Some(SecretVolumeSource {
                    secret_name: Some(secret.to_owned()),
                    items: Some(vec![KeyToPath {
                        key: API_KEY.to_owned(),
                        path: API_KEY.to_owned(),
                        mode: None,
                    }]),
                    default_mode: Some(0o440),
                    optional: Some(false),
                }),
                ..Volume::default()
            });
        }
    }
}

/// The manifest, scratch space, the kernel cache on a GPU, the model cache for hub
/// models, and a ConfigMap dataset; the caches' variables go to `env_vars`.
fn pod_files(
    evaluation: &ModelEvaluation,
    meta: &Meta<'_>,
    config: &OperatorConfig,
    on_gpu: bool,
    env_vars: &mut Vec<EnvVar>,
) -> PodFiles {
    let spec = &evaluation.spec;
    let (mounts, volumes) = secret_work_and_tmp(
        "evaluation-files",
        evaluation_job_name(meta.name),
        FILES_DIR,
        scratch_limit(&spec.resources, None, config),
    );
    let mut files = PodFiles { mounts, volumes };
    if on_gpu {
        let (volume, cache_mount, variable) = kernel_cache(config);
        files.mounts.push(cache_mount);
        files.volumes.push(volume);
        env_vars.push(variable);
    }
    let from_hub = base_models(spec).iter().any(|(_, base)| {
        let uri = base.source_uri().unwrap_or_default();
        uri.starts_with("hf://") || uri.starts_with("modelscope://")
    });
    if from_hub {
        let (volume, variables) = model_cache(config);
        if let Some((volume, cache_mount)) = volume {
            files.mounts.push(cache_mount);
            files.volumes.push(volume);
        }
        env_vars.extend(variables);
    } else {
        env_vars.extend(hub_endpoint_env(config));
    }
    if let Some(config_map) = &spec.dataset.config_map {
        let (volume, dataset_mount) = config_map_file("dataset", config_map, DATASET_DIR);
        files.mounts.push(dataset_mount);
        files.volumes.push(volume);
    }
    files
}

/// Metadata of a child: owned by the evaluation (deleting it deletes them), labelled
/// with its name.
fn child_metadata(evaluation: &ModelEvaluation, meta: &Meta<'_>) -> ObjectMeta {
    ObjectMeta {
        name: Some(evaluation_job_name(meta.name)),
        namespace: Some(meta.namespace.to_owned()),
        labels: Some(BTreeMap::from([
            (EVALUATION_LABEL.to_owned(), meta.name.to_owned()),
            (
                "app.kubernetes.io/managed-by".to_owned(),
                "anneal-operator".to_owned(),
            ),
        ])),
        owner_references: evaluation
            .controller_owner_ref(&())
            .map(|owner| vec![owner]),
        ..ObjectMeta::default()
    }
}

#[cfg(test)]
mod tests;
