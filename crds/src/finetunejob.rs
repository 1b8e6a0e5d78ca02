//! `FineTuneJob`: a base model, a dataset (chats, or captioned images for an image
//! model) and hyperparameters in; a trained adapter (or full model), its checkpoints
//! and metrics out.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::common::{BaseModelSpec, ResourcesSpec};
use crate::dataset::ChatMessage;
use crate::hyperparameters::{HyperparametersSpec, ResolvedHyperparameters};
use crate::limits::{
    ACTIVE_DEADLINE_SECONDS, CHECKPOINTS_KEEP_MAX, EARLY_STOPPING_MIN_DELTA_MAX,
    EARLY_STOPPING_PATIENCE, MIX_MAX, MIX_WEIGHT, NAME_MAX, NOTIFY_MAX, PROMPT_CONTENT_MAX,
    PROMPT_MESSAGES_MAX, PUBLISH_MAX, PUBLISH_URI_PATTERN, SAMPLE_GUIDANCE_MAX, SAMPLE_PROMPTS_MAX,
    SAMPLE_STEPS, SOURCE_URI_PATTERN, STORAGE_URI_PATTERN, URI_MAX, VALIDATION_SPLIT_MAX,
};
use crate::modelevaluation::{
    EvaluationDataset, GenerationSpec, METRICS_MAX, MetricScore, MetricSpec,
};

/// The training objective.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum TrainingMethod {
    /// Supervised fine-tuning on chat samples.
    #[default]
    Sft,
    /// Direct preference optimisation on chosen/rejected pairs.
    Dpo,
}

impl From<TrainingMethod> for crate::dataset::DatasetKind {
    /// The line shape a method trains on.
    fn from(method: TrainingMethod) -> Self {
        match method {
            TrainingMethod::Sft => Self::Sft,
            TrainingMethod::Dpo => Self::Dpo,
        }
    }
}

/// What the model learns to do, which decides the dataset's shape and the objective.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum Task {
    /// A chat model (Qwen2, Llama) on JSONL conversations.
    #[default]
    #[serde(rename = "chat")]
    Chat,
    /// An image model (FLUX.1) on a folder of images with `.txt` captions: a LoRA
    /// trained with the flow-matching loss, sample images at every checkpoint.
    #[serde(rename = "text-to-image")]
    TextToImage,
}

impl Task {
    /// As manifests spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Task::Chat => "chat",
            Task::TextToImage => "text-to-image",
        }
    }

    pub fn is_image(self) -> bool {
        self == Task::TextToImage
    }

    /// The default, left out when a job is written back (the trainer's manifest).
    pub fn is_chat(&self) -> bool {
        *self == Task::Chat
    }
}

/// Which weights are trained.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum TrainingType {
    /// A LoRA adapter; the base weights stay frozen.
    #[default]
    Lora,
    /// Every weight (small models).
    Full,
}

