//! A ModelDeployment's serving pods, planned as Kubernetes objects: the `apps/v1
//! Deployment` that runs `trainer serve` (runtime `builtin`, with the kernel cache on
//! GPUs) or vLLM's OpenAI server (runtime `vllm`, models fetched by init containers in
//! the fetch image), the `Service` in front of it, and for `builtin` the Secret with
//! the token its adapter changes need and the ConfigMap listing its adapters. Pure functions of the deployment, its resolved
//! model and the operator's configuration, so the controller only applies what they
//! return.
//!
//! A `builtin` pod starts with the base model alone and `--enable-runtime-lora`: the
//! controller loads the adapters into every pod while it runs (`replica_adapters`),
//! so changing them never restarts a pod, and a readiness gate keeps a new pod out of
//! the Service until they are loaded. The pods' server also loads the adapters the
//! mounted ConfigMap lists before it says it is healthy, so a server restarted in its
//! pod (whose gate is already open) comes back with them. Only the kinds of storage the adapters come
//! from are in the pod template (a claim mounted, the model cache, the credentials).

use std::collections::BTreeMap;

use anneal_crds::ModelDeployment;
use anneal_crds::common::ResourcesSpec;
use anneal_crds::memory_plan::known_shape;
use anneal_crds::modeldeployment::{ModelDeploymentSpec, ServingRuntime};
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvFromSource, EnvVar, HTTPGetAction, PersistentVolumeClaimVolumeSource, PodReadinessGate,
    PodSpec, PodTemplateSpec, Probe, Secret, SecretEnvSource, Service, ServicePort, ServiceSpec,
    Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Resource;

use crate::config::OperatorConfig;
use crate::modeldeployment::model_resolution::{ServedModel, Source};
use crate::modeldeployment::serving_memory::weights_do_not_fit;
use crate::shared::image_policy::{ImageNotAllowed, check_image};
use crate::shared::pod_parts::{
    PVC_DIR, TMP_SIZE, container_security, credentials_env, device, empty_dir_limited, env,
    gpu_resources, gpu_tolerations, kernel_cache, model_cache, mount, pod_security, scratch_limit,
};

/// Label every object and pod of a deployment carries: its ModelDeployment's name.
pub const DEPLOYMENT_LABEL: &str = "anneal.dev/modeldeployment";
/// Name of the serving container.
pub const SERVER_CONTAINER: &str = "server";
/// The port both runtimes serve the OpenAI API, `/health` and `/metrics` on.
pub const HTTP_PORT: i32 = 8000;
/// Time a stopping server gets to finish the streams in flight after SIGTERM.
pub const GRACE_SECONDS: i64 = 60;
/// Where the vLLM pod's init containers put what they fetch.
const MODELS_DIR: &str = "/models";
/// Writable scratch (downloads, caches, `HOME`) on a read-only root file system.
const WORK_DIR: &str = "/work";
/// Startup probe: every 10 s for up to 30 minutes, for a large model to download and load.
const STARTUP_PERIOD_SECONDS: i32 = 10;
const STARTUP_FAILURES: i32 = 180;
/// Longer than the fetches and the startup probe together, so a slow load is not
/// reported as a stuck rollout.
const PROGRESS_DEADLINE_SECONDS: i32 = 3600;
/// vLLM's bound on adapter rank, the API's bound on `lora.rank`.
const MAX_LORA_RANK: u32 = anneal_crds::limits::LORA_RANK.1;
/// Condition type of a `builtin` pod's readiness gate, which the operator sets once
/// the pod serves the spec's adapters.
pub const ADAPTERS_GATE: &str = "anneal.dev/adapters-loaded";
/// The variable `trainer serve` reads its adapter-change token from.
pub const RUNTIME_LORA_TOKEN_ENV: &str = "ANNEAL_RUNTIME_LORA_TOKEN";
/// Adapters a `builtin` pod holds at once, at least (more when the spec names more),
/// so that adapters can be added without a new pod.
const MIN_MAX_LORAS: usize = 8;

