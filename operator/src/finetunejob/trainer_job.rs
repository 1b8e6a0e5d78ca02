//! A FineTuneJob's trainer, planned as Kubernetes objects: the `batch/v1 Job` that
//! runs `trainer train` on a GPU node, and the per-job Secret holding the report
//! token and the manifest the pod trains. Pure functions of the job and the
//! operator's configuration, so the controller only applies what they return.

use std::collections::BTreeMap;

use anneal_crds::FineTuneJob;
use anneal_crds::common::ResourcesSpec;
use anneal_crds::hub::HubRef;
use anneal_crds::memory_plan::{ByteSize, GIB, ModelShape, scratch_plan};
use anneal_crds::modelevaluation::EvaluationDataset;
use k8s_openapi::ByteString;
use k8s_openapi::api::batch::v1::{
    Job, JobSpec, PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement,
    PodFailurePolicyOnPodConditionsPattern, PodFailurePolicyRule,
};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec,
    ResourceRequirements, Secret, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;

use crate::config::OperatorConfig;
use crate::shared::image_policy::{ImageNotAllowed, check_image};
use crate::shared::pod_parts::env as pod_env;
use crate::shared::pod_parts::{
    PVC_DIR, config_map_file, container_security, credentials_env, device, env, gpu_resources,
    gpu_tolerations, kernel_cache, model_cache, mount, pod_security, quantity_of, scratch_limit,
    secret_work_and_tmp,
};

/// Name of the trainer's container, which the pod failure policy refers to.
pub const TRAINER_CONTAINER: &str = "trainer";
/// Exit code of a trainer error that no retry fixes (bad manifest, dataset or model).
pub const EXIT_NOT_RETRYABLE: i32 = 2;
/// Label every object the operator creates for a job carries.
pub const JOB_LABEL: &str = "anneal.dev/finetunejob";
/// Label Kueue reads to admit a Job through a LocalQueue.
pub const KUEUE_QUEUE_LABEL: &str = "kueue.x-k8s.io/queue-name";
/// Key of the report token in the job's Secret.
pub const TOKEN_KEY: &str = "token";
/// Key of the manifest the pod trains in the job's Secret.
pub const MANIFEST_KEY: &str = "finetunejob.yaml";
/// Where the job's Secret is mounted in the pod.
const JOB_FILES_DIR: &str = "/var/run/anneal/job";
/// Where a ConfigMap dataset is mounted in the pod.
const DATASET_DIR: &str = "/var/run/anneal/dataset";
/// Where a ConfigMap's `checkpoints.evaluation` chats are mounted.
const EVALUATION_DATASET_DIR: &str = "/var/run/anneal/evaluation-dataset";

