//! `trainer_state.json`: where a run is, written into every checkpoint. A resumed
//! run reads it to continue at the next step with the same data order, schedule
//! and dropout draws, and refuses to resume when the job or its data changed.

use anneal_crds::ResolvedHyperparameters;
use anneal_crds::finetunejob::{CheckpointStatus, TrainingMethod};
use serde::{Deserialize, Serialize};

use crate::dpo::loss::PreferenceScores;

pub const STATE_FILE: &str = "trainer_state.json";
/// Bumped when the layout changes in a way older trainers cannot read.
pub const STATE_FORMAT: u32 = 1;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TrainerState {
    pub format: u32,
    pub job: String,
    pub run_id: String,
    pub base_model: String,
    /// `spec.method`; states written before DPO existed are SFT.
    #[serde(default)]
    pub method: TrainingMethod,
    /// Optimizer steps taken (the next step to run has this index).
    pub step: u64,
    pub total_steps: u64,
    /// Fractional epochs done.
    pub epoch: f64,
    pub hyperparameters: ResolvedHyperparameters,
    pub data: DataOrder,
    pub rng: RngState,
    /// Tokens (prompt and answer, no padding) the steps so far consumed.
    pub tokens_seen: u64,
    /// Seconds spent training so far, over every resume.
    pub train_seconds: f64,
    /// One entry per logged step, as Hugging Face's `log_history`.
    pub log_history: Vec<LogEntry>,
    /// Every checkpoint written so far (the pruned ones included), with its metrics.
    pub checkpoints: Vec<CheckpointStatus>,
    /// The checkpoint with the lowest validation loss.
    pub best_checkpoint: Option<String>,
    /// The datasets' file names, for a model card (states written before they were
    /// recorded have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datasets: Option<DatasetNames>,
    /// The checkpoint of another job this run started from: its lineage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_from: Option<anneal_crds::finetunejob::StartedFrom>,
}

/// The file names of a run's datasets (the last part of their URIs or paths).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DatasetNames {
    pub train: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<String>,
}

impl DatasetNames {
    /// The file name of each of a run's datasets.
    pub fn of(train: &str, validation: Option<&str>) -> Self {
        let file_name = |name: &str| {
            name.trim_end_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or(name)
                .to_owned()
        };
        Self {
            train: file_name(train),
            validation: validation.map(file_name),
        }
    }
}

/// What fixes the order samples are seen in, and how this run splits it: an epoch's
/// step batches come from `(seed, epoch, batchSize)` alone, so the step index is
/// enough to know where a run stands; each step's batch then runs as micro-batches of
/// at most `micro_batch_size` samples, which follows the device (the memory plan) and
/// may change on resume without changing the order ([`DataOrder::same_order`]).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DataOrder {
    pub seed: u64,
    pub train_samples: usize,
    /// Samples each mixed dataset adds to every epoch (`dataset.mix`), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mixed_per_epoch: Vec<u64>,
    pub validation_samples: usize,
    pub dropped_too_long: u64,
    /// The most samples one forward/backward pass ran, when this state was written.
    pub micro_batch_size: usize,
    /// Micro-batches in a full step, `ceil(batchSize / micro_batch_size)`.
    pub gradient_accumulation: usize,
    pub steps_per_epoch: u64,
    /// Dataset lines of the validation samples, which a resumed split must reproduce.
    pub validation_lines: Vec<u64>,
}

impl DataOrder {
    /// Whether `other` sees the same samples in the same steps: everything but the
    /// split into micro-batches.
    pub fn same_order(&self, other: &DataOrder) -> bool {
        let split_as_other = DataOrder {
            micro_batch_size: other.micro_batch_size,
            gradient_accumulation: other.gradient_accumulation,
            ..self.clone()
        };
        &split_as_other == other
    }
}

/// The random state: the backend's generator is reseeded from `(seed, step)` at the
/// start of every step, so the dropout masks of step `n` depend on nothing else.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RngState {
    pub scheme: String,
    pub seed: u64,
    pub next_step_seed: u64,
}

impl RngState {
    pub const SCHEME: &'static str = "reseed-per-step";

    pub fn at(seed: u64, step: u64) -> Self {
        Self {
            scheme: Self::SCHEME.to_owned(),
            seed,
            next_step_seed: step_seed(seed, step),
        }
    }
}

