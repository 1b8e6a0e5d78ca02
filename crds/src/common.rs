//! Pieces both kinds share: where a base model comes from, and how a pod is
//! placed on GPU nodes.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Toleration;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use crate::limits::{GPUS_MAX, NAME_MAX, SOURCE_URI_PATTERN, URI_MAX};

/// The model to start from: a Hugging Face-format folder (config.json,
/// tokenizer.json, *.safetensors).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(
    validation = Rule::new("has(self.source) || has(self.fineTuneJob) || self.name.matches('^[A-Za-z0-9_][-_.A-Za-z0-9]*/[A-Za-z0-9_][-_.A-Za-z0-9]*$')").message("source is required unless name is a hub repository (ORG/NAME)").field_path(".source"),
    validation = Rule::new("!(has(self.source) && has(self.fineTuneJob))").message("set source or fineTuneJob, not both").field_path(".fineTuneJob"),
)]
#[serde(rename_all = "camelCase")]
pub struct BaseModelSpec {
    /// Model name as users know it, e.g. `Qwen/Qwen2.5-7B-Instruct`; it becomes
    /// part of the fine-tuned model id. Without a `source`, an `ORG/NAME` name is
    /// downloaded from Hugging Face (`hf://ORG/NAME`).
    #[schemars(length(min = 1, max = NAME_MAX))]
    pub name: String,
    /// Where the folder is: `s3://`, `gs://`, `az://`, `pvc://CLAIM/path`, `file://`
    /// (local mode), `hf://ORG/NAME[@REVISION]` or `modelscope://ORG/NAME[@REVISION]`
    /// (a model hub, through the install's model cache). Default: the hub form of `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = URI_MAX), pattern(SOURCE_URI_PATTERN))]
    pub source: Option<String>,
    /// FineTuneJobs only: start from another FineTuneJob's checkpoint (`final`,
    /// `best` or a name) in the same namespace instead of `source`, e.g. DPO on an SFT
    /// result. A LoRA checkpoint's adapter is trained further (same rank, alpha and
    /// targets); a fully trained checkpoint is the base. `name` must be the base
    /// model that job trained. The job waits, Pending, until that job has ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fine_tune_job: Option<crate::modeldeployment::FineTuneJobRef>,
}

impl BaseModelSpec {
    /// Where the folder is: `source`, else the hub form of `name` (`None` when the
    /// name is not `ORG/NAME`; validation refuses that).
    pub fn source_uri(&self) -> Option<String> {
        self.source
            .clone()
            .or_else(|| crate::hub::hub_form_of_name(&self.name))
    }
}

/// Where and how big the pods are.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourcesSpec {
    /// GPUs per pod; 0 runs on the CPU backend. A chat job on several trains
    /// data-parallel when its model fits one GPU, else with its layers placed across
    /// them; an image job takes one.
    #[serde(default = "default_gpus")]
    #[schemars(range(max = GPUS_MAX))]
    pub gpus: u32,
    /// The extended resource the GPUs are requested as.
    #[serde(default = "default_gpu_resource_name")]
    #[schemars(length(min = 1, max = NAME_MAX))]
    pub gpu_resource_name: String,
    /// Node labels the pod must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Extra tolerations; the GPU resource's own `NoSchedule` toleration is added for you.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
    /// Memory limit of the pod, e.g. `64Gi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Quantity>,
    /// Size limit of the pod's scratch disk (`/work`: the downloaded model, datasets
    /// and checkpoints on their way to storage), e.g. `300Gi`. Default: from the
    /// model's size where the operator knows it, else the install's `scratchSize`.
    /// A pod that writes past it is evicted, so one job cannot fill its node's disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scratch: Option<Quantity>,
    /// Container image to run instead of the operator's configured one; only images the
    /// install allows (its `allowedImages` patterns) run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = URI_MAX))]
    pub image: Option<String>,
}

impl Default for ResourcesSpec {
    fn default() -> Self {
        Self {
            gpus: default_gpus(),
            gpu_resource_name: default_gpu_resource_name(),
            node_selector: None,
            tolerations: None,
            memory: None,
            scratch: None,
            image: None,
        }
    }
}

fn default_gpus() -> u32 {
    1
}

/// The GPU extended resource a pod asks for when `resources.gpuResourceName` is not
/// given (the operator's `--default-gpu-resource-name` may stand in for it).
pub const DEFAULT_GPU_RESOURCE_NAME: &str = "nvidia.com/gpu";

fn default_gpu_resource_name() -> String {
    DEFAULT_GPU_RESOURCE_NAME.to_owned()
}