/// Where a `builtin` pod finds the list of its adapters, mounted from the ConfigMap
/// [`adapters_config_map_name`]: its server loads them at start, so a server restarted
/// in its pod is ready again only with them.
const ADAPTERS_DIR: &str = "/etc/anneal/adapters";
/// The ConfigMap's key, and the file's name.
pub const ADAPTERS_FILE_KEY: &str = "adapters.json";
const ADAPTERS_VOLUME: &str = "adapters";

/// The ConfigMap listing a deployment's adapters (runtime `builtin`).
pub fn adapters_config_map_name(deployment: &str) -> String {
    format!("{deployment}-adapters")
}

/// The Secret holding a deployment's adapter-change token (runtime `builtin`).
pub fn runtime_lora_secret_name(deployment: &str) -> String {
    format!("{deployment}-runtime-lora")
}

/// Why a deployment cannot be planned; each names the field to change.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ServingPlanError {
    #[error(
        "metadata.name {0}: the Service takes the ModelDeployment's name, so it must be a DNS label (at most 63 lowercase letters, digits and '-', starting with a letter)"
    )]
    InvalidName(String),
    #[error("{field}: {scheme}:// sources are not read by runtime {runtime}; use {supported}")]
    UnsupportedSource {
        field: String,
        scheme: String,
        runtime: &'static str,
        supported: &'static str,
    },
    #[error("{field}: file:// is for local mode; in a cluster use s3:// or pvc://CLAIM/path")]
    LocalFileInCluster { field: String },
    #[error("{field}: pvc:// needs a claim name and a path, as pvc://CLAIM/path")]
    BadPvcUri { field: String },
    #[error("metadata.{0} is missing (the ModelDeployment was not read from the API server)")]
    MissingMetadata(&'static str),
    #[error(
        "spec.runtime vllm: the model is a FLUX image pipeline ({0}), which vLLM's OpenAI server does not serve; use runtime: builtin (trainer serve answers /v1/images/generations)"
    )]
    ImageModelOnVllm(String),
    /// `trainer serve` on several GPUs, all but one idle.
    #[error("spec.resources.gpus: {0}")]
    IdleGpus(String),
    /// The model's weights do not fit the GPUs asked for.
    #[error("spec.resources.gpus: {0}")]
    InsufficientGpuMemory(String),
    #[error(transparent)]
    ImageNotAllowed(#[from] ImageNotAllowed),
}

impl ServingPlanError {
    /// The `ModelResolved` reason of a problem with what the user wrote; `None` for
    /// one that is the operator's (a retry, not a status).
    pub fn user_reason(&self) -> Option<&'static str> {
        match self {
            Self::InvalidName(_) => Some("InvalidName"),
            Self::UnsupportedSource { .. }
            | Self::LocalFileInCluster { .. }
            | Self::BadPvcUri { .. } => Some("UnsupportedSource"),
            Self::ImageNotAllowed(_) => Some("ImageNotAllowed"),
            Self::ImageModelOnVllm(_) => Some("UnsupportedRuntime"),
            Self::IdleGpus(_) => Some("InvalidSpec"),
            Self::InsufficientGpuMemory(_) => Some("InsufficientGpuMemory"),
            Self::MissingMetadata(_) => None,
        }
    }
}

/// The Service's in-cluster URL of the OpenAI API.
pub fn endpoint(name: &str, namespace: &str) -> String {
    format!("http://{name}.{namespace}.svc:{HTTP_PORT}/v1")
}

/// Labels of the serving pods, which the Deployment and the Service select on.
pub fn pod_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_owned(),
            "anneal-model-server".to_owned(),
        ),
        ("app.kubernetes.io/instance".to_owned(), name.to_owned()),
        (DEPLOYMENT_LABEL.to_owned(), name.to_owned()),
    ])
}

/// How a pod reads one source.
#[derive(Clone, Debug, PartialEq, Eq)]
enum PodSource {
    /// Object storage the process (builtin) or an init container (vllm) downloads.
    Remote(String),
    /// A folder on a claim mounted read-only.
    Mounted { claim: String, path: String },
    /// A model hub repository (`hf://` or `modelscope://`), fetched through the model
    /// cache by the server (builtin) or an init container (vllm).
    Hub(String),
}