/// The backend seed for step `step`: a SplitMix64 mix, so neighbouring steps get
/// unrelated streams.
pub fn step_seed(seed: u64, step: u64) -> u64 {
    let mut z = seed ^ step.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LogEntry {
    pub step: u64,
    pub epoch: f64,
    pub train_loss: f64,
    /// Token accuracy on the step's own batches (SFT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_token_accuracy: Option<f64>,
    /// DPO: the step's rewards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_rewards: Option<PreferenceScores>,
    pub learning_rate: f64,
    pub grad_norm: f64,
    pub tokens_per_second: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_loss: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_token_accuracy: Option<f64>,
    /// DPO: the rewards on the validation set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_rewards: Option<PreferenceScores>,
}

impl TrainerState {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the state serializes")
    }

    pub fn from_json(text: &str) -> Result<Self, StateError> {
        let state: TrainerState = serde_json::from_str(text)?;
        if state.format != STATE_FORMAT {
            return Err(StateError::Format(state.format));
        }
        Ok(state)
    }

    /// Why this saved state cannot continue a run with `hyperparameters` and
    /// `data`, or `None` when it can.
    pub fn incompatibility(
        &self,
        method: TrainingMethod,
        hyperparameters: &ResolvedHyperparameters,
        data: &DataOrder,
    ) -> Option<Incompatibility> {
        if self.method != method {
            return Some(Incompatibility::Method {
                checkpoint: self.method,
                job: method,
            });
        }
        if &self.hyperparameters != hyperparameters {
            return Some(Incompatibility::Hyperparameters);
        }
        if !self.data.same_order(data) {
            return Some(Incompatibility::Data {
                train_then: self.data.train_samples,
                validation_then: self.data.validation_samples,
                train_now: data.train_samples,
                validation_now: data.validation_samples,
            });
        }
        None
    }
}

/// Why `trainer_state.json` cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error("format {0} is not the {STATE_FORMAT} this trainer reads")]
    Format(u32),
}

/// Why a saved state cannot continue a run with the job as it is now.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Incompatibility {
    #[error(
        "the checkpoint was trained with method {checkpoint:?}, the job asks for {job:?}; start a new run instead"
    )]
    Method {
        checkpoint: TrainingMethod,
        job: TrainingMethod,
    },
    #[error("the job's hyperparameters differ from the checkpoint's; start a new run instead")]
    Hyperparameters,
    #[error(
        "the dataset differs from the checkpoint's ({train_then} training / {validation_then} validation samples then, {train_now} / {validation_now} now); start a new run instead"
    )]
    Data {
        train_then: usize,
        validation_then: usize,
        train_now: usize,
        validation_now: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_resumes_on_another_micro_batch_not_other_data_or_method_and_old_states_read_as_sft()
     {
        let h = anneal_crds::hyperparameters::HyperparametersSpec::default().resolve();
        let data = DataOrder {
            seed: 1,
            train_samples: 4,
            mixed_per_epoch: Vec::new(),
            validation_samples: 1,
            dropped_too_long: 0,
            micro_batch_size: 2,
            gradient_accumulation: 1,
            steps_per_epoch: 2,
            validation_lines: vec![3],
        };
        let state = TrainerState {
            format: STATE_FORMAT,
            job: "j".into(),
            run_id: "r".into(),
            base_model: "m".into(),
            method: TrainingMethod::Sft,
            step: 1,
            total_steps: 2,
            epoch: 0.5,
            hyperparameters: h.clone(),
            data: data.clone(),
            rng: RngState::at(1, 1),
            tokens_seen: 10,
            train_seconds: 1.0,
            log_history: Vec::new(),
            checkpoints: Vec::new(),
            best_checkpoint: None,
            datasets: None,
            started_from: None,
        };
        assert_eq!(state.incompatibility(TrainingMethod::Sft, &h, &data), None);
        // Another device's micro-batch splits the same steps: the run continues.
        let split_finer = DataOrder {
            micro_batch_size: 1,
            gradient_accumulation: 2,
            ..data.clone()
        };
        assert_eq!(
            state.incompatibility(TrainingMethod::Sft, &h, &split_finer),
            None
        );
        let fewer_samples = DataOrder {
            train_samples: 3,
            ..data.clone()
        };
        assert!(matches!(
            state.incompatibility(TrainingMethod::Sft, &h, &fewer_samples),
            Some(Incompatibility::Data { train_now: 3, .. })
        ));
        let why = state
            .incompatibility(TrainingMethod::Dpo, &h, &data)
            .unwrap()
            .to_string();
        assert!(why.contains("method Sft"), "{why}");
        // A state written before `method` existed.
        let mut json: serde_json::Value = serde_json::from_str(&state.to_json()).unwrap();
        json.as_object_mut().unwrap().remove("method");
        let read = TrainerState::from_json(&json.to_string()).unwrap();
        assert_eq!(read.method, TrainingMethod::Sft);
    }

    #[test]
    fn step_seeds_differ_and_repeat() {
        assert_eq!(step_seed(42, 3), step_seed(42, 3));
        assert_ne!(step_seed(42, 3), step_seed(42, 4));
        assert_ne!(step_seed(42, 3), step_seed(43, 3));
    }
}
