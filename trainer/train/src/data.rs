//! The run's data: the training file tokenized, and the validation set from its
//! own file or split off the training data with the job's seed.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::PathBuf;

use anneal_crds::ResolvedHyperparameters;

use super::objective::Prepared;
use super::run::RunData;
use super::split::split_validation;
use super::state::DataOrder;
use super::tokenized::DataItem;

/// The examples of a run: conversations for SFT, preference pairs for DPO.
pub struct TrainingData<T> {
    pub train: Vec<T>,
    pub validation: Vec<T>,
    /// Samples over maxTokens, from both files.
    pub dropped_too_long: u64,
    pub dropped_untrainable: u64,
}

/// Why a dataset could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("reading the dataset: {0}")]
    Io(#[from] std::io::Error),
    /// A line the dataset rules refuse.
    #[error(transparent)]
    Invalid(#[from] anneal_crds::dataset::DatasetProblem),
    #[error("line {line}: a DPO line needs chosen and rejected")]
    NoPreferencePair { line: u64 },
    #[error("line {line}: {source}")]
    Tokenize {
        line: u64,
        source: anneal_model::chat::ChatError,
    },
    /// Every sample was dropped: too long, or nothing left to learn from.
    #[error(
        "no {what} left to train on ({too_long} longer than maxTokens {max_tokens}, {untrainable} with {why})"
    )]
    NothingLeft {
        /// `sample`, or `preference pair`.
        what: &'static str,
        too_long: u64,
        max_tokens: usize,
        untrainable: u64,
        /// Why the untrainable ones were dropped.
        why: &'static str,
    },
}

/// Which file a data problem is in.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {source}")]
pub struct DatasetError {
    pub file: String,
    pub source: DataError,
}

impl<T: DataItem> TrainingData<T> {
    /// `read` turns one file, read as it goes, into examples (the objective's
    /// reader); a split-off validation set is drawn with `seed`.
    pub fn prepare(
        files: &RunData,
        seed: u64,
        read: impl Fn(&mut dyn Read) -> Result<Prepared<T>, DataError>,
    ) -> Result<Self, DatasetError> {
        let read = |(file, path): &(String, PathBuf)| {
            let error = |source| DatasetError {
                file: file.clone(),
                source,
            };
            let mut reader = BufReader::new(File::open(path).map_err(|e| error(e.into()))?);
            read(&mut reader).map_err(error)
        };
        let prepared = read(&files.train)?;
        let mut dropped_too_long = prepared.dropped_too_long;
        let mut dropped_untrainable = prepared.dropped_untrainable;
        let (train, validation) = match &files.validation {
            Some(file) => {
                let held_out = read(file)?;
                dropped_too_long += held_out.dropped_too_long;
                dropped_untrainable += held_out.dropped_untrainable;
                (prepared.items, held_out.items)
            }
            None => split_validation(prepared.items, files.validation_split, seed),
        };
        Ok(Self {
            train,
            validation,
            dropped_too_long,
            dropped_untrainable,
        })
    }

    /// The order the run sees the data in, for `trainer_state.json`: steps of
    /// `batchSize` samples, each run as micro-batches of at most `micro_batch`.
    pub fn order(
        &self,
        hyperparameters: &ResolvedHyperparameters,
        micro_batch: usize,
    ) -> DataOrder {
        let batch = hyperparameters.batch_size.max(1) as usize;
        let micro_batch_size = micro_batch.clamp(1, batch);
        DataOrder {
            seed: hyperparameters.seed,
            train_samples: self.train.len(),
            validation_samples: self.validation.len(),
            dropped_too_long: self.dropped_too_long,
            micro_batch_size,
            gradient_accumulation: batch.div_ceil(micro_batch_size),
            steps_per_epoch: self.train.len().div_ceil(batch) as u64,
            validation_lines: self.validation.iter().map(DataItem::line).collect(),
        }
    }
}