fn runtime_name(runtime: ServingRuntime) -> &'static str {
    match runtime {
        ServingRuntime::Builtin => "builtin",
        ServingRuntime::Vllm => "vllm",
    }
}

fn pod_source(source: &Source, runtime: ServingRuntime) -> Result<PodSource, ServingPlanError> {
    let uri = source.uri.as_str();
    let scheme = uri.split("://").next().unwrap_or_default();
    let field = || source.field.clone();
    match scheme {
        "s3" => Ok(PodSource::Remote(uri.to_owned())),
        "pvc" => {
            let rest = &uri["pvc://".len()..];
            let (claim, path) = rest
                .split_once('/')
                .ok_or_else(|| ServingPlanError::BadPvcUri { field: field() })?;
            let path = path.trim_matches('/');
            if claim.is_empty() || path.is_empty() {
                return Err(ServingPlanError::BadPvcUri { field: field() });
            }
            Ok(PodSource::Mounted {
                claim: claim.to_owned(),
                path: format!("{PVC_DIR}/{claim}/{path}"),
            })
        }
        "hf" | "modelscope" => Ok(PodSource::Hub(uri.to_owned())),
        "file" => Err(ServingPlanError::LocalFileInCluster { field: field() }),
        other => Err(ServingPlanError::UnsupportedSource {
            field: field(),
            scheme: other.to_owned(),
            runtime: runtime_name(runtime),
            supported: "s3://, pvc://CLAIM/path, hf://ORG/NAME or modelscope://ORG/NAME",
        }),
    }
}

/// Checks that the pods can be planned: the name fits a Service and every source is
/// one the runtime reads.
pub fn check_servable(
    deployment: &ModelDeployment,
    model: &ServedModel,
    config: &OperatorConfig,
) -> Result<(), ServingPlanError> {
    name_and_namespace(deployment)?;
    check_image(deployment.spec.resources.image.as_deref(), config)?;
    if let Some(problem) = deployment.spec.idle_gpus() {
        return Err(ServingPlanError::IdleGpus(problem));
    }
    if let Some(shape) = known_shape(&model.base_model)
        && let Some(problem) =
            weights_do_not_fit(deployment, &model.base_model, &shape, config.gpu_memory)
    {
        return Err(ServingPlanError::InsufficientGpuMemory(problem));
    }
    match deployment.spec.runtime {
        ServingRuntime::Builtin => builtin_plan(model, deployment).map(drop),
        ServingRuntime::Vllm => vllm_plan(model, deployment).map(drop),
    }
}

/// The name and namespace a plan needs; both set on objects from the API server.
fn name_and_namespace(deployment: &ModelDeployment) -> Result<(&str, &str), ServingPlanError> {
    let name = deployment
        .metadata
        .name
        .as_deref()
        .ok_or(ServingPlanError::MissingMetadata("name"))?;
    let namespace = deployment
        .metadata
        .namespace
        .as_deref()
        .ok_or(ServingPlanError::MissingMetadata("namespace"))?;
    if !anneal_crds::validation::is_service_name(name) {
        return Err(ServingPlanError::InvalidName(name.to_owned()));
    }
    Ok((name, namespace))
}

/// Metadata of a child: the deployment's name, owned by it (deleting it deletes them).
fn child_metadata(deployment: &ModelDeployment, name: &str, namespace: &str) -> ObjectMeta {
    let mut labels = pod_labels(name);
    labels.insert(
        "app.kubernetes.io/managed-by".to_owned(),
        "anneal-operator".to_owned(),
    );
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(namespace.to_owned()),
        labels: Some(labels),
        owner_references: deployment
            .controller_owner_ref(&())
            .map(|owner| vec![owner]),
        ..ObjectMeta::default()
    }
}