/// Fine-tune a base model on a dataset: chat conversations, or captioned images
/// for an image model.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "anneal.dev",
    version = "v1alpha1",
    kind = "FineTuneJob",
    namespaced,
    shortname = "ftj",
    category = "anneal",
    status = "FineTuneJobStatus",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Model","type":"string","jsonPath":".spec.baseModel.name"}"#,
    printcolumn = r#"{"name":"Progress","type":"integer","jsonPath":".status.progress.percent"}"#,
    printcolumn = r#"{"name":"Train loss","type":"number","jsonPath":".status.metrics.trainLoss"}"#,
    printcolumn = r#"{"name":"Valid loss","type":"number","jsonPath":".status.metrics.validLoss"}"#,
    printcolumn = r#"{"name":"Est. time","type":"string","priority":1,"jsonPath":".status.estimate.duration"}"#,
    printcolumn = r#"{"name":"Est. cost","type":"number","priority":1,"jsonPath":".status.estimate.cost"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = Rule::new("self.metadata.name.size() <= 48").message("metadata.name must be at most 48 characters, so that the names of the trainer Job and its Secret fit"),
)]
#[x_kube(
    validation = Rule::new("!has(self.hyperparameters.dpo) || self.method == 'dpo'").message("hyperparameters.dpo is only allowed with method: dpo").field_path(".hyperparameters.dpo"),
    validation = Rule::new(crate::hyperparameters::gradient_accumulation_divides_batch_rule()).message("hyperparameters.gradientAccumulation must divide the batch size (hyperparameters.batchSize, or the preset's)").field_path(".hyperparameters.gradientAccumulation"),
    validation = Rule::new("has(self.output) == has(oldSelf.output)").message("output is immutable once the job is created").field_path(".output"),
    validation = Rule::new("has(self.dataset.images) == (self.task == 'text-to-image')").message("dataset.images is what task: text-to-image trains on, and only it").field_path(".dataset"),
    validation = Rule::new("self.task != 'text-to-image' || (self.method == 'sft' && self.training == 'lora')").message("task: text-to-image trains a LoRA with the flow-matching loss: leave method and training unset").field_path(".task"),
)]
#[serde(rename_all = "camelCase")]
pub struct FineTuneJobSpec {
    /// `chat` (default): a chat model on JSONL conversations; `text-to-image`: an
    /// image model on a folder of captioned images.
    // The schema's default (as `method` has one) keeps the CEL rules that read
    // `self.task` working on objects that leave it out; serde leaves it out of the
    // manifests the operator writes, so chat jobs read as they did before.
    #[serde(default, skip_serializing_if = "Task::is_chat")]
    #[schemars(extend("default" = "chat"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("task is immutable once the job is created"))]
    pub task: Task,
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("method is immutable once the job is created"))]
    pub method: TrainingMethod,
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("training is immutable once the job is created"))]
    pub training: TrainingType,
    #[x_kube(validation = Rule::new("self == oldSelf").message("baseModel is immutable once the job is created"))]
    pub base_model: BaseModelSpec,
    #[x_kube(validation = Rule::new("self == oldSelf").message("dataset is immutable once the job is created"))]
    pub dataset: DatasetSpec,
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("hyperparameters are immutable once the job is created"))]
    pub hyperparameters: HyperparametersSpec,
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("checkpoints are immutable once the job is created"))]
    pub checkpoints: CheckpointsSpec,
    /// Where checkpoints go; default: the operator's configured object storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("output is immutable once the job is created"))]
    pub output: Option<OutputSpec>,
    /// Pod placement and size; changes apply to the next trainer pod (after suspend/resume).
    #[serde(default)]
    pub resources: ResourcesSpec,
    /// Kueue LocalQueue to admit the trainer Job through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub queue_name: Option<String>,
    /// Pause: the pod is removed, and training resumes from the last checkpoint when set back to false.
    #[serde(default)]
    pub suspend: bool,
    /// Seconds the job may take, counted from when its first trainer was started
    /// (`status.startTime`; suspended time counts too). Past it the trainer
    /// checkpoints and the job fails with reason `DeadlineExceeded`, keeping its
    /// checkpoints, which ModelDeployments can still serve. Changes apply to the next
    /// trainer pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = ACTIVE_DEADLINE_SECONDS.0, max = ACTIVE_DEADLINE_SECONDS.1))]
    pub active_deadline_seconds: Option<u64>,
    /// Checkpoints to save to model repositories once the job has succeeded (may be
    /// added later: "save to repository"); each is published once, as
    /// `status.published` records.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = PUBLISH_MAX))]
    pub publish: Vec<PublishSpec>,
    /// Where to tell of the job's progress: CloudEvents posted to each URL when it
    /// starts, saves a checkpoint, succeeds, fails or is cancelled (deleted before it
    /// ended). Retried with backoff; never holds the job up.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = NOTIFY_MAX))]
    pub notify: Vec<NotifySpec>,
    /// Experiment tracking: the run's parameters, metrics per step, checkpoints'
    /// sample answers and loss chart logged by the trainer as it trains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking: Option<TrackingSpec>,
}

/// Where the trainer logs the run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrackingSpec {
    /// An MLflow tracking server, through its REST API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mlflow: Option<MlflowSpec>,
}

