//! What a run is given, grouped by what uses it: which run it is, the base model,
//! the job's training settings, the dataset, where to write, the device's memory, and
//! when to resume or stop.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::SystemTime;

use anneal_crds::ResolvedHyperparameters;
use anneal_crds::finetunejob::{
    CheckpointsSpec, FineTuneJob, StartedFrom, TrainingMethod, TrainingType,
};

use anneal_crds::storage::Storage;

use crate::checkpoint_evaluation::CheckpointEvaluation;
use crate::device_memory::GivenMemory;

/// Everything a run needs, already fetched to this machine.
pub struct RunInputs {
    pub job: RunIdentity,
    pub base_model: BaseModel,
    pub settings: TrainingSettings,
    pub data: RunData,
    pub location: RunLocation,
    /// The device's memory where the caller knows it (flags, the operator's setting);
    /// the memory plan picks the micro-batch from it.
    pub memory: GivenMemory,
    /// Continue from the newest complete checkpoint when there is one.
    pub resume: bool,
    /// Set (e.g. on SIGTERM) to checkpoint at the next step boundary and stop.
    pub stop: Arc<AtomicBool>,
    /// `spec.activeDeadlineSeconds`: past it, the run checkpoints at the next step
    /// boundary and fails with [`crate::TrainError::DeadlineExceeded`].
    pub deadline: Option<Deadline>,
}

/// When the job's time is up, and the setting that says so (for messages).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadline {
    pub at: SystemTime,
    /// `spec.activeDeadlineSeconds`.
    pub seconds: u64,
}

impl Deadline {
    /// Whether it has passed at `now`.
    pub fn passed(&self, now: SystemTime) -> bool {
        now >= self.at
    }
}

/// Which run this is, as `trainer_state.json`, the model id and the loss chart name it.
pub struct RunIdentity {
    /// `metadata.name` of the FineTuneJob.
    pub job_name: String,
    pub run_id: String,
}

/// The model the run starts from.
pub struct BaseModel {
    /// `spec.baseModel.name`, written into the adapter config and the model id.
    pub name: String,
    /// Its local folder: config, weights and tokenizer.
    pub dir: PathBuf,
    /// Another job's LoRA adapter (a local folder) the run trains further instead of
    /// a fresh one (`spec.baseModel.fineTuneJob`); DPO's reference is then the model
    /// with it, where the run starts.
    pub adapter: Option<PathBuf>,
    /// The checkpoint the run started from, recorded in every checkpoint's state.
    pub started_from: Option<StartedFrom>,
}

/// What the job asks of training.
pub struct TrainingSettings {
    /// `spec.method`: what the run optimises.
    pub method: TrainingMethod,
    pub training: TrainingType,
    pub hyperparameters: ResolvedHyperparameters,
    /// `batchSize / gradientAccumulation` when the job sets `gradientAccumulation`;
    /// `None` leaves the micro-batch to the memory plan.
    pub set_micro_batch: Option<u32>,
    pub checkpoints: CheckpointsSpec,
    /// `dataset.packing`: chats packed into rows of up to `maxTokens` (SFT).
    pub packing: bool,
}

impl TrainingSettings {
    /// The input positions of a packed row (`maxTokens`), when the job packs.
    pub fn packed_row(&self) -> Option<usize> {
        self.packing
            .then_some(self.hyperparameters.max_tokens as usize)
    }
}

impl TrainingSettings {
    /// The settings `job` asks for, its preset and defaults filled in.
    pub fn of_job(job: &FineTuneJob) -> Self {
        Self {
            method: job.spec.method,
            training: job.spec.training,
            hyperparameters: job.resolved_hyperparameters(),
            set_micro_batch: job.spec.hyperparameters.set_micro_batch(),
            checkpoints: job.spec.checkpoints.clone(),
            packing: job.spec.dataset.packing.unwrap_or(false),
        }
    }
}

/// The dataset files' contents, each with a name for messages.
pub struct RunData {
    /// The training file's name (for messages) and a local path to it: it is read line
    /// by line, keeping token ids, never the whole text.
    pub train: (String, PathBuf),
    pub validation: Option<(String, PathBuf)>,
    /// The share of `train` held out for validation when there is no validation file.
    pub validation_split: f64,
    /// `dataset.mix`: each mixed file, made local, and its weight.
    pub mix: Vec<MixFile>,
    /// `checkpoints.evaluation`: the held-out chats, read, and the metrics.
    pub evaluation: Option<CheckpointEvaluation>,
}

/// A dataset mixed into every epoch (`dataset.mix`).
pub struct MixFile {
    /// Its name for messages (the URI as the manifest gives it).
    pub name: String,
    pub path: PathBuf,
    /// Samples per epoch as a multiple of the training file's.
    pub weight: f64,
}

/// Where the run writes.
pub struct RunLocation {
    /// The run's location: `{output}/{namespace}/{job}/{run id}`.
    pub output: Storage,
    /// Local scratch space (staging checkpoints, the events file).
    pub work_dir: PathBuf,
}