/// Why a job cannot be planned; each names the field to change.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error(
        "spec.output.uri: not set, and the operator has no default object storage (install option defaultOutputUri)"
    )]
    NoOutput,
    #[error(
        "{field}: {scheme}:// sources are not fetched by this version of the trainer; use s3://, pvc://, hf:// or modelscope://"
    )]
    UnsupportedSource { field: &'static str, scheme: String },
    #[error(
        "spec.baseModel.source: not set, and spec.baseModel.name {0:?} is not a hub repository (ORG/NAME)"
    )]
    NoModelSource(String),
    #[error(
        "{field}: file:// is for local mode (`trainer train`); in a cluster use s3:// or pvc://CLAIM/path"
    )]
    LocalFileInCluster { field: &'static str },
    #[error("{field}: pvc:// needs a claim name and a path, as pvc://CLAIM/path")]
    BadPvcUri { field: &'static str },
    #[error("metadata.{0} is missing (the job was not read from the API server)")]
    MissingMetadata(&'static str),
    #[error(transparent)]
    ImageNotAllowed(#[from] ImageNotAllowed),
}

/// Names of a job's children: fixed, so a re-run reconcile finds what it made.
pub fn trainer_job_name(job_name: &str) -> String {
    format!("{job_name}-trainer")
}

/// The Secret's name (same as the Job's; they are different kinds).
pub fn trainer_secret_name(job_name: &str) -> String {
    trainer_job_name(job_name)
}

/// The output prefix the job writes under.
pub fn output_uri(job: &FineTuneJob, config: &OperatorConfig) -> Result<String, PlanError> {
    job.spec
        .output
        .as_ref()
        .map(|output| output.uri.clone())
        .or_else(|| config.default_output_uri.clone())
        .ok_or(PlanError::NoOutput)
}

/// The Secret with the storage credentials the pod gets as environment, if any.
pub fn credentials_secret(job: &FineTuneJob, config: &OperatorConfig) -> Option<String> {
    job.spec
        .output
        .as_ref()
        .and_then(|output| output.credentials_secret.clone())
        .or_else(|| config.default_credentials_secret.clone())
}

/// Where the run's files land: `{output}/{namespace}/{job}/{uid}` (docs/design.md, "Storage layout").
pub fn run_uri(job: &FineTuneJob, config: &OperatorConfig) -> Result<String, PlanError> {
    let meta = Meta::of(job)?;
    Ok(format!(
        "{}/{}/{}/{}",
        output_uri(job, config)?.trim_end_matches('/'),
        meta.namespace,
        meta.name,
        meta.uid
    ))
}

/// A `pvc://` source mounted into the pod.
#[derive(Clone, Debug, PartialEq, Eq)]
struct PvcMount {
    claim: String,
}

/// The manifest the pod trains: the job itself, with sources a pod reads from mounts
/// rewritten to the mount paths and status left out.
pub fn pod_manifest(job: &FineTuneJob) -> Result<String, PlanError> {
    let meta = Meta::of(job)?;
    let mut planned = FineTuneJob::new(meta.name, job.spec.clone());
    planned.metadata.namespace = Some(meta.namespace.to_owned());
    planned.metadata.uid = Some(meta.uid.to_owned());
    planned.spec.base_model.source =
        Some(pod_source_uri("spec.baseModel.source", &base_model_source(job)?)?.0);
    let dataset = &mut planned.spec.dataset;
    if let Some(config_map) = dataset.config_map.take() {
        dataset.train = Some(format!("file://{DATASET_DIR}/{}", config_map.key));
    }
    if let Some(train) = &dataset.train {
        dataset.train = Some(pod_source_uri("spec.dataset.train", train)?.0);
    }
    if let Some(validation) = &dataset.validation {
        dataset.validation = Some(pod_source_uri("spec.dataset.validation", validation)?.0);
    }
    for mixed in &mut dataset.mix {
        mixed.uri = pod_source_uri("spec.dataset.mix[].uri", &mixed.uri)?.0;
    }
    if let Some(images) = &dataset.images {
        dataset.images = Some(pod_source_uri("spec.dataset.images", images)?.0);
    }
    if let Some(evaluation) = &mut planned.spec.checkpoints.evaluation {
        let dataset = &mut evaluation.dataset;
        if let Some(config_map) = dataset.config_map.take() {
            dataset.uri = Some(format!(
                "file://{EVALUATION_DATASET_DIR}/{}",
                config_map.key
            ));
        }
        if let Some(uri) = &dataset.uri {
            dataset.uri = Some(pod_source_uri(EVALUATION_DATASET_FIELD, uri)?.0);
        }
    }
    Ok(serde_yaml_ng::to_string(&planned).expect("a FineTuneJob serializes"))
}

/// The held-out chats `checkpoints.evaluation` scores every checkpoint on.
fn evaluation_dataset(job: &FineTuneJob) -> Option<&EvaluationDataset> {
    (job.spec.checkpoints.evaluation.as_ref()).map(|evaluation| &evaluation.dataset)
}

const EVALUATION_DATASET_FIELD: &str = "spec.checkpoints.evaluation.dataset.uri";

/// Checks that the pod can read every source, without planning anything.
pub fn check_sources(job: &FineTuneJob) -> Result<(), PlanError> {
    pod_manifest(job).map(drop)
}

/// Checks the image the job names, if any, against the install's image policy.
pub fn check_trainer_image(job: &FineTuneJob, config: &OperatorConfig) -> Result<(), PlanError> {
    Ok(check_image(job.spec.resources.image.as_deref(), config)?)
}

/// Where the base model the job trains on is: its source, else the hub form of its
/// name (through the jobs it starts from, once resolved).
pub fn base_model_source(job: &FineTuneJob) -> Result<String, PlanError> {
    let base = job.trained_base_model();
    base.source_uri()
        .ok_or_else(|| PlanError::NoModelSource(base.name.clone()))
}

/// Whether the base model comes from a model hub (and so through the model cache).
pub fn from_hub(job: &FineTuneJob) -> bool {
    base_model_source(job).is_ok_and(|uri| HubRef::parse(&uri).is_some())
}

/// A source as the pod reads it, and the claim to mount when it is on a PVC.
fn pod_source_uri(field: &'static str, uri: &str) -> Result<(String, Option<PvcMount>), PlanError> {
    let scheme = uri.split("://").next().unwrap_or_default();
    match scheme {
        // The trainer fetches a hub model itself, through the model cache.
        "s3" | "hf" | "modelscope" => Ok((uri.to_owned(), None)),
        "file"
            if uri.starts_with(&format!("file://{DATASET_DIR}/"))
                || uri.starts_with(&format!("file://{EVALUATION_DATASET_DIR}/")) =>
        {
            Ok((uri.to_owned(), None))
        }
        "file" => Err(PlanError::LocalFileInCluster { field }),
        "pvc" => {
            let rest = &uri["pvc://".len()..];
            let (claim, path) = rest.split_once('/').ok_or(PlanError::BadPvcUri { field })?;
            if claim.is_empty() || path.trim_matches('/').is_empty() {
                return Err(PlanError::BadPvcUri { field });
            }
            Ok((
                format!("file://{PVC_DIR}/{claim}/{}", path.trim_start_matches('/')),
                Some(PvcMount {
                    claim: claim.to_owned(),
                }),
            ))
        }
        other => Err(PlanError::UnsupportedSource {
            field,
            scheme: other.to_owned(),
        }),
    }
}

/// The claims the pod mounts, each once, in a stable order.
fn pvc_mounts(job: &FineTuneJob) -> Result<Vec<PvcMount>, PlanError> {
    let base_model = base_model_source(job)?;
    let mut sources = vec![("spec.baseModel.source", base_model.as_str())];
    if let Some(train) = &job.spec.dataset.train {
        sources.push(("spec.dataset.train", train));
    }
    if let Some(validation) = &job.spec.dataset.validation {
        sources.push(("spec.dataset.validation", validation));
    }
    for mixed in &job.spec.dataset.mix {
        sources.push(("spec.dataset.mix[].uri", &mixed.uri));
    }
    if let Some(images) = &job.spec.dataset.images {
        sources.push(("spec.dataset.images", images));
    }
    if let Some(uri) = evaluation_dataset(job).and_then(|d| d.uri.as_ref()) {
        sources.push((EVALUATION_DATASET_FIELD, uri));
    }
    let mut claims = Vec::new();
    for (field, uri) in sources {
        if let (_, Some(mount)) = pod_source_uri(field, uri)?
            && !claims.contains(&mount)
        {
            claims.push(mount);
        }
    }
    Ok(claims)
}

/// The per-job Secret: the token the trainer reports with, and its manifest.
pub fn plan_trainer_secret(job: &FineTuneJob, token: &str) -> Result<Secret, PlanError> {
    let meta = Meta::of(job)?;
    let data = BTreeMap::from([
        (TOKEN_KEY.to_owned(), ByteString(token.as_bytes().to_vec())),
        (
            MANIFEST_KEY.to_owned(),
            ByteString(pod_manifest(job)?.into_bytes()),
        ),
    ]);
    Ok(Secret {
        metadata: child_metadata(job, &meta, trainer_secret_name(meta.name), BTreeMap::new()),
        data: Some(data),
        type_: Some("Opaque".to_owned()),
        ..Secret::default()
    })
}

/// The trainer's `batch/v1 Job`. `shape`, the model's when the operator knows it,
/// sizes the pod's scratch disk.
pub fn plan_trainer_job(
    job: &FineTuneJob,
    config: &OperatorConfig,
    shape: Option<ModelShape>,
) -> Result<Job, PlanError> {
    let meta = Meta::of(job)?;
    // Checked again here: the image is checked in Validating, but a resumed job may
    // have changed it since.
    check_trainer_image(job, config)?;
    let files = pod_files(job, &meta, config, shape)?;
    // A CPU trainer's memory limit, and the same as the bytes it plans for.
    let (memory_limit, cpu_memory) = match job.spec.resources.gpus {
        0 => {
            let (limit, bytes) = cpu_trainer_memory(&job.spec.resources, config);
            (Some(limit), Some(bytes))
        }
        _ => (None, None),
    };
    let env = trainer_pod_env(job, &meta, config, files.env, cpu_memory)?;
    let container = trainer_container(job, config, env, files.mounts, memory_limit);
    Ok(trainer_job_around(
        job,
        &meta,
        config,
        container,
        files.volumes,
    ))
}

/// What the pod reads and writes: its volumes, where they are mounted, and the
/// variables that point the trainer at the caches among them.
struct PodFiles {
    volumes: Vec<Volume>,
    mounts: Vec<VolumeMount>,
    env: Vec<EnvVar>,
}

/// The job's files (its Secret), scratch space sized from `shape`, the kernel cache
/// on a GPU, the model cache for a hub model, a ConfigMap dataset and `pvc://` claims.
fn pod_files(
    job: &FineTuneJob,
    meta: &Meta<'_>,
    config: &OperatorConfig,
    shape: Option<ModelShape>,
) -> Result<PodFiles, PlanError> {
    let resources = &job.spec.resources;
    // Whole GiB, as a person would write it.
    let planned_scratch = shape.map(|shape| {
        let total = scratch_plan(&job.spec, shape).total.bytes();
        ByteSize(total.div_ceil(GIB) * GIB)
    });
    let scratch = scratch_limit(resources, planned_scratch, config);
    let (mounts, volumes) = secret_work_and_tmp(
        "job-files",
        trainer_secret_name(meta.name),
        JOB_FILES_DIR,
        scratch,
    );
    let mut files = PodFiles {
        mounts,
        volumes,
        env: Vec::new(),
    };
    // On a GPU: burn-cuda compiles its kernels into a writable cache.
    if resources.gpus > 0 {
        let (volume, cache_mount, variable) = kernel_cache(config);
        files.mounts.push(cache_mount);
        files.volumes.push(volume);
        files.env.push(variable);
    }
    if from_hub(job) {
        let (volume, variables) = model_cache(config);
        if let Some((volume, cache_mount)) = volume {
            files.mounts.push(cache_mount);
            files.volumes.push(volume);
        }
        files.env.extend(variables);
    }
    if let Some(config_map) = &job.spec.dataset.config_map {
        let (volume, dataset_mount) = config_map_file("dataset", config_map, DATASET_DIR);
        files.mounts.push(dataset_mount);
        files.volumes.push(volume);
    }
    if let Some(config_map) = evaluation_dataset(job).and_then(|d| d.config_map.as_ref()) {
        let (volume, dataset_mount) =
            config_map_file("evaluation-dataset", config_map, EVALUATION_DATASET_DIR);
        files.mounts.push(dataset_mount);
        files.volumes.push(volume);
    }
    for (index, pvc) in pvc_mounts(job)?.into_iter().enumerate() {
        let name = format!("pvc-{index}");
        files
            .mounts
            .push(mount(&name, &format!("{PVC_DIR}/{}", pvc.claim), true));
        files.volumes.push(Volume {
            name,
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: pvc.claim,
                read_only: Some(true),
            }),
            ..Volume::default()
        });
    }
    Ok(files)
}

/// The trainer's environment: the job's own, the device memory it plans its
/// micro-batch for, and `file_variables` (the caches), sorted by name.
fn trainer_pod_env(
    job: &FineTuneJob,
    meta: &Meta<'_>,
    config: &OperatorConfig,
    file_variables: Vec<EnvVar>,
    cpu_memory: Option<ByteSize>,
) -> Result<Vec<EnvVar>, PlanError> {
    let mut env = trainer_env(job, meta, config)?;
    if job.spec.resources.gpus > 0 {
        // The GPU the Validating verdict planned for: the trainer plans its
        // micro-batch for the same memory.
        env.push(pod_env("ANNEAL_GPU_MEMORY", &exact_size(config.gpu_memory)));
    }
    env.extend(file_variables);
    if let Some(uri) = &config.mlflow_tracking_uri {
        env.push(pod_env("ANNEAL_MLFLOW_TRACKING_URI", uri));
    }
    if let Some(from) = job.status.as_ref().and_then(|s| s.started_from.as_ref()) {
        // The checkpoint spec.baseModel.fineTuneJob resolved to; the manifest already
        // names the base model it trained.
        let value = format!("{}/{}={}", from.fine_tune_job, from.checkpoint, from.uri);
        env.push(pod_env("ANNEAL_STARTS_FROM", &value));
    }
    if let Some(bytes) = cpu_memory {
        // The CPU backend would otherwise plan for the node's MemAvailable, which a
        // container's memory limit does not change.
        env.push(pod_env("ANNEAL_CPU_MEMORY", &exact_size(bytes)));
    }
    env.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(env)
}

/// The trainer container: `trainer train` on the mounted manifest, locked down.
fn trainer_container(
    job: &FineTuneJob,
    config: &OperatorConfig,
    env: Vec<EnvVar>,
    mounts: Vec<VolumeMount>,
    memory_limit: Option<Quantity>,
) -> Container {
    let resources = &job.spec.resources;
    Container {
        name: TRAINER_CONTAINER.to_owned(),
        image: Some(
            resources
                .image
                .clone()
                .unwrap_or_else(|| config.trainer_image.clone()),
        ),
        args: Some(vec![
            "train".to_owned(),
            format!("{JOB_FILES_DIR}/{MANIFEST_KEY}"),
            "--json".to_owned(),
            "--device".to_owned(),
            device(resources).to_owned(),
        ]),
        env: Some(env),
        env_from: credentials_env(credentials_secret(job, config).as_deref()),
        volume_mounts: Some(mounts),
        resources: Some(with_memory(gpu_resources(resources, config), memory_limit)),
        security_context: Some(container_security()),
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        ..Container::default()
    }
}

/// The `batch/v1 Job` around `container`: one pod, never restarted in place,
/// suspended for Kueue when the job names a queue.
fn trainer_job_around(
    job: &FineTuneJob,
    meta: &Meta<'_>,
    config: &OperatorConfig,
    container: Container,
    volumes: Vec<Volume>,
) -> Job {
    let resources = &job.spec.resources;
    let mut labels = BTreeMap::new();
    if let Some(queue) = &job.spec.queue_name {
        labels.insert(KUEUE_QUEUE_LABEL.to_owned(), queue.clone());
    }
    let pod_labels = BTreeMap::from([
        (JOB_LABEL.to_owned(), meta.name.to_owned()),
        (
            "app.kubernetes.io/name".to_owned(),
            "anneal-trainer".to_owned(),
        ),
    ]);
    Job {
        metadata: child_metadata(job, meta, trainer_job_name(meta.name), labels),
        spec: Some(JobSpec {
            // Kueue admits a queued Job by unsuspending it.
            suspend: Some(job.spec.queue_name.is_some()),
            backoff_limit: Some(config.trainer_backoff_limit),
            completions: Some(1),
            parallelism: Some(1),
            pod_failure_policy: Some(trainer_failure_policy()),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".to_owned()),
                    // The trainer never talks to the API server: it reports through the operator.
                    automount_service_account_token: Some(false),
                    termination_grace_period_seconds: Some(config.trainer_grace_seconds),
                    node_selector: resources.node_selector.clone(),
                    tolerations: gpu_tolerations(resources, config),
                    security_context: Some(pod_security()),
                    containers: vec![container],
                    volumes: Some(volumes),
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        status: None,
    }
}

/// `size` as the trainer reads it back to the byte: `80GiB`, else a count of bytes
/// (`ByteSize`'s display rounds to a tenth).
/// What every trainer pod is told: where to write and resume, where to report, and
/// where to leave the reason of a failure.
fn trainer_env(
    job: &FineTuneJob,
    meta: &Meta<'_>,
    config: &OperatorConfig,
) -> Result<Vec<EnvVar>, PlanError> {
    Ok(vec![
        env("ANNEAL_OUTPUT", &output_uri(job, config)?),
        env("ANNEAL_RUN_ID", meta.uid),
        env("ANNEAL_RESUME", "true"),
        env("ANNEAL_WORK_DIR", "/work"),
        env("HOME", "/work"),
        env(
            "ANNEAL_REPORT_URL",
            &format!(
                "{}/v1/jobs/{}/{}/events",
                config.report_base_url.trim_end_matches('/'),
                meta.namespace,
                meta.name
            ),
        ),
        env(
            "ANNEAL_REPORT_TOKEN_FILE",
            &format!("{JOB_FILES_DIR}/{TOKEN_KEY}"),
        ),
        // Why the trainer failed, with its reason (`Diverged: ...`), where the
        // operator reads it back from the pod.
        env("ANNEAL_TERMINATION_LOG", "/dev/termination-log"),
    ])
}

/// A CPU trainer's memory: the spec's (and its size, when it is one the trainer can
/// read), else the operator's `--cpu-trainer-memory`.
pub(crate) fn cpu_trainer_memory(
    resources: &ResourcesSpec,
    config: &OperatorConfig,
) -> (Quantity, ByteSize) {
    let parsed = resources
        .memory
        .as_ref()
        .and_then(|q| q.0.parse::<ByteSize>().ok().map(|size| (q.clone(), size)));
    parsed.unwrap_or_else(|| {
        let size = config.cpu_trainer_memory;
        (quantity_of(size), size)
    })
}

/// `requirements` with a memory limit and request of `memory` where it has none.
pub(crate) fn with_memory(
    mut requirements: ResourceRequirements,
    memory: Option<Quantity>,
) -> ResourceRequirements {
    if let Some(memory) = memory {
        for side in [&mut requirements.limits, &mut requirements.requests] {
            side.get_or_insert_with(Default::default)
                .entry("memory".to_owned())
                .or_insert_with(|| memory.clone());
        }
    }
    requirements
}

fn exact_size(size: ByteSize) -> String {
    if size.bytes().is_multiple_of(GIB) {
        format!("{}GiB", size.bytes() / GIB)
    } else {
        format!("{}B", size.bytes())
    }
}

/// Fail at once on a trainer error no retry fixes; do not count evictions and
/// preemptions (the next pod resumes from the last checkpoint); other failures
/// (exit 1: storage or I/O) use the backoff limit.
fn trainer_failure_policy() -> PodFailurePolicy {
    failure_policy(TRAINER_CONTAINER)
}

/// The failure policy of a pod whose `container` runs the trainer: exit 2 fails the
/// Job at once, a disruption is not counted.
pub(crate) fn failure_policy(container: &str) -> PodFailurePolicy {
    PodFailurePolicy {
        rules: vec![
            PodFailurePolicyRule {
                action: "FailJob".to_owned(),
                on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                    container_name: Some(container.to_owned()),
                    operator: "In".to_owned(),
                    values: vec![EXIT_NOT_RETRYABLE],
                }),
                on_pod_conditions: None,
            },
            PodFailurePolicyRule {
                action: "Ignore".to_owned(),
                on_exit_codes: None,
                on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
                    type_: "DisruptionTarget".to_owned(),
                    status: "True".to_owned(),
                }]),
            },
        ],
    }
}