/// An MLflow tracking server and the experiment the run is logged in. A token
/// (`MLFLOW_TRACKING_TOKEN`) or user and password (`MLFLOW_TRACKING_USERNAME`,
/// `MLFLOW_TRACKING_PASSWORD`) are taken from the trainer's environment: in a
/// cluster, keys of the job's credentials Secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MlflowSpec {
    /// The server's base URL, e.g. `http://mlflow.mlops.svc:5000`.
    #[schemars(length(min = 1, max = URI_MAX))]
    pub uri: String,
    /// The experiment's name, created when missing; default: the job's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = NAME_MAX))]
    pub experiment: Option<String>,
}

/// A receiver of the job's CloudEvents (JSON, structured mode).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotifySpec {
    /// `https://` or `http://` URL; its host must be one the install allows (Helm
    /// value `notifications.allowedHosts`, the operator's `--notify-allowed-hosts`).
    #[schemars(length(min = 1, max = URI_MAX))]
    pub url: String,
    /// A key of a Secret in the job's namespace whose value signs each body: header
    /// `X-Anneal-Signature: sha256=HEX`, the HMAC-SHA256 of the body with that value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_secret: Option<SecretKeyRef>,
    /// Which events to post (default: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<NotifyEvent>,
}

/// One key of a Secret in the object's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    #[schemars(length(min = 1, max = NAME_MAX))]
    pub name: String,
    #[schemars(length(min = 1, max = NAME_MAX))]
    pub key: String,
}

/// What a notification tells of; its CloudEvent type is `dev.anneal.finetunejob.{event}`.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum NotifyEvent {
    /// The trainer runs (each time it starts running, resumes included).
    Started,
    /// A checkpoint was saved.
    Checkpoint,
    Succeeded,
    Failed,
    /// The job was deleted before it ended.
    Cancelled,
}

impl NotifyEvent {
    pub fn name(self) -> &'static str {
        match self {
            NotifyEvent::Started => "started",
            NotifyEvent::Checkpoint => "checkpoint",
            NotifyEvent::Succeeded => "succeeded",
            NotifyEvent::Failed => "failed",
            NotifyEvent::Cancelled => "cancelled",
        }
    }
}

/// A checkpoint saved to a model repository.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublishSpec {
    /// `final` (default), `best` (lowest validation loss) or a checkpoint's name.
    #[serde(default = "default_publish_checkpoint")]
    #[schemars(length(min = 1, max = NAME_MAX))]
    pub checkpoint: String,
    /// Where to: `hf://ORG/NAME[@BRANCH]` or `modelscope://ORG/NAME[@BRANCH]` (created
    /// private if missing; the token in the credentials Secret's `HF_TOKEN` or
    /// `MODELSCOPE_API_TOKEN` must be allowed to write), or an `s3://` prefix.
    #[schemars(length(min = 1, max = URI_MAX), pattern(PUBLISH_URI_PATTERN))]
    pub to: String,
    /// Merge the adapter into the base model: a whole model folder any runtime without
    /// LoRA support loads. Default: the adapter alone.
    #[serde(default)]
    pub merge: bool,
}

fn default_publish_checkpoint() -> String {
    "final".to_owned()
}

/// What was published where; one entry per `spec.publish` entry, kept when the entry
/// is removed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublishedStatus {
    /// As `spec.publish[].checkpoint` names it.
    pub checkpoint: String,
    /// The checkpoint it resolved to (`best` becomes e.g. `ckpt-8`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_checkpoint: Option<String>,
    pub to: String,
    pub merge: bool,
    /// `Publishing`, `Published` or `Failed`.
    pub phase: String,
    /// The repository's commit (hub destinations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Where to read it back (the commit's page, or the storage prefix).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
}

impl PublishedStatus {
    /// Whether this records `entry`.
    pub fn records(&self, entry: &PublishSpec) -> bool {
        self.to == entry.to && self.checkpoint == entry.checkpoint && self.merge == entry.merge
    }
}

