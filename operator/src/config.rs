//! How the operator is configured: the trainer and vLLM images, default object
//! storage, how trainers reach the report endpoint. Read once at start (flags or
//! environment, as the Helm chart sets them) and shared by every reconcile.

use anneal_crds::common::{DEFAULT_GPU_RESOURCE_NAME, ResourcesSpec};

/// Settings the planned children depend on.
#[derive(Clone, Debug, PartialEq)]
pub struct OperatorConfig {
    /// Image of trainer pods, unless a job names its own in `spec.resources.image`; also
    /// the image of `trainer serve` pods and of the init containers that fetch models.
    pub trainer_image: String,
    /// Image of ModelDeployments with `runtime: vllm` (vLLM's OpenAI server).
    pub vllm_image: String,
    /// Object storage prefix for jobs without `spec.output`.
    pub default_output_uri: Option<String>,
    /// Secret (in the job's namespace) with storage credentials, for jobs without
    /// `spec.output.credentialsSecret`.
    pub default_credentials_secret: Option<String>,
    /// Base URL trainers post events to, e.g. `http://anneal-operator.anneal-system.svc:8080`.
    pub report_base_url: String,
    /// Retries of a trainer pod that fails with a retryable error (exit 1); evictions
    /// and preemptions are not counted.
    pub trainer_backoff_limit: i32,
    /// The GPU extended resource (e.g. `amd.com/gpu`) of pods whose
    /// `resources.gpuResourceName` is the API's default, `nvidia.com/gpu`.
    pub default_gpu_resource_name: String,
    /// Time a stopping trainer gets to write its checkpoint after SIGTERM.
    pub trainer_grace_seconds: i64,
}

impl Default for OperatorConfig {
    fn default() -> Self {
        Self {
            trainer_image: "ghcr.io/anneal-dev/anneal-trainer:0.1.0".to_owned(),
            // Pinned: the serving pods' flags are written against this version.
            vllm_image: "vllm/vllm-openai:v0.11.0".to_owned(),
            default_output_uri: None,
            default_credentials_secret: None,
            report_base_url: "http://anneal-operator.anneal-system.svc:8080".to_owned(),
            trainer_backoff_limit: 3,
            default_gpu_resource_name: DEFAULT_GPU_RESOURCE_NAME.to_owned(),
            trainer_grace_seconds: 300,
        }
    }
}

impl OperatorConfig {
    /// The GPU resource a pod with `resources` asks for: the spec's, unless it is the
    /// API's default, which this operator's `default_gpu_resource_name` replaces.
    pub fn gpu_resource_name<'a>(&'a self, resources: &'a ResourcesSpec) -> &'a str {
        if resources.gpu_resource_name == DEFAULT_GPU_RESOURCE_NAME {
            &self.default_gpu_resource_name
        } else {
            &resources.gpu_resource_name
        }
    }
}