/// The metadata a reconcile reads from the object it plans for; all set on objects
/// from the API server.
pub(crate) struct Meta<'a> {
    pub(crate) name: &'a str,
    pub(crate) namespace: &'a str,
    pub(crate) uid: &'a str,
}

impl<'a> Meta<'a> {
    pub(crate) fn of<K: Resource>(object: &'a K) -> Result<Self, PlanError> {
        let meta = object.meta();
        let field = |value: &'a Option<String>, name| {
            value.as_deref().ok_or(PlanError::MissingMetadata(name))
        };
        Ok(Self {
            name: field(&meta.name, "name")?,
            namespace: field(&meta.namespace, "namespace")?,
            uid: field(&meta.uid, "uid")?,
        })
    }
}

/// Metadata of a child: owned by the job (so deleting the job deletes it), labelled
/// with the job's name.
fn child_metadata(
    job: &FineTuneJob,
    meta: &Meta<'_>,
    name: String,
    mut labels: BTreeMap<String, String>,
) -> ObjectMeta {
    labels.insert(JOB_LABEL.to_owned(), meta.name.to_owned());
    labels.insert(
        "app.kubernetes.io/managed-by".to_owned(),
        "anneal-operator".to_owned(),
    );
    ObjectMeta {
        name: Some(name),
        namespace: Some(meta.namespace.to_owned()),
        labels: Some(labels),
        owner_references: job.controller_owner_ref(&()).map(|owner| vec![owner]),
        ..ObjectMeta::default()
    }
}

#[cfg(test)]
mod tests;
