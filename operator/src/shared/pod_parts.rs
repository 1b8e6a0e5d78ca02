//! Pieces every pod the operator plans shares: the hardened security contexts, GPU
//! requests with their toleration, the kernel cache of pods that run burn-cuda, and
//! small builders for env vars, mounts and size-limited scratch volumes. The trainer
//! Job and the serving Deployment both build from these, so a pod of either kind is
//! placed, limited and locked down the same way.

use std::collections::BTreeMap;

use anneal_crds::common::ResourcesSpec;
use anneal_crds::memory_plan::{ByteSize, GIB};
use k8s_openapi::api::core::v1::{
    Capabilities, EmptyDirVolumeSource, EnvFromSource, EnvVar, PersistentVolumeClaimVolumeSource,
    PodSecurityContext, ResourceRequirements, SeccompProfile, SecretEnvSource, SecretVolumeSource,
    SecurityContext, Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::config::OperatorConfig;

/// Where `pvc://CLAIM/...` sources are mounted in a pod (one folder per claim).
pub const PVC_DIR: &str = "/mnt/pvc";

/// Where a pod running `trainer` on CUDA keeps the kernels burn-cuda compiles and its
/// autotune results (`ANNEAL_KERNEL_CACHE`): the root file system is read-only.
pub const KERNEL_CACHE_DIR: &str = "/var/cache/anneal/kernels";
/// Where the model cache claim is mounted.
pub const MODEL_CACHE_DIR: &str = "/var/cache/anneal/models";

/// Non-root user of Anneal's images (and the user other images run as in its pods).
pub const POD_UID: i64 = 65532;

/// No privilege escalation, read-only root file system, every capability dropped:
/// scratch space comes from emptyDir mounts.
pub fn container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            add: None,
        }),
        ..SecurityContext::default()
    }
}

/// Runs every container as [`POD_UID`] with the runtime's default seccomp profile.
pub fn pod_security() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(POD_UID),
        run_as_group: Some(POD_UID),
        fs_group: Some(POD_UID),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            localhost_profile: None,
        }),
        ..PodSecurityContext::default()
    }
}

/// GPUs as a limit on their extended resource (the scheduler treats it as the request
/// too) and memory as both request and limit; nothing for a CPU pod without a memory bound.
pub fn gpu_resources(resources: &ResourcesSpec, config: &OperatorConfig) -> ResourceRequirements {
    let mut limits = BTreeMap::new();
    let mut requests = BTreeMap::new();
    if resources.gpus > 0 {
        limits.insert(
            config.gpu_resource_name(resources).to_owned(),
            k8s_openapi::apimachinery::pkg::api::resource::Quantity(resources.gpus.to_string()),
        );
    }
    if let Some(memory) = &resources.memory {
        limits.insert("memory".to_owned(), memory.clone());
        requests.insert("memory".to_owned(), memory.clone());
    }
    ResourceRequirements {
        limits: (!limits.is_empty()).then_some(limits),
        requests: (!requests.is_empty()).then_some(requests),
        ..ResourceRequirements::default()
    }
}

/// The spec's tolerations, plus one for the GPU resource's own taint when GPUs are asked for.
pub fn gpu_tolerations(
    resources: &ResourcesSpec,
    config: &OperatorConfig,
) -> Option<Vec<Toleration>> {
    let mut tolerations = resources.tolerations.clone().unwrap_or_default();
    if resources.gpus > 0 {
        // GPU nodes are commonly tainted with their resource name; a pod that asks for
        // the GPU should not also have to know the taint.
        tolerations.push(Toleration {
            key: Some(config.gpu_resource_name(resources).to_owned()),
            operator: Some("Exists".to_owned()),
            effect: Some("NoSchedule".to_owned()),
            ..Toleration::default()
        });
    }
    (!tolerations.is_empty()).then_some(tolerations)
}

/// The `--device` a pod's process runs on: exactly what it asked the scheduler for
/// (`auto` could pick up a GPU the node's runtime exposes without a request).
pub fn device(resources: &ResourcesSpec) -> &'static str {
    if resources.gpus > 0 { "cuda" } else { "cpu" }
}

/// The kernel cache of a pod that runs `trainer` on CUDA: its volume (the operator's
/// claim, else an emptyDir, which outlives container restarts but not the pod), where
/// it is mounted, and the variable that tells the trainer.
pub fn kernel_cache(config: &OperatorConfig) -> (Volume, VolumeMount, EnvVar) {
    let name = "kernel-cache";
    let volume = match &config.kernel_cache_claim {
        Some(claim) => Volume {
            name: name.to_owned(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.clone(),
                read_only: Some(false),
            }),
            ..Volume::default()
        },
        None => empty_dir_limited(name, KERNEL_CACHE_SIZE),
    };
    (
        volume,
        mount(name, KERNEL_CACHE_DIR, false),
        env("ANNEAL_KERNEL_CACHE", KERNEL_CACHE_DIR),
    )
}

