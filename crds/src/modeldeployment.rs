//! `ModelDeployment`: serve a fine-tuned checkpoint (or a base model with
//! adapters) behind an OpenAI-compatible endpoint.
//!
//! Not called `Deployment`, so that it never shadows `apps/v1 Deployment` in kubectl.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::common::{BaseModelSpec, ResourcesSpec};
use crate::finetunejob::Task;
use crate::limits::{ADAPTER_URI_PATTERN, ADAPTERS_MAX, NAME_MAX, REPLICAS_MAX, URI_MAX};

/// Serve a fine-tuned model.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "anneal.dev",
    version = "v1alpha1",
    kind = "ModelDeployment",
    namespaced,
    shortname = "mdep",
    category = "anneal",
    status = "ModelDeploymentStatus",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Model","type":"string","jsonPath":".status.modelId"}"#,
    printcolumn = r#"{"name":"Ready","type":"integer","jsonPath":".status.readyReplicas"}"#,
    printcolumn = r#"{"name":"Endpoint","type":"string","jsonPath":".status.endpoint"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ModelDeploymentSpec {
    pub model: ModelSource,
    /// What the model does: `chat`, or `text-to-image` (a FLUX.1 pipeline: served by
    /// `runtime: builtin` at `/v1/images/generations`, its adapters taken at start).
    /// Default for a `model.baseModel`: `text-to-image` when the last part of its name
    /// contains `flux` (`black-forest-labs/FLUX.1-dev`), else `chat`; set it for a model
    /// whose name does not say. A `model.fineTuneJob` serves what that job trained (its
    /// `spec.task`); another value here is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "served_task_schema")]
    pub task: Option<Task>,
    /// Name clients pass as `model`; default: the model id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = NAME_MAX))]
    pub served_model_name: Option<String>,
    /// Serving pods (the capacity).
    #[serde(default = "default_replicas")]
    #[schemars(range(max = REPLICAS_MAX))]
    pub replicas: u32,
    #[serde(default)]
    pub resources: ResourcesSpec,
    #[serde(default)]
    pub runtime: ServingRuntime,
}

/// `spec.task` in the CRD: `Task`'s values, nullable, described by the field's own
/// comment (as an `Option` of an enum, it would carry the type's).
fn served_task_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = generator.subschema_for::<Task>();
    schema.insert("nullable".to_owned(), true.into());
    schema
}

fn default_replicas() -> u32 {
    1
}

/// What to serve: a FineTuneJob's checkpoint, or a base model with adapters.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[x_kube(
    validation = Rule::new("has(self.fineTuneJob) != has(self.baseModel)").message("set exactly one of model.fineTuneJob and model.baseModel"),
    validation = Rule::new("!has(self.adapters) || size(self.adapters) == 0 || has(self.baseModel)").message("model.adapters go with model.baseModel; a fineTuneJob brings its own adapter").field_path(".adapters"),
)]
#[serde(rename_all = "camelCase")]
pub struct ModelSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fine_tune_job: Option<FineTuneJobRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_model: Option<BaseModelSpec>,
    /// LoRA adapters served beside the base model, each under its own name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = ADAPTERS_MAX))]
    pub adapters: Vec<AdapterSpec>,
}

/// A FineTuneJob in the same namespace and which of its checkpoints to serve.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct FineTuneJobRef {
    /// Name of the FineTuneJob, in the same namespace.
    #[schemars(length(min = 1, max = NAME_MAX))]
    pub name: String,
    /// `final`, `best` (lowest validation loss) or a checkpoint's name.
    #[serde(default = "default_checkpoint")]
    #[schemars(length(min = 1, max = NAME_MAX))]
    pub checkpoint: String,
}

fn default_checkpoint() -> String {
    "final".to_owned()
}

/// A LoRA adapter folder in PEFT format.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdapterSpec {
    /// The model name clients ask for.
    #[schemars(length(min = 1, max = NAME_MAX))]
    pub name: String,
    /// Where the adapter folder is: object storage, `pvc://CLAIM/path`, `file://`, or a
    /// hub repository (`hf://ORG/NAME[@REVISION]`, `modelscope://...`).
    #[schemars(length(min = 1, max = URI_MAX), pattern(ADAPTER_URI_PATTERN))]
    pub uri: String,
}

/// The server that runs in the pods.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ServingRuntime {
    /// Anneal's own `trainer serve`.
    #[default]
    Builtin,
    /// vLLM's OpenAI server with `--enable-lora`.
    Vllm,
}

impl ModelDeploymentSpec {
    /// Why the spec's GPUs do not suit its runtime: `trainer serve` computes on one GPU,
    /// so more would sit idle.
    pub fn idle_gpus(&self) -> Option<String> {
        let gpus = self.resources.gpus;
        (self.runtime == ServingRuntime::Builtin && gpus > 1).then(|| {
            format!(
                "runtime builtin serves on one GPU, got {gpus}: use runtime: vllm to shard a model across GPUs (--tensor-parallel-size), or gpus: 1"
            )
        })
    }
}

/// Where a deployment is in its life.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum DeploymentPhase {
    Pending,
    Loading,
    Ready,
    Failed,
}

/// One serving pod, as the operator last saw it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaStatus {
    /// The pod's name.
    pub pod: String,
    /// The adapter names it answers to, sorted.
    #[serde(default)]
    pub adapters: Vec<String>,
    /// Whether it serves exactly the adapters of the spec.
    #[serde(default)]
    pub in_sync: bool,
    /// What went wrong loading or unloading an adapter on it, if something did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// `status` of a ModelDeployment, written by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelDeploymentStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<DeploymentPhase>,
    /// Serving pods that answer `/health`.
    #[serde(default)]
    pub ready_replicas: u32,
    /// e.g. `http://NAME.NS.svc:8000/v1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The served checkpoint's model id, e.g. `ft:qwen2.5-7b-instruct:my-job:ckpt-600`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_id: Option<String>,
    /// `ModelResolved`, `Available`, and for runtime `builtin` `AdaptersLoaded`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// What each serving pod serves (runtime `builtin`, whose adapters the operator
    /// loads and unloads while the pods run), by pod name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<ReplicaStatus>,
    /// The `metadata.generation` of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// A human-readable account of the current phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