/// Training data from a URI or, for small data, a ConfigMap; for an image job, a
/// folder of images.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[x_kube(
    validation = Rule::new("[has(self.train), has(self.configMap), has(self.images)].filter(x, x).size() == 1").message("set exactly one of dataset.train, dataset.configMap and dataset.images"),
    validation = Rule::new("!(has(self.validation) && has(self.validationSplit))").message("set at most one of dataset.validation and dataset.validationSplit"),
    validation = Rule::new("!has(self.images) || !(has(self.validation) || has(self.validationSplit))").message("an image dataset has no validation data: leave dataset.validation and dataset.validationSplit unset"),
)]
#[serde(rename_all = "camelCase")]
pub struct DatasetSpec {
    /// JSONL training data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = URI_MAX), pattern(SOURCE_URI_PATTERN))]
    pub train: Option<String>,
    /// JSONL validation data; without it `validationSplit` of the training data is held out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = URI_MAX), pattern(SOURCE_URI_PATTERN))]
    pub validation: Option<String>,
    /// Fraction held out for validation (seeded, deterministic); default 0.1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = VALIDATION_SPLIT_MAX))]
    pub validation_split: Option<f64>,
    /// Training data inline in a ConfigMap of the job's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapDataset>,
    /// A folder of images (`.jpg`, `.jpeg`, `.png`, `.webp`), each captioned by a
    /// `.txt` file of the same name, for `task: text-to-image`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = URI_MAX), pattern(STORAGE_URI_PATTERN))]
    pub images: Option<String>,
    /// General data mixed into every epoch of a chat job's training data, so that
    /// the model does not forget what it could do: each set adds `weight` times as
    /// many samples as the training data has, drawn afresh every epoch with the
    /// job's seed. Checked line by line like the training data; never held out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MIX_MAX))]
    pub mix: Vec<MixSpec>,
    /// Sequence packing (SFT): a micro-batch's chats side by side in rows of up to
    /// `maxTokens`, each chat's positions restarting at 0 and its attention blind to
    /// the others, so the losses are those of one chat per row while the padding of
    /// short chats becomes other chats' tokens. Steps still hold `batchSize` chats; a
    /// micro-batch is then a number of packed rows. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packing: Option<bool>,
}

/// One dataset mixed into the training data (`dataset.mix`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MixSpec {
    /// JSONL data in the job's format (chats for SFT, preference pairs for DPO).
    #[schemars(length(min = 1, max = URI_MAX), pattern(SOURCE_URI_PATTERN))]
    pub uri: String,
    /// Samples drawn each epoch, as a multiple of the training data's size: 0.25 adds
    /// a quarter as many (one mixed sample in five). Drawn without repeats while the
    /// set has enough.
    #[schemars(range(min = MIX_WEIGHT.0, max = MIX_WEIGHT.1))]
    pub weight: f64,
}

/// Default fraction of the training data held out for validation.
pub const DEFAULT_VALIDATION_SPLIT: f64 = 0.1;

/// A dataset held in one key of a ConfigMap.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapDataset {
    /// Name of the ConfigMap, in the job's namespace.
    #[schemars(length(min = 1, max = NAME_MAX))]
    pub name: String,
    /// Key holding the JSONL text; default `train.jsonl`.
    #[serde(default = "default_config_map_key")]
    #[schemars(length(min = 1, max = NAME_MAX))]
    pub key: String,
}

fn default_config_map_key() -> String {
    "train.jsonl".to_owned()
}

/// When to save checkpoints and what to ask the model at each.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointsSpec {
    /// Checkpoint at the end of every epoch.
    #[serde(default = "default_true")]
    pub every_epoch: bool,
    /// Also checkpoint every N optimizer steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub every_steps: Option<u32>,
    /// Keep only the newest N checkpoints (the best and the final are always kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = CHECKPOINTS_KEEP_MAX))]
    pub keep: Option<u32>,
    /// Conversations answered at every checkpoint (chat jobs), or prompts drawn at
    /// every checkpoint (image jobs; default: three prompts with the trigger word);
    /// the answers and the images' URIs land in status and storage.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = SAMPLE_PROMPTS_MAX))]
    pub sample_prompts: Vec<SamplePrompt>,
    /// End the run when the checkpoints stop improving (the validation loss, or with
    /// `evaluation` its first metric); the result is then the best checkpoint. Needs
    /// validation data or `evaluation`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stopping: Option<EarlyStoppingSpec>,
    /// Held-out chats every checkpoint answers, scored by metrics (chat jobs). The best
    /// checkpoint (`best` in ModelDeployments, ModelEvaluations and `publish`) is then
    /// the one with the best score for the first metric (ties to the next metrics,
    /// then the validation loss) rather than the lowest validation loss, and early
    /// stopping follows that score.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation: Option<CheckpointEvaluationSpec>,
}

