//! How the operator is configured: the trainer, fetch and vLLM images, default object
//! storage, the GPU pods' kernel cache, how trainers reach the report endpoint. Read once at start (flags or
//! environment, as the Helm chart sets them: this struct is part of the command line)
//! and shared by every reconcile. Each default is written once, on its flag.

use anneal_crds::common::{DEFAULT_GPU_RESOURCE_NAME, ResourcesSpec};
use anneal_crds::memory_plan::ByteSize;
use clap::{Args, Command, FromArgMatches};

/// Settings the planned children depend on.
#[derive(Args, Clone, Debug, PartialEq)]
pub struct OperatorConfig {
    /// Image of trainer pods, unless a job names its own in spec.resources.image; also
    /// the image of `trainer serve` pods (runtime builtin).
    #[arg(
        long,
        env = "ANNEAL_TRAINER_IMAGE",
        default_value = "ghcr.io/anneal-dev/anneal-trainer:0.1.0"
    )]
    pub trainer_image: String,
    /// Image of the init containers that download models and adapters (`trainer
    /// fetch`) for runtime vllm: the trainer without CUDA, a small image.
    #[arg(
        long,
        env = "ANNEAL_FETCH_IMAGE",
        default_value = "ghcr.io/anneal-dev/anneal-fetch:0.1.0"
    )]
    pub fetch_image: String,
    /// Image of ModelDeployments with `runtime: vllm` (vLLM's OpenAI server).
    // Pinned: the serving pods' flags are written against this version.
    #[arg(
        long,
        env = "ANNEAL_VLLM_IMAGE",
        default_value = "vllm/vllm-openai:v0.11.0"
    )]
    pub vllm_image: String,
    /// Images, besides the trainer and vLLM images above, that jobs and deployments may
    /// name in spec.resources.image: comma-separated patterns where `*` matches any
    /// characters (e.g. registry.corp.example/ml/*). Default: none.
    #[arg(long, env = "ANNEAL_ALLOWED_IMAGES", value_delimiter = ',', value_parser = crate::shared::image_policy::parse_image_pattern)]
    pub allowed_images: Vec<String>,
    /// GPU extended resource for jobs and deployments that keep the default
    /// resources.gpuResourceName (nvidia.com/gpu), e.g. amd.com/gpu.
    #[arg(long, env = "ANNEAL_DEFAULT_GPU_RESOURCE_NAME", default_value = DEFAULT_GPU_RESOURCE_NAME)]
    pub default_gpu_resource_name: String,
    /// S3-compatible endpoints (e.g. https://minio.storage.svc:9000, comma-separated)
    /// the operator itself may connect to with a job's credentials, to check its
    /// datasets and model and read its run's events. A job whose credentials name
    /// another endpoint is checked by its trainer pod instead. AWS's own S3 (no
    /// endpoint set) is always allowed.
    #[arg(long, env = "ANNEAL_ALLOWED_STORAGE_ENDPOINTS", value_delimiter = ',')]
    pub allowed_storage_endpoints: Vec<String>,
    /// Hosts (`host` or `host:port`, comma-separated) a FineTuneJob's `spec.notify`
    /// URLs may name: the operator posts there from inside the cluster, so no tenant
    /// may point it at another service. Empty: no notifications are sent.
    #[arg(long, env = "ANNEAL_NOTIFY_ALLOWED_HOSTS", value_delimiter = ',')]
    pub notify_allowed_hosts: Vec<String>,
    /// An MLflow tracking server every trainer logs to when its job sets no
    /// `spec.tracking` (the experiment is then the job's name); passed to trainer pods
    /// as ANNEAL_MLFLOW_TRACKING_URI.
    #[arg(long, env = "ANNEAL_MLFLOW_TRACKING_URI")]
    pub mlflow_tracking_uri: Option<String>,
    /// Let the operator read with its own cloud identity (its node's instance profile,
    /// its ServiceAccount's role) for jobs whose storage settings have no static keys.
    /// Off: it reads those unsigned (public buckets only), so no job borrows the
    /// operator's identity to read a bucket its author cannot.
    #[arg(long, env = "ANNEAL_STORAGE_OPERATOR_IDENTITY", default_value_t = false, action = clap::ArgAction::Set)]
    pub storage_operator_identity: bool,
    /// Object storage prefix for jobs without spec.output (s3://bucket/prefix).
    #[arg(long, env = "ANNEAL_DEFAULT_OUTPUT_URI")]
    pub default_output_uri: Option<String>,
    /// Secret with storage credentials, in each job's namespace, for jobs that name none
    /// in spec.output.credentialsSecret.
    #[arg(long, env = "ANNEAL_DEFAULT_CREDENTIALS_SECRET")]
    pub default_credentials_secret: Option<String>,
    /// URL trainer pods reach this operator's report endpoint at.
    #[arg(
        long,
        env = "ANNEAL_REPORT_BASE_URL",
        default_value = "http://anneal-operator.anneal-system.svc:8080"
    )]
    pub report_base_url: String,
    /// Retries of a trainer pod that fails with a retryable error (exit 1); evictions
    /// and preemptions are not counted.
    #[arg(long, env = "ANNEAL_TRAINER_BACKOFF_LIMIT", default_value_t = 3)]
    pub trainer_backoff_limit: i32,
    /// PersistentVolumeClaim, in each job's or deployment's namespace, that GPU trainer
    /// and `trainer serve` pods keep compiled kernels and autotune results on, so later
    /// pods skip compiling them; it must allow ReadWriteMany when pods on several nodes
    /// share it. Default: an emptyDir per pod.
    #[arg(long, env = "ANNEAL_KERNEL_CACHE_CLAIM")]
    pub kernel_cache_claim: Option<String>,
    /// PersistentVolumeClaim, in each job's or deployment's namespace, that trainer and
    /// serving pods keep models from `hf://` and `modelscope://` on, keyed by repository
    /// and commit, so the second job on a model downloads nothing; ReadWriteMany when
    /// pods on several nodes share it. Default: each pod's scratch disk.
    #[arg(long, env = "ANNEAL_MODEL_CACHE_CLAIM")]
    pub model_cache_claim: Option<String>,
    /// Hugging Face endpoint (a mirror or an air-gapped proxy) for the operator's checks
    /// and every pod; pods get it as HF_ENDPOINT. Default: https://huggingface.co.
    #[arg(long, env = "ANNEAL_HF_ENDPOINT")]
    pub hf_endpoint: Option<String>,
    /// ModelScope endpoint, as `--hf-endpoint`; pods get it as MODELSCOPE_ENDPOINT.
    /// Default: https://www.modelscope.cn.
    #[arg(long, env = "ANNEAL_MODELSCOPE_ENDPOINT")]
    pub modelscope_endpoint: Option<String>,
    /// Memory of one GPU on the nodes trainers run on (80GiB for H100 and A100 80GB,
    /// 141GiB for H200): a job whose memory plan needs more is refused in Validating.
    #[arg(long, env = "ANNEAL_GPU_MEMORY", default_value = "80GiB")]
    pub gpu_memory: ByteSize,
    /// Dense bf16 peak TFLOPS of one GPU on the trainers' nodes (989 for H100, 312
    /// for A100): with --estimate-utilization, what `status.estimate` turns a job's
    /// FLOPs into time with.
    #[arg(long, env = "ANNEAL_GPU_TFLOPS", default_value_t = 989.0)]
    pub gpu_tflops: f64,
    /// Share of that peak a training step reaches (its model FLOPs utilization).
    #[arg(long, env = "ANNEAL_ESTIMATE_UTILIZATION", default_value_t = 0.4)]
    pub estimate_utilization: f64,
    /// Price of one GPU-hour, in the install's currency: `status.estimate.cost`.
    /// Default: no cost, GPU-hours only.
    #[arg(long, env = "ANNEAL_PRICE_PER_GPU_HOUR")]
    pub price_per_gpu_hour: Option<f64>,
    /// Memory limit (and request) of a CPU trainer pod whose spec.resources.memory is
    /// unset; the trainer plans its micro-batch for its pod's limit either way.
    #[arg(long, env = "ANNEAL_CPU_TRAINER_MEMORY", default_value = "8GiB")]
    pub cpu_trainer_memory: ByteSize,
    /// Size limit of a trainer or serving pod's scratch disk (`/work`) when its
    /// spec.resources.scratch is unset and the operator does not know the model's size
    /// (a trainer of a known model gets what its download, datasets and checkpoints
    /// need). A pod that writes past its limit is evicted instead of filling the node.
    #[arg(long, env = "ANNEAL_SCRATCH_SIZE", default_value = "200GiB")]
    pub scratch_size: ByteSize,
    /// Time a stopping trainer gets to write its checkpoint after SIGTERM (not a flag).
    #[arg(skip = 300)]
    pub trainer_grace_seconds: i64,
}

impl Default for OperatorConfig {
    /// The flags' defaults: what `anneal-operator` runs with when neither a flag nor its
    /// environment variable is set (the environment is not read here).
    fn default() -> Self {
        let command =
            Self::augment_args(Command::new("anneal-operator")).mut_args(|arg| arg.env(None));
        let matches = command.get_matches_from(["anneal-operator"]);
        Self::from_arg_matches(&matches).expect("every operator flag has a default or is optional")
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