/// The ClusterIP Service clients reach the pods through.
pub fn plan_service(deployment: &ModelDeployment) -> Result<Service, ServingPlanError> {
    let (name, namespace) = name_and_namespace(deployment)?;
    Ok(Service {
        metadata: child_metadata(deployment, name, namespace),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(pod_labels(name)),
            ports: Some(vec![ServicePort {
                name: Some("http".to_owned()),
                port: HTTP_PORT,
                target_port: Some(IntOrString::String("http".to_owned())),
                protocol: Some("TCP".to_owned()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    })
}

/// What the pod mounts and runs, worked out from the sources.
#[derive(Default)]
struct PodPlan {
    args: Vec<String>,
    /// `trainer fetch URI DIR` init containers (vllm): (name, uri, dir).
    fetches: Vec<(String, String, String)>,
    claims: Vec<String>,
    /// Whether the server process itself reads object storage or a hub (needs the
    /// credentials Secret: storage keys, hub tokens).
    server_reads_storage: bool,
    /// Whether a model comes from a hub (the pod mounts the model cache).
    reads_hub: bool,
    /// Adapters the operator loads into a running `builtin` pod.
    runtime_adapters: Vec<RuntimeAdapter>,
}

/// An adapter as the operator loads it into a `builtin` pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeAdapter {
    pub name: String,
    /// What the pod reads (`lora_path`): a URI, or a path under a mounted claim.
    pub path: String,
    /// The field it comes from, for messages.
    pub field: String,
}

impl PodPlan {
    fn claim(&mut self, claim: &str) {
        if !self.claims.iter().any(|c| c == claim) {
            self.claims.push(claim.to_owned());
        }
    }

    /// The path or URI the builtin server reads a source from.
    fn builtin_source(&mut self, source: PodSource) -> String {
        match source {
            PodSource::Remote(uri) => {
                self.server_reads_storage = true;
                uri
            }
            PodSource::Mounted { claim, path } => {
                self.claim(&claim);
                path
            }
            PodSource::Hub(uri) => {
                self.server_reads_storage = true;
                self.reads_hub = true;
                uri
            }
        }
    }

    /// The path vLLM reads a source from; remote and hub ones are fetched first (a hub
    /// one into the model cache, `dir` a link to it).
    fn vllm_source(&mut self, source: PodSource, fetch_name: String, dir: String) -> String {
        match source {
            PodSource::Remote(uri) => {
                self.fetches.push((fetch_name, uri, dir.clone()));
                dir
            }
            PodSource::Hub(uri) => {
                self.reads_hub = true;
                self.fetches.push((fetch_name, uri, dir.clone()));
                dir
            }
            PodSource::Mounted { claim, path } => {
                self.claim(&claim);
                path
            }
        }
    }
}

/// `trainer serve` arguments (the image's entrypoint is `trainer`).
fn builtin_plan(
    model: &ServedModel,
    deployment: &ModelDeployment,
) -> Result<PodPlan, ServingPlanError> {
    let runtime = ServingRuntime::Builtin;
    let mut plan = PodPlan::default();
    let base = pod_source(&model.base, runtime)?;
    let base = plan.builtin_source(base);
    let mut args = vec!["serve".to_owned(), "--model".to_owned(), base];
    for adapter in &model.adapters {
        let source = pod_source(&adapter.source, runtime)?;
        let path = plan.builtin_source(source);
        if model.image {
            // An image server takes its adapters at start.
            args.extend(["--adapter".to_owned(), format!("{}={path}", adapter.name)]);
        } else {
            // Loaded at runtime: the template holds only what reading them needs.
            plan.runtime_adapters.push(RuntimeAdapter {
                name: adapter.name.clone(),
                path,
                field: adapter.source.field.clone(),
            });
        }
    }
    if !model.image {
        args.extend([
            "--enable-runtime-lora".to_owned(),
            "--max-loras".to_owned(),
            MIN_MAX_LORAS.max(model.adapters.len()).to_string(),
            "--adapters-file".to_owned(),
            format!("{ADAPTERS_DIR}/{ADAPTERS_FILE_KEY}"),
        ]);
    }
    args.extend([
        "--served-model-name".to_owned(),
        model.base_name.clone(),
        "--host".to_owned(),
        "0.0.0.0".to_owned(),
        "--port".to_owned(),
        HTTP_PORT.to_string(),
        // s3:// folders download into the writable scratch.
        "--work-dir".to_owned(),
        WORK_DIR.to_owned(),
        "--device".to_owned(),
        device(&deployment.spec.resources).to_owned(),
    ]);
    plan.args = args;
    Ok(plan)
}

/// Whether the operator loads the adapters into the running pods: runtime `builtin`
/// serving a chat model (an image server takes them at start; vLLM's pods fetch them
/// in init containers).
pub fn loads_adapters_at_runtime(deployment: &ModelDeployment, model: &ServedModel) -> bool {
    deployment.spec.runtime == ServingRuntime::Builtin && !model.image
}

/// The adapters a `builtin` pod should serve, as the operator loads them.
pub fn runtime_adapters(
    deployment: &ModelDeployment,
    model: &ServedModel,
) -> Result<Vec<RuntimeAdapter>, ServingPlanError> {
    Ok(builtin_plan(model, deployment)?.runtime_adapters)
}

/// The Secret with the token the operator presents to a `builtin` deployment's pods to
/// load and unload adapters; their server reads it from the environment.
pub fn plan_runtime_lora_secret(
    deployment: &ModelDeployment,
    token: &str,
) -> Result<Secret, ServingPlanError> {
    let (name, namespace) = name_and_namespace(deployment)?;
    let secret_name = runtime_lora_secret_name(name);
    Ok(Secret {
        metadata: child_metadata(deployment, &secret_name, namespace),
        data: Some(BTreeMap::from([(
            RUNTIME_LORA_TOKEN_ENV.to_owned(),
            ByteString(token.as_bytes().to_vec()),
        )])),
        type_: Some("Opaque".to_owned()),
        ..Secret::default()
    })
}

/// The ConfigMap listing the adapters a `builtin` deployment's pods serve, as their
/// server's `--adapters-file` reads it: `[{"lora_name", "lora_path"}]`, what the
/// operator loads into running pods. The kubelet refreshes the mounted copy, so a
/// server restarted later starts with the adapters of that moment.
pub fn plan_adapters_config_map(
    deployment: &ModelDeployment,
    adapters: &[RuntimeAdapter],
) -> Result<ConfigMap, ServingPlanError> {
    let (name, namespace) = name_and_namespace(deployment)?;
    let listed: Vec<serde_json::Value> = (adapters.iter())
        .map(|a| serde_json::json!({"lora_name": a.name, "lora_path": a.path}))
        .collect();
    Ok(ConfigMap {
        metadata: child_metadata(deployment, &adapters_config_map_name(name), namespace),
        data: Some(BTreeMap::from([(
            ADAPTERS_FILE_KEY.to_owned(),
            serde_json::Value::Array(listed).to_string(),
        )])),
        ..ConfigMap::default()
    })
}

/// What says a deployment serves an image model, for messages.
fn why_images(deployment: &ModelDeployment) -> String {
    let model = &deployment.spec.model;
    match (
        deployment.spec.task,
        &model.base_model,
        &model.fine_tune_job,
    ) {
        (Some(_), _, _) => "spec.task text-to-image".to_owned(),
        (None, Some(base), _) => format!("spec.model.baseModel.name {}", base.name),
        (None, None, Some(job)) => format!("FineTuneJob {} trained text-to-image", job.name),
        (None, None, None) => "spec.model".to_owned(),
    }
}

/// vLLM OpenAI server arguments, with the downloads its init containers do.
fn vllm_plan(
    model: &ServedModel,
    deployment: &ModelDeployment,
) -> Result<PodPlan, ServingPlanError> {
    let runtime = ServingRuntime::Vllm;
    if model.image {
        return Err(ServingPlanError::ImageModelOnVllm(why_images(deployment)));
    }
    let mut plan = PodPlan::default();
    let base = pod_source(&model.base, runtime)?;
    let base = plan.vllm_source(base, "fetch-base".to_owned(), format!("{MODELS_DIR}/base"));
    let mut args = vec![
        "--model".to_owned(),
        base,
        "--served-model-name".to_owned(),
        model.base_name.clone(),
        "--host".to_owned(),
        "0.0.0.0".to_owned(),
        "--port".to_owned(),
        HTTP_PORT.to_string(),
    ];
    let gpus = deployment.spec.resources.gpus;
    if gpus > 1 {
        // vLLM uses one GPU unless told to shard the model over the others.
        args.extend(["--tensor-parallel-size".to_owned(), gpus.to_string()]);
    }
    if !model.adapters.is_empty() {
        let mut modules = Vec::new();
        for (index, adapter) in model.adapters.iter().enumerate() {
            let source = pod_source(&adapter.source, runtime)?;
            let dir = plan.vllm_source(
                source,
                format!("fetch-adapter-{index}"),
                format!("{MODELS_DIR}/adapters/{index}"),
            );
            modules.push(format!("{}={dir}", adapter.name));
        }
        args.extend([
            "--enable-lora".to_owned(),
            "--max-lora-rank".to_owned(),
            MAX_LORA_RANK.to_string(),
            // Every adapter can be in one batch, rather than taking turns.
            "--max-loras".to_owned(),
            model.adapters.len().to_string(),
            // One flag, then every module: argparse's nargs='+' keeps only the last
            // occurrence of a repeated flag.
            "--lora-modules".to_owned(),
        ]);
        args.extend(modules);
    }
    plan.args = args;
    Ok(plan)
}

fn http_probe(period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some("/health".to_owned()),
            port: IntOrString::String("http".to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(5),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

/// The serving `apps/v1 Deployment`.
pub fn plan_deployment(
    deployment: &ModelDeployment,
    model: &ServedModel,
    config: &OperatorConfig,
) -> Result<Deployment, ServingPlanError> {
    let (name, namespace) = name_and_namespace(deployment)?;
    check_image(deployment.spec.resources.image.as_deref(), config)?;
    let plan = match deployment.spec.runtime {
        ServingRuntime::Builtin => builtin_plan(model, deployment)?,
        ServingRuntime::Vllm => vllm_plan(model, deployment)?,
    };
    let credentials = credentials_env(model.credentials_secret.as_deref());
    let (mut server, image, command) = server_files(&deployment.spec, config);
    let mut fetch = fetch_files();
    if plan.reads_hub {
        add_model_cache(&mut server, &mut fetch, config);
    }
    add_claims(&mut server, &plan.claims);
    let init_containers = fetch_containers(&plan, fetch, credentials.clone(), config);
    let server_credentials = plan.server_reads_storage.then_some(credentials).flatten();
    let volumes = std::mem::take(&mut server.volumes);
    let mut container = server_container(
        image,
        command,
        plan.args,
        server,
        server_credentials,
        &deployment.spec.resources,
        config,
    );
    let mut volumes = volumes;
    let runtime_lora = loads_adapters_at_runtime(deployment, model);
    if runtime_lora {
        // Optional: a pod started before the operator first wrote the list serves the
        // base until the operator loads the adapters.
        volumes.push(Volume {
            name: ADAPTERS_VOLUME.to_owned(),
            config_map: Some(ConfigMapVolumeSource {
                name: adapters_config_map_name(name),
                optional: Some(true),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        });
        let mounts = container.volume_mounts.get_or_insert_default();
        mounts.push(mount(ADAPTERS_VOLUME, ADAPTERS_DIR, true));
        *mounts = sorted_mounts(std::mem::take(mounts));
        container
            .env_from
            .get_or_insert_default()
            .push(EnvFromSource {
                secret_ref: Some(SecretEnvSource {
                    name: runtime_lora_secret_name(name),
                    optional: Some(false),
                }),
                ..EnvFromSource::default()
            });
    }
    let mut planned = deployment_around(
        deployment,
        name,
        namespace,
        config,
        init_containers,
        container,
        volumes,
    );
    if runtime_lora && let Some(pod) = planned.spec.as_mut().and_then(|s| s.template.spec.as_mut())
    {
        pod.readiness_gates = Some(vec![PodReadinessGate {
            condition_type: ADAPTERS_GATE.to_owned(),
        }]);
    }
    Ok(planned)
}

/// A container's environment and mounts, and the pod volumes they need.
struct ContainerFiles {
    env: Vec<EnvVar>,
    mounts: Vec<VolumeMount>,
    volumes: Vec<Volume>,
}

/// The server's scratch, caches and shared memory for its runtime, with the image
/// and command that runtime runs.
fn server_files(
    spec: &ModelDeploymentSpec,
    config: &OperatorConfig,
) -> (ContainerFiles, String, Option<Vec<String>>) {
    let resources = &spec.resources;
    // The downloaded model (builtin) or vLLM's caches; vLLM's model gets its own
    // volume of the same limit.
    let scratch = scratch_limit(resources, None, config);
    let mut files = ContainerFiles {
        env: vec![env("HOME", WORK_DIR)],
        mounts: vec![mount("work", WORK_DIR, false), mount("tmp", "/tmp", false)],
        volumes: vec![
            empty_dir_limited("work", scratch),
            empty_dir_limited("tmp", TMP_SIZE),
        ],
    };
    let image = |default: &str| {
        resources
            .image
            .clone()
            .unwrap_or_else(|| default.to_owned())
    };
    match spec.runtime {
        ServingRuntime::Builtin => {
            if resources.gpus > 0 {
                // burn-cuda compiles its kernels into a writable cache.
                let (volume, cache_mount, variable) = kernel_cache(config);
                files.volumes.push(volume);
                files.mounts.push(cache_mount);
                files.env.push(variable);
            }
            (files, image(&config.trainer_image), None)
        }
        ServingRuntime::Vllm => {
            // Caches under the writable scratch; a named user, because PyTorch asks for
            // one and the pod's uid has no passwd entry.
            files
                .env
                .push(env("HF_HOME", &format!("{WORK_DIR}/huggingface")));
            files.env.push(env("USER", "anneal"));
            files.mounts.push(mount("models", MODELS_DIR, true));
            files.volumes.push(empty_dir_limited("models", scratch));
            // PyTorch's workers share tensors through /dev/shm, which is 64 MiB by default.
            files.mounts.push(mount("dshm", "/dev/shm", false));
            files.volumes.push(Volume {
                name: "dshm".to_owned(),
                empty_dir: Some(EmptyDirVolumeSource {
                    medium: Some("Memory".to_owned()),
                    size_limit: None,
                }),
                ..Volume::default()
            });
            let command = ["python3", "-m", "vllm.entrypoints.openai.api_server"]
                .map(str::to_owned)
                .to_vec();
            (files, image(&config.vllm_image), Some(command))
        }
    }
}

/// What every fetch container mounts (its volumes are the server's).
fn fetch_files() -> ContainerFiles {
    ContainerFiles {
        env: vec![env("HOME", WORK_DIR)],
        mounts: vec![
            mount("models", MODELS_DIR, false),
            mount("work", WORK_DIR, false),
            mount("tmp", "/tmp", false),
        ],
        volumes: Vec::new(),
    }
}

/// Hub models: the cache (a claim, or the pod's scratch) in the server and in every
/// fetch, which links the models folder into it.
fn add_model_cache(
    server: &mut ContainerFiles,
    fetch: &mut ContainerFiles,
    config: &OperatorConfig,
) {
    let (volume, variables) = model_cache(config);
    if let Some((volume, cache_mount)) = volume {
        server.volumes.push(volume);
        server.mounts.push(cache_mount.clone());
        fetch.mounts.push(cache_mount);
    }
    server.env.extend(variables.iter().cloned());
    fetch.env.extend(variables);
}

/// The `pvc://` claims the server reads, mounted read-only.
fn add_claims(server: &mut ContainerFiles, claims: &[String]) {
    for (index, claim) in claims.iter().enumerate() {
        let volume = format!("pvc-{index}");
        server
            .mounts
            .push(mount(&volume, &format!("{PVC_DIR}/{claim}"), true));
        server.volumes.push(Volume {
            name: volume,
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.clone(),
                read_only: Some(true),
            }),
            ..Volume::default()
        });
    }
}

/// One `trainer fetch` init container per source the server needs downloaded.
fn fetch_containers(
    plan: &PodPlan,
    mut fetch: ContainerFiles,
    credentials: Option<Vec<EnvFromSource>>,
    config: &OperatorConfig,
) -> Vec<Container> {
    fetch.env.sort_by(|a, b| a.name.cmp(&b.name));
    plan.fetches
        .iter()
        .map(|(fetch_name, uri, dir)| Container {
            name: fetch_name.clone(),
            image: Some(config.fetch_image.clone()),
            args: Some(vec!["fetch".to_owned(), uri.clone(), dir.clone()]),
            env: Some(fetch.env.clone()),
            env_from: credentials.clone(),
            volume_mounts: Some(fetch.mounts.clone()),
            security_context: Some(container_security()),
            termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
            ..Container::default()
        })
        .collect()
}

/// The server container, with its port and probes.
fn server_container(
    image: String,
    command: Option<Vec<String>>,
    args: Vec<String>,
    mut files: ContainerFiles,
    credentials: Option<Vec<EnvFromSource>>,
    resources: &ResourcesSpec,
    config: &OperatorConfig,
) -> Container {
    files.env.sort_by(|a, b| a.name.cmp(&b.name));
    Container {
        name: SERVER_CONTAINER.to_owned(),
        image: Some(image),
        command,
        args: Some(args),
        ports: Some(vec![ContainerPort {
            name: Some("http".to_owned()),
            container_port: HTTP_PORT,
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
        env: Some(files.env),
        env_from: credentials,
        volume_mounts: Some(sorted_mounts(files.mounts)),
        resources: Some(gpu_resources(resources, config)),
        // Loading a model takes minutes: the startup probe holds the others off until
        // /health answers, readiness keeps a busy or broken pod out of the Service, and
        // liveness restarts a server whose engine died.
        startup_probe: Some(http_probe(STARTUP_PERIOD_SECONDS, STARTUP_FAILURES)),
        readiness_probe: Some(http_probe(5, 3)),
        liveness_probe: Some(http_probe(20, 6)),
        security_context: Some(container_security()),
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        ..Container::default()
    }
}

/// The `apps/v1 Deployment` around the server (and its fetches), with the server's
/// volumes.
fn deployment_around(
    deployment: &ModelDeployment,
    name: &str,
    namespace: &str,
    config: &OperatorConfig,
    init_containers: Vec<Container>,
    server: Container,
    volumes: Vec<Volume>,
) -> Deployment {
    let spec = &deployment.spec;
    let labels = pod_labels(name);
    Deployment {
        metadata: child_metadata(deployment, name, namespace),
        spec: Some(DeploymentSpec {
            replicas: Some(i32::try_from(spec.replicas).unwrap_or(i32::MAX)),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                match_expressions: None,
            },
            progress_deadline_seconds: Some(PROGRESS_DEADLINE_SECONDS),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    // The servers never talk to the API server.
                    automount_service_account_token: Some(false),
                    termination_grace_period_seconds: Some(GRACE_SECONDS),
                    node_selector: spec.resources.node_selector.clone(),
                    tolerations: gpu_tolerations(&spec.resources, config),
                    security_context: Some(pod_security()),
                    init_containers: (!init_containers.is_empty()).then_some(init_containers),
                    containers: vec![server],
                    volumes: Some(sorted_volumes(volumes)),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

/// Mounts in a stable order (by path), so a reconcile never plans a different list.
fn sorted_mounts(mut mounts: Vec<VolumeMount>) -> Vec<VolumeMount> {
    mounts.sort_by(|a, b| a.mount_path.cmp(&b.mount_path));
    mounts
}

fn sorted_volumes(mut volumes: Vec<Volume>) -> Vec<Volume> {
    volumes.sort_by(|a, b| a.name.cmp(&b.name));
    volumes
}

#[cfg(test)]
mod tests;