/// The evaluation a job runs at every checkpoint: a ModelEvaluation's dataset, metrics
/// and generation settings, for the model being trained.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(
    validation = Rule::new("self.metrics.all(m, !has(m.judge))").message("a judge scores in a ModelEvaluation (fineTuneJob checkpoint: all), not at every checkpoint").field_path(".metrics"),
)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointEvaluationSpec {
    /// The held-out chats: the last assistant turn of each is the reference answer.
    /// Every checkpoint answers them all, so keep it to the tens or few hundreds
    /// (`maxSamples`).
    pub dataset: EvaluationDataset,
    /// The first decides which checkpoint is best: the highest score, or for
    /// `referenceLoss` the lowest.
    #[schemars(length(min = 1, max = METRICS_MAX))]
    pub metrics: Vec<MetricSpec>,
    #[serde(default)]
    pub generation: GenerationSpec,
}

impl Default for CheckpointsSpec {
    fn default() -> Self {
        Self {
            every_epoch: true,
            every_steps: None,
            keep: None,
            sample_prompts: Vec::new(),
            early_stopping: None,
            evaluation: None,
        }
    }
}

/// When a run's validation loss has stopped improving.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct EarlyStoppingSpec {
    /// Checkpoints in a row (each evaluated on the validation data) without a new best
    /// validation loss that end the run.
    #[schemars(range(min = EARLY_STOPPING_PATIENCE.0, max = EARLY_STOPPING_PATIENCE.1))]
    pub patience: u32,
    /// How much lower than the best so far a validation loss must be to count as a new
    /// best (default 0: any improvement).
    #[serde(default)]
    #[schemars(range(min = 0.0, max = EARLY_STOPPING_MIN_DELTA_MAX))]
    pub min_delta: f64,
}

fn default_true() -> bool {
    true
}

/// What to ask at each checkpoint: a conversation ending on a user message (chat
/// jobs), or an image prompt (image jobs).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[x_kube(
    validation = Rule::new("has(self.messages) != has(self.prompt)").message("set messages (a chat job's conversation) or prompt (an image job's), not both"),
    validation = Rule::new("has(self.prompt) || !(has(self.seed) || has(self.steps) || has(self.guidance))").message("seed, steps and guidance go with an image prompt"),
)]
#[serde(rename_all = "camelCase")]
pub struct SamplePrompt {
    /// The conversation so far: an optional system message, then user and assistant
    /// turns, the last one from the user.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(min = 1, max = PROMPT_MESSAGES_MAX))]
    #[x_kube(validation = Rule::new("self[size(self) - 1].role == 'user'").message("a sample prompt must end on a user message"))]
    pub messages: Vec<ChatMessage>,
    /// An image job's prompt, drawn at every checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = PROMPT_CONTENT_MAX))]
    pub prompt: Option<String>,
    /// The noise seed; default the job's `hyperparameters.seed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Denoising steps; default the model's (28 for FLUX.1-dev).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = SAMPLE_STEPS.0, max = SAMPLE_STEPS.1))]
    pub steps: Option<u32>,
    /// Guidance scale; default the model's (3.5 for FLUX.1-dev).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = SAMPLE_GUIDANCE_MAX))]
    pub guidance: Option<f64>,
}

/// Where checkpoints and the final adapter are written.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutputSpec {
    /// Prefix in object storage; checkpoints go to `{uri}/{namespace}/{job}/{uid}/`.
    #[schemars(length(min = 1, max = URI_MAX), pattern(STORAGE_URI_PATTERN))]
    pub uri: String,
    /// Secret in the job's namespace with the storage credentials (e.g. `AWS_ACCESS_KEY_ID`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = NAME_MAX))]
    pub credentials_secret: Option<String>,
}

