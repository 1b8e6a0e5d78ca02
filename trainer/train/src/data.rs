//! The run's data: the training file tokenized, the validation set from its own file
//! or split off the training data with the job's seed, and the datasets mixed into
//! every epoch (`dataset.mix`), drawn afresh each epoch.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::PathBuf;

use anneal_crds::ResolvedHyperparameters;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::objective::Prepared;
use super::run::RunData;
use super::split::split_validation;
use super::state::DataOrder;
use super::tokenized::DataItem;

/// The examples of a run: conversations for SFT, preference pairs for DPO.
pub struct TrainingData<T> {
    /// The training file's examples, then each mixed set's (`dataset.mix`).
    pub train: Vec<T>,
    pub validation: Vec<T>,
    /// Where each mixed set is in `train`, and how many of it each epoch draws.
    pub mixed: Vec<MixedSet>,
    /// Samples over maxTokens, from every file.
    pub dropped_too_long: u64,
    pub dropped_untrainable: u64,
}

/// A dataset mixed into every epoch.
#[derive(Clone, Debug, PartialEq)]
pub struct MixedSet {
    /// Its file's name, for messages.
    pub name: String,
    /// Its examples: `train[start..start + len]`.
    pub start: usize,
    pub len: usize,
    /// Examples drawn each epoch: `weight` times the training file's.
    pub per_epoch: usize,
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
        let mut train = train;
        let main = train.len();
        let mut mixed = Vec::new();
        for set in &files.mix {
            let prepared = read(&(set.name.clone(), set.path.clone()))?;
            dropped_too_long += prepared.dropped_too_long;
            dropped_untrainable += prepared.dropped_untrainable;
            let per_epoch = ((set.weight * main as f64).round() as usize).max(1);
            mixed.push(MixedSet {
                name: set.name.clone(),
                start: train.len(),
                len: prepared.items.len(),
                per_epoch: if prepared.items.is_empty() {
                    0
                } else {
                    per_epoch
                },
            });
            train.extend(prepared.items);
        }
        Ok(Self {
            train,
            validation,
            mixed,
            dropped_too_long,
            dropped_untrainable,
        })
    }

    /// The training file's examples (`train` without the mixed sets).
    pub fn main_samples(&self) -> usize {
        self.mixed.first().map_or(self.train.len(), |set| set.start)
    }

    /// The samples an epoch trains on, as indices into `train`: every example of the
    /// training file, and each mixed set's `per_epoch` drawn with `(seed, epoch)`
    /// (without repeats while the set has enough; a smaller set is gone through
    /// again, reshuffled).
    pub fn epoch_pool(&self, seed: u64, epoch: u64) -> Vec<usize> {
        let mut pool: Vec<usize> = (0..self.main_samples()).collect();
        for (index, set) in self.mixed.iter().enumerate() {
            let mut rng = StdRng::seed_from_u64(
                seed ^ epoch.wrapping_mul(0x2545_F491_4F6C_DD1D)
                    ^ (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            );
            let mut drawn = 0;
            while drawn < set.per_epoch && set.len > 0 {
                let mut round: Vec<usize> = (set.start..set.start + set.len).collect();
                round.shuffle(&mut rng);
                let take = (set.per_epoch - drawn).min(set.len);
                pool.extend_from_slice(&round[..take]);
                drawn += take;
            }
        }
        pool
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
        let per_epoch = self.main_samples() + self.mixed.iter().map(|m| m.per_epoch).sum::<usize>();
        DataOrder {
            seed: hyperparameters.seed,
            train_samples: self.main_samples(),
            mixed_per_epoch: self.mixed.iter().map(|m| m.per_epoch as u64).collect(),
            validation_samples: self.validation.len(),
            dropped_too_long: self.dropped_too_long,
            micro_batch_size,
            gradient_accumulation: batch.div_ceil(micro_batch_size),
            steps_per_epoch: per_epoch.div_ceil(batch) as u64,
            validation_lines: self.validation.iter().map(DataItem::line).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenized::TokenizedSample;
    use std::collections::BTreeSet;

    /// `main` training samples, then mixed sets of the given lengths and draws.
    fn data(main: usize, sets: &[(usize, usize)]) -> TrainingData<TokenizedSample> {
        let sample = |line| TokenizedSample {
            line,
            ids: vec![1, 2],
            mask: vec![false, true],
        };
        let mut train: Vec<_> = (0..main as u64).map(sample).collect();
        let mut mixed = Vec::new();
        for (index, &(len, per_epoch)) in sets.iter().enumerate() {
            mixed.push(MixedSet {
                name: format!("mix-{index}"),
                start: train.len(),
                len,
                per_epoch,
            });
            train.extend((0..len as u64).map(sample));
        }
        TrainingData {
            train,
            validation: Vec::new(),
            mixed,
            dropped_too_long: 0,
            dropped_untrainable: 0,
        }
    }

    #[test]
    fn an_epoch_holds_every_training_sample_and_each_sets_share() {
        let data = data(10, &[(50, 5), (2, 6)]);
        assert_eq!(data.main_samples(), 10);
        let pool = data.epoch_pool(7, 0);
        assert_eq!(pool.len(), 10 + 5 + 6);
        assert_eq!(pool[..10], (0..10).collect::<Vec<_>>()[..]);
        // The large set: 5 different samples of its 50.
        let large: BTreeSet<usize> = pool
            .iter()
            .copied()
            .filter(|i| (10..60).contains(i))
            .collect();
        assert_eq!(large.len(), 5);
        // The small set is gone through again: each of its 2 samples 3 times.
        for index in [60, 61] {
            assert_eq!(pool.iter().filter(|&&i| i == index).count(), 3);
        }
        // Drawn afresh each epoch, the same for the same seed.
        assert_eq!(pool, data.epoch_pool(7, 0));
        let next: BTreeSet<usize> = (data.epoch_pool(7, 1).into_iter())
            .filter(|i| (10..60).contains(i))
            .collect();
        assert_ne!(large, next);
        // Over many epochs the large set's draws spread over all of it.
        let seen: BTreeSet<usize> = (0..40)
            .flat_map(|epoch| data.epoch_pool(7, epoch))
            .filter(|i| (10..60).contains(i))
            .collect();
        assert!(seen.len() > 45, "{} of 50", seen.len());
    }

    #[test]
    fn the_steps_of_an_epoch_count_the_mixed_samples() {
        let h = anneal_crds::hyperparameters::HyperparametersSpec {
            batch_size: Some(4),
            ..Default::default()
        }
        .resolve();
        let order = data(12, &[(40, 6)]).order(&h, 4);
        assert_eq!(order.train_samples, 12);
        assert_eq!(order.mixed_per_epoch, [6]);
        assert_eq!(order.steps_per_epoch, 5, "18 samples in steps of 4");
        assert_eq!(data(12, &[]).order(&h, 4).steps_per_epoch, 3);
    }
}
