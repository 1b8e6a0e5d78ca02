//! Anneal's training: the SFT and DPO objectives ([`sft`], [`dpo`]) and the run that
//! steps either of them; and for image jobs, their folder and epoch order ([`image`]).
//!
//! Training runs: the loop ([`run`]) for either objective ([`objective`]: SFT or
//! DPO), its data ([`data`]: tokenized examples, the validation split, the epoch's
//! batches and their tensors), the held-out chats scored at every checkpoint
//! ([`checkpoint_evaluation`]), the micro-batch the device runs ([`micro_batch`], from
//! the memory plan and [`device_memory`]), the optimizer and gradient clipping both objectives
//! step with, learning-rate schedule, sample answers, checkpoints with optimizer
//! state and `trainer_state.json`, the event stream and the loss chart.

pub mod backward;
pub mod batches;
pub mod blocked_attention;
pub mod checkpoint;
pub mod checkpoint_evaluation;
pub mod chunked_loss;
pub mod data;
pub mod data_parallel;
pub mod device_memory;
pub mod dpo;
pub mod event_log;
pub mod event_report;
pub mod grad_clip;
pub mod image;
pub mod loss_chart;
pub mod micro_batch;
pub mod objective;
pub mod optimizer;
pub mod optimizer_state;
pub mod packing;
pub mod readback;
pub mod row_softmax;
pub mod run;
pub mod samples;
pub mod schedule;
pub mod sft;
pub mod split;
pub mod state;
pub mod step_settings;
pub mod swiglu;
pub mod tensor_batch;
pub mod tokenized;
pub mod tracked_op;
pub mod train_backend;

use std::path::{Path, PathBuf};

/// Why a run could not go on. Messages name the file, object or setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("base model: {0}")]
    Model(#[from] anneal_model::llm::ModelError),
    #[error("tokenizer: {0}")]
    Tokenizer(#[from] anneal_model::chat::ChatError),
    #[error("dataset {0}")]
    Dataset(#[from] data::DatasetError),
    #[error("storage: {0}")]
    Storage(#[from] anneal_crds::storage::StorageError),
    #[error(transparent)]
    CheckpointEvaluation(#[from] checkpoint_evaluation::CheckpointEvaluationError),
    /// The job ran past `spec.activeDeadlineSeconds`; what was trained is checkpointed.
    #[error("{0}")]
    DeadlineExceeded(String),
    #[error("adapter: {0}")]
    Adapter(#[from] anneal_model::lora::peft::AdapterError),
    /// A job that cannot start from the checkpoint it names, and why, by field.
    #[error("{0}")]
    StartingPoint(String),
    #[error("optimizer state: {0}")]
    OptimizerState(#[from] optimizer_state::OptimizerStateError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("resume: {0}")]
    Resume(#[from] ResumeError),
    #[error(transparent)]
    Chart(#[from] loss_chart::ChartError),
    /// The base model's `config.json` does not give the memory plan a shape.
    #[error("memory plan: {}: {source}", path.display())]
    ModelShape {
        path: PathBuf,
        source: anneal_crds::memory_plan::HfConfigError,
    },
    /// A loss or gradient norm that is not finite: the run stops there.
    #[error("{0}")]
    Diverged(Box<run::Divergence>),
    /// A step ran out of device memory, also at half the micro-batch where it could
    /// be tried again.
    #[error("{0}")]
    OutOfMemory(Box<run::OutOfMemory>),
    /// An image job's folder breaks a rule: every problem, each naming its file.
    #[error("dataset.images: {0}")]
    ImageFolder(#[from] image::folder::ImageFolderError),
    #[error("base model: {0}")]
    ImagePipeline(#[from] anneal_image::pipeline::PipelineError),
    #[error("adapter: {0}")]
    ImageAdapter(String),
    #[error("adapter: {0}")]
    ImageAdapterFile(#[from] anneal_image::flux::lora::FluxLoraError),
    #[error("sample image: {0}")]
    Png(#[from] anneal_image::png_out::PngError),
    /// Not one sample fits the device: the plan's figures and what would fit.
    #[error("does not fit: {does_not_fit} (memory from {from})")]
    DoesNotFit {
        from: &'static str,
        does_not_fit: anneal_crds::memory_plan::DoesNotFit,
    },
}

impl TrainError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Why a run could not continue from its checkpoint, or end on one.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    /// The checkpoint's `trainer_state.json` cannot be read.
    #[error("{checkpoint}/{}: {source}", state::STATE_FILE)]
    State {
        checkpoint: String,
        source: state::StateError,
    },
    /// The job or its data changed since the checkpoint was written.
    #[error("cannot resume from {checkpoint}: {why}")]
    Incompatible {
        checkpoint: String,
        why: state::Incompatibility,
    },
    #[error("the run ended without a checkpoint")]
    NoCheckpoint,
}

/// Held by every test that seeds the backend's generator and then draws from it: the
/// generator is one per process, and tests run on parallel threads.
#[cfg(test)]
pub(crate) fn backend_rng_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Asserts `got` is `want` to `tolerance` of `want`'s largest magnitude (or of 1, when
/// that is smaller), and that `want` is not all but zero: a tracked op's values or
/// gradients against burn's own graph.
#[cfg(test)]
pub(crate) fn assert_matches_burn(name: &str, got: &[f32], want: &[f32], tolerance: f32) {
    assert_eq!(got.len(), want.len(), "{name}: lengths");
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let gap = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        scale > 1e-3 && gap <= tolerance * scale.max(1.0),
        "{name}: gap {gap} of {scale}"
    );
}