/// Where a job is in its life.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum JobPhase {
    Pending,
    Validating,
    Queued,
    Running,
    Succeeded,
    Failed,
    Suspended,
    Cancelled,
}

/// `status` of a FineTuneJob, written by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct FineTuneJobStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<JobPhase>,
    /// `Validated`, `Admitted`, `Running`, `Complete`, `Failed`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Metrics>,
    /// The checkpoints saved so far.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checkpoints: Vec<CheckpointStatus>,
    /// What the run will take, estimated in Validating from its data's tokens, before
    /// any GPU is asked for (`kubectl get ftj -o wide` shows time and cost).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimate: Option<JobEstimate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<JobResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// The `metadata.generation` of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// A human-readable account of the current phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Sequence number of the newest trainer event folded into this status; the
    /// operator drops events at or below it, so retried posts and an operator restart
    /// never apply an event twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event_seq: Option<u64>,
    /// What `spec.publish` saved where.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub published: Vec<PublishedStatus>,
    /// The checkpoint `spec.baseModel.fineTuneJob` resolved to: the job's lineage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_from: Option<StartedFrom>,
}

/// Another job's checkpoint a job started from (`spec.baseModel.fineTuneJob`), as
/// resolved when it started; also in every checkpoint's `trainer_state.json`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StartedFrom {
    /// The FineTuneJob's name.
    pub fine_tune_job: String,
    /// Its checkpoint: `final` or `ckpt-N` (`best` resolved).
    pub checkpoint: String,
    /// The checkpoint's folder.
    pub uri: String,
    /// `lora`: its adapter was trained further; `full`: its weights were the base.
    pub training: TrainingType,
    /// The base model this job trains on, as resolved through the jobs it starts
    /// from (the operator's record; a trainer's state leaves it out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_model: Option<BaseModelSpec>,
}

impl FineTuneJob {
    /// The base model the job trains (and its checkpoints are served) on: its
    /// `spec.baseModel`, or for a job that starts from another job's checkpoint, the
    /// base model that resolved to (`status.startedFrom.baseModel`) once known.
    pub fn trained_base_model(&self) -> BaseModelSpec {
        (self.status.as_ref())
            .and_then(|s| s.started_from.as_ref())
            .and_then(|from| from.base_model.clone())
            .unwrap_or_else(|| self.spec.base_model.clone())
    }
}

/// How far training is.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// Fractional epoch, e.g. 1.5 halfway through the second.
    pub epoch: f64,
    /// Optimizer steps done.
    pub step: u64,
    /// Optimizer steps the whole run takes.
    pub total_steps: u64,
    /// Whole percent, for the printer column.
    pub percent: u32,
    /// Estimated seconds until training ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta_seconds: Option<u64>,
}

/// A run's estimate (`anneal_crds::estimate`): tokens and steps from the dataset after
/// the chat template, the FLOPs of its steps, and on GPUs their time at the install's
/// GPU speed and utilization, and the cost at its price per GPU-hour.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobEstimate {
    /// Samples (chats, or DPO pairs) an epoch trains on.
    pub samples_per_epoch: u64,
    /// Their input positions after the chat template, an epoch.
    pub tokens_per_epoch: u64,
    /// Optimizer steps, all epochs.
    pub steps: u64,
    /// Floating-point operations of those steps (matrix products).
    pub flops: f64,
    /// The steps' time, e.g. `3 h 20 min`; absent on the CPU (its speed is unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<u64>,
    /// GPUs × hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_hours: Option<f64>,
    /// At the install's price per GPU-hour, when it sets one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
    /// What it rests on: the share of the data counted, the GPU speed and utilization
    /// assumed, and what it leaves out.
    pub basis: String,
}

