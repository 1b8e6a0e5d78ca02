//! Anneal's training: the SFT and DPO objectives ([`sft`], [`dpo`]) and the run that
//! steps either of them.
//!
//! Training runs: the loop ([`run`]) for either objective ([`objective`]: SFT or
//! DPO), its data ([`data`]: tokenized examples, the validation split, the epoch's
//! batches and their tensors), the optimizer and gradient clipping both objectives
//! step with, learning-rate schedule, sample answers, checkpoints with optimizer
//! state and `trainer_state.json`, the event stream and the loss chart.

pub mod backward;
pub mod batches;
pub mod checkpoint;
pub mod chunked_loss;
pub mod data;
pub mod dpo;
pub mod event_log;
pub mod event_report;
pub mod grad_clip;
pub mod loss_chart;
pub mod objective;
pub mod optimizer;
pub mod optimizer_state;
pub mod run;
pub mod samples;
pub mod schedule;
pub mod sft;
pub mod split;
pub mod state;
pub mod step_settings;
pub mod tensor_batch;
pub mod tokenized;

use std::path::Path;

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
    #[error("adapter: {0}")]
    Adapter(#[from] anneal_model::lora::peft::AdapterError),
    #[error("optimizer state: {0}")]
    OptimizerState(#[from] optimizer_state::OptimizerStateError),
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("resume: {0}")]
    Resume(String),
    #[error("{0}")]
    Chart(String),
}

impl TrainError {
    pub fn io(path: &Path, err: std::io::Error) -> Self {
        TrainError::Io {
            path: path.display().to_string(),
            message: err.to_string(),
        }
    }
}