/// Where a pod keeps hub models: the operator's claim mounted read-write, else the
/// pod's scratch disk (`/work`, which the scratch plan sizes for the model).
pub fn model_cache(config: &OperatorConfig) -> (Option<(Volume, VolumeMount)>, Vec<EnvVar>) {
    let name = "model-cache";
    let (volume, dir) = match &config.model_cache_claim {
        Some(claim) => (
            Some((
                Volume {
                    name: name.to_owned(),
                    persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                        claim_name: claim.clone(),
                        read_only: Some(false),
                    }),
                    ..Volume::default()
                },
                mount(name, MODEL_CACHE_DIR, false),
            )),
            MODEL_CACHE_DIR,
        ),
        None => (None, "/work/model-cache"),
    };
    let mut variables = vec![env("ANNEAL_MODEL_CACHE", dir)];
    variables.extend(hub_endpoint_env(config));
    (volume, variables)
}

/// The install's hub endpoints, for any pod that talks to a hub. Set here, they win
/// over the same keys in a credentials Secret: a tenant takes the install's mirror.
pub fn hub_endpoint_env(config: &OperatorConfig) -> Vec<EnvVar> {
    let mut variables = Vec::new();
    if let Some(endpoint) = &config.hf_endpoint {
        variables.push(env("HF_ENDPOINT", endpoint));
    }
    if let Some(endpoint) = &config.modelscope_endpoint {
        variables.push(env("MODELSCOPE_ENDPOINT", endpoint));
    }
    variables
}

/// The storage credentials Secret as environment (`AWS_*` keys), required to exist.
pub fn credentials_env(secret: Option<&str>) -> Option<Vec<EnvFromSource>> {
    secret.map(|name| {
        vec![EnvFromSource {
            secret_ref: Some(SecretEnvSource {
                name: name.to_owned(),
                optional: Some(false),
            }),
            ..EnvFromSource::default()
        }]
    })
}

pub fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.to_owned()),
        value_from: None,
    }
}

pub fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: Some(read_only),
        ..VolumeMount::default()
    }
}

/// Size limit of a pod's own kernel cache (without the operator's claim): compiled
/// kernels and autotune results take tens of megabytes a model.
pub const KERNEL_CACHE_SIZE: ByteSize = ByteSize::gib(4);

/// Size limit of a pod's `/tmp`: the trainer and `trainer serve` write their work to
/// `/work`; `/tmp` takes only what libraries put there.
pub const TMP_SIZE: ByteSize = ByteSize::gib(2);

/// An emptyDir the kubelet evicts the pod for writing more than `limit` into.
pub fn empty_dir_limited(name: &str, limit: ByteSize) -> Volume {
    Volume {
        name: name.to_owned(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: None,
            size_limit: Some(quantity_of(limit)),
        }),
        ..Volume::default()
    }
}

/// `limit` as a Kubernetes quantity: whole GiB as `NGi`, else bytes.
pub fn quantity_of(limit: ByteSize) -> Quantity {
    let bytes = limit.bytes();
    Quantity(if bytes.is_multiple_of(GIB) {
        format!("{}Gi", bytes / GIB)
    } else {
        bytes.to_string()
    })
}

/// The size limit of a pod's `/work`: the spec's `resources.scratch`, else `planned`
/// (from the model's size), else the operator's `--scratch-size`.
pub fn scratch_limit(
    resources: &ResourcesSpec,
    planned: Option<ByteSize>,
    config: &OperatorConfig,
) -> ByteSize {
    resources
        .scratch
        .as_ref()
        .and_then(|q| q.0.parse::<ByteSize>().ok())
        .or(planned)
        .unwrap_or(config.scratch_size)
}

/// What every Anneal pod mounts: its own Secret read-only at `dir` (through the volume
/// `name`), a `/work` scratch disk limited to `scratch`, and a small `/tmp`.
pub fn secret_work_and_tmp(
    name: &str,
    secret: String,
    dir: &str,
    scratch: ByteSize,
) -> (Vec<VolumeMount>, Vec<Volume>) {
    let mounts = vec![
        mount(name, dir, true),
        mount("work", "/work", false),
        mount("tmp", "/tmp", false),
    ];
    let volumes = vec![
        Volume {
            name: name.to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret),
                default_mode: Some(0o440),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        },
        empty_dir_limited("work", scratch),
        empty_dir_limited("tmp", TMP_SIZE),
    ];
    (mounts, volumes)
}

/// A ConfigMap key mounted as the one file `{dir}/{key}`, read-only, through the
/// volume `name`: a dataset given inline.
pub fn config_map_file(
    name: &str,
    config_map: &anneal_crds::finetunejob::ConfigMapDataset,
    dir: &str,
) -> (Volume, VolumeMount) {
    let volume = Volume {
        name: name.to_owned(),
        config_map: Some(k8s_openapi::api::core::v1::ConfigMapVolumeSource {
            name: config_map.name.clone(),
            items: Some(vec![k8s_openapi::api::core::v1::KeyToPath {
                key: config_map.key.clone(),
                path: config_map.key.clone(),
                mode: None,
            }]),
            optional: Some(false),
            ..Default::default()
        }),
        ..Volume::default()
    };
    (volume, mount(name, dir, true))
}