/// The latest training metrics.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Metrics {
    /// Loss of the latest optimizer step (for DPO the DPO loss, plus the SFT term
    /// when `dpo.sftWeight` is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_loss: Option<f64>,
    /// Loss on the validation set at the latest evaluation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_loss: Option<f64>,
    /// Share of assistant tokens the model predicts exactly, at the latest evaluation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_accuracy: Option<f64>,
    /// Training throughput in tokens per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_second: Option<f64>,
    /// Learning rate of the latest step (warmup, then cosine decay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learning_rate: Option<f64>,
    /// DPO: mean reward `β·(log π − log π_ref)` of the chosen replies in the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewards_chosen: Option<f64>,
    /// DPO: mean reward of the rejected replies in the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewards_rejected: Option<f64>,
    /// DPO: mean of chosen minus rejected reward in the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reward_margin: Option<f64>,
    /// DPO: share of the step's pairs whose chosen reply out-rewards the rejected one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reward_accuracy: Option<f64>,
    /// DPO: `rewardsChosen` on the validation set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_rewards_chosen: Option<f64>,
    /// DPO: `rewardsRejected` on the validation set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_rewards_rejected: Option<f64>,
    /// DPO: `rewardMargin` on the validation set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_reward_margin: Option<f64>,
    /// DPO: `rewardAccuracy` on the validation set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_reward_accuracy: Option<f64>,
}

/// One saved checkpoint.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointStatus {
    /// `ckpt-{step}`; `ModelDeployment` `spec.model.fineTuneJob.checkpoint` takes it.
    pub name: String,
    /// Optimizer step the checkpoint was taken after.
    pub step: u64,
    /// Fractional epoch the checkpoint was taken at.
    pub epoch: f64,
    /// The checkpoint folder in object storage.
    pub uri: String,
    /// Validation loss of this checkpoint; without `checkpoints.evaluation`, `best`
    /// picks the lowest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_loss: Option<f64>,
    /// Its scores on `checkpoints.evaluation`'s chats, one per metric (and
    /// `perplexity` after `referenceLoss`), each with its 95% interval; `best` picks
    /// by the first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evaluation: Vec<MetricScore>,
    /// Answers to `spec.checkpoints.samplePrompts`, in order; for an image job, the
    /// URIs of the sample images (PNG) drawn for them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<String>,
}

/// What a finished job produced.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobResult {
    /// e.g. `ft:qwen2.5-7b-instruct:my-job:ckpt-3`.
    pub model_id: String,
    /// The final adapter (or full model) folder in object storage; after an early
    /// stop, the best checkpoint's folder.
    pub uri: String,
    /// Why the run ended before its last step (`checkpoints.earlyStopping`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_early: Option<String>,
}

impl FineTuneJob {
    /// The hyperparameters training runs with: the preset overridden by the spec.
    pub fn resolved_hyperparameters(&self) -> ResolvedHyperparameters {
        self.spec.hyperparameters.resolve_for(self.spec.task)
    }
}

/// The id of a fine-tuned checkpoint, as clients ask for it:
/// `ft:{base model, lowercased, without its organization}:{job}:{checkpoint}`.
/// The trainer names its result with it and the operator names the checkpoints it
/// serves with it, so the same checkpoint has one id everywhere.
pub fn fine_tuned_model_id(base_model_name: &str, job: &str, checkpoint: &str) -> String {
    let base = base_model_name
        .rsplit('/')
        .next()
        .unwrap_or(base_model_name)
        .to_lowercase();
    format!("ft:{base}:{job}:{checkpoint}")
}

impl DatasetSpec {
    /// Fraction of the training data held out when no validation file is given.
    pub fn resolved_validation_split(&self) -> f64 {
        match (&self.validation, self.validation_split) {
            (Some(_), _) => 0.0,
            (None, split) => split.unwrap_or(DEFAULT_VALIDATION_SPLIT),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_ids_name_base_job_and_checkpoint() {
        assert_eq!(
            fine_tuned_model_id("Qwen/Qwen2.5-7B-Instruct", "my-job", "ckpt-3"),
            "ft:qwen2.5-7b-instruct:my-job:ckpt-3"
        );
        assert_eq!(
            fine_tuned_model_id("anneal-tiny", "quickstart", "ckpt-40"),
            "ft:anneal-tiny:quickstart:ckpt-40"
        );
    }
}
