//! The numeric bounds of the API, named once.
//!
//! The schema attributes on the types, the Rust validation and the error texts all
//! read these, so a bound can never say one thing at apply time and another in
//! local mode.

pub const LEARNING_RATE_MAX: f64 = 0.1;
pub const EPOCHS: (u32, u32) = (1, 10);
pub const BATCH_SIZE: (u32, u32) = (1, 32);
pub const MAX_TOKENS: (u32, u32) = (1, 131_072);
pub const LORA_RANK: (u32, u32) = (1, 64);
pub const LORA_ALPHA: (u32, u32) = (1, 128);
pub const LORA_DROPOUT_MAX: f64 = 1.0;
pub const WARMUP_RATIO_MAX: f64 = 0.5;
pub const WEIGHT_DECAY_MAX: f64 = 1.0;
pub const GRADIENT_ACCUMULATION: (u32, u32) = (1, 32);
pub const VALIDATION_SPLIT_MAX: f64 = 0.5;
pub const DPO_BETA_MAX: f64 = 10.0;
pub const DPO_LABEL_SMOOTHING_MAX: f64 = 0.5;
pub const DPO_SFT_WEIGHT_MAX: f64 = 10.0;
pub const GPUS_MAX: u32 = 8;
pub const REPLICAS_MAX: u32 = 64;

/// Longest FineTuneJob name: the operator derives child names (`{name}-trainer`,
/// `{name}-report-token`) that must stay within the 63 characters of a label value.
pub const JOB_NAME_MAX: usize = 48;
/// Longest URI the API accepts (object-store keys are at most 1024 bytes).
pub const URI_MAX: usize = 2048;
/// Bounds that keep CEL cost estimates on the spec small, so the apiserver accepts
/// the transition rules that compare whole sub-objects.
pub const NAME_MAX: usize = 253;
pub const SAMPLE_PROMPTS_MAX: usize = 8;
pub const PROMPT_MESSAGES_MAX: usize = 16;
pub const PROMPT_CONTENT_MAX: usize = 8192;
pub const ADAPTERS_MAX: usize = 16;
pub const CHECKPOINTS_KEEP_MAX: u32 = 100;
/// An image job's sample prompts: denoising steps and guidance scale.
pub const SAMPLE_STEPS: (u32, u32) = (1, 100);
pub const SAMPLE_GUIDANCE_MAX: f64 = 30.0;
/// `hyperparameters.repeats`: times each image is seen per epoch.
pub const REPEATS: (u32, u32) = (1, 100);
/// `hyperparameters.resolution`: the long side of the training buckets, in pixels, a
/// multiple of [`RESOLUTION_STEP`] (so that the 4:3 buckets' short side, 3/4 of it,
/// is a whole number of FLUX's 16-pixel latent patches).
pub const RESOLUTION: (u32, u32) = (64, 2048);
pub const RESOLUTION_STEP: u32 = 64;
/// `hyperparameters.triggerWord`: characters.
pub const TRIGGER_WORD_MAX: usize = 64;

/// URIs a base model or dataset may come from: a bucket, a claim, a local path or
/// a Hub repository. `validation::uri_problem` says the same in words.
pub const SOURCE_URI_PATTERN: &str = r"^((s3|gs|az)://[^/]+(/.*)?|pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?(/.*)?|file://.+|(hf|modelscope)://[^/@]+/[^/@]+(@[^/@]+)?)$";
/// URIs a served adapter may come from: storage, or a hub repository.
pub const ADAPTER_URI_PATTERN: &str = r"^((s3|gs|az)://[^/]+(/.*)?|pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?(/.*)?|file://.+|(hf|modelscope)://[^/@]+/[^/@]+(@[^/@]+)?)$";
/// URIs checkpoints may be written to or read from.
pub const STORAGE_URI_PATTERN: &str =
    r"^((s3|gs|az)://[^/]+(/.*)?|pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?(/.*)?|file://.+)$";
/// Where `spec.publish` may save a checkpoint: a hub repository or S3.
pub const PUBLISH_URI_PATTERN: &str =
    r"^((hf|modelscope)://[^/@]+/[^/@]+(@[^/@]+)?|s3://[^/]+(/.*)?)$";
/// Entries of `spec.publish`.
pub const PUBLISH_MAX: usize = 4;
/// Datasets mixed into a job's training data (`dataset.mix`).
pub const MIX_MAX: usize = 8;
/// A mixed dataset's weight: its samples per epoch as a multiple of the training
/// data's, above 0.
pub const MIX_WEIGHT: (f64, f64) = (0.001, 10.0);
/// Receivers of a job's notifications (`spec.notify`).
pub const NOTIFY_MAX: usize = 4;
/// `activeDeadlineSeconds`: a minute (a checkpoint must fit after it) to a year.
pub const ACTIVE_DEADLINE_SECONDS: (u64, u64) = (60, 365 * 24 * 3600);
/// `checkpoints.earlyStopping.patience`: evaluations without a new best.
pub const EARLY_STOPPING_PATIENCE: (u32, u32) = (1, 100);
/// `checkpoints.earlyStopping.minDelta`: in units of the loss (nats per token).
pub const EARLY_STOPPING_MIN_DELTA_MAX: f64 = 10.0;
