//! SFT data: dataset lines to token ids with the assistant mask, samples over the
//! token limit dropped and counted, a seeded validation split, and batches grouped
//! by length so little compute goes to padding.

use std::io::Read;

use anneal_crds::dataset::{DatasetKind, DatasetLimits, read_samples};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::chat::ModelTokenizer;

/// One conversation as the model sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenizedSample {
    /// Line in the dataset file, for messages.
    pub line: u64,
    pub ids: Vec<u32>,
    /// True where the token is trained on (assistant content and end-of-turn).
    pub mask: Vec<bool>,
}

/// What the split and the batching need to know of a training example: its dataset
/// line (the split's order) and its length in tokens (the batches' grouping).
pub trait DataItem {
    fn line(&self) -> u64;
    /// Tokens the model reads for the example, padding aside.
    fn tokens(&self) -> usize;
}

impl DataItem for TokenizedSample {
    fn line(&self) -> u64 {
        self.line
    }

    fn tokens(&self) -> usize {
        self.ids.len()
    }
}

/// What reading a dataset gave.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PreparedData {
    pub samples: Vec<TokenizedSample>,
    /// Samples longer than `max_tokens`, dropped, never truncated.
    pub dropped_too_long: u64,
    /// Samples with no trained token left (e.g. every assistant turn empty after tokenization).
    pub dropped_untrainable: u64,
}

/// Why a dataset could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("reading the dataset: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Invalid(String),
    #[error("line {line}: {message}")]
    Tokenize { line: u64, message: String },
}

/// Reads and tokenizes a dataset. Any invalid line fails the whole read: training
/// never starts on data the validator would refuse.
pub fn prepare(
    reader: impl Read,
    tokenizer: &ModelTokenizer,
    max_tokens: usize,
) -> Result<PreparedData, DataError> {
    let mut prepared = PreparedData::default();
    for item in read_samples(reader, DatasetKind::Sft, &DatasetLimits::default()) {
        let (line, sample) = item?;
        let sample = sample.map_err(|problem| DataError::Invalid(problem.to_string()))?;
        let encoded = tokenizer
            .encode_chat(&sample.messages, false)
            .map_err(|e| DataError::Tokenize {
                line,
                message: e.to_string(),
            })?;
        if encoded.ids.len() > max_tokens {
            prepared.dropped_too_long += 1;
            continue;
        }
        // The last token predicts nothing, so a trained token must appear after the first.
        if !encoded.assistant_mask.iter().skip(1).any(|&m| m) {
            prepared.dropped_untrainable += 1;
            continue;
        }
        prepared.samples.push(TokenizedSample {
            line,
            ids: encoded.ids,
            mask: encoded.assistant_mask,
        });
    }
    if prepared.samples.is_empty() {
        return Err(DataError::Invalid(format!(
            "no sample left to train on ({} longer than maxTokens {max_tokens}, {} with nothing to learn)",
            prepared.dropped_too_long, prepared.dropped_untrainable
        )));
    }
    Ok(prepared)
}

/// Splits off `fraction` of the samples for validation, the same way for the same
/// seed; at least one sample each side when there are two or more.
pub fn split_validation<T: DataItem>(
    mut samples: Vec<T>,
    fraction: f64,
    seed: u64,
) -> (Vec<T>, Vec<T>) {
    if fraction <= 0.0 || samples.len() < 2 {
        return (samples, Vec::new());
    }
    samples.shuffle(&mut StdRng::seed_from_u64(seed ^ 0x5EED_5917));
    let count = ((samples.len() as f64 * fraction).round() as usize).clamp(1, samples.len() - 1);
    let validation = samples.split_off(samples.len() - count);
    // Back to file order, so the training order depends only on the epoch shuffle.
    samples.sort_by_key(DataItem::line);
    let mut validation = validation;
    validation.sort_by_key(DataItem::line);
    (samples, validation)
}

/// The samples of one epoch in micro-batches of `micro_batch` indices: shuffled by
/// `(seed, epoch)`, then grouped so each micro-batch holds samples of similar length.
pub fn epoch_batches<T: DataItem>(
    samples: &[T],
    micro_batch: usize,
    seed: u64,
    epoch: u64,
) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..samples.len()).collect();
    order.shuffle(&mut StdRng::seed_from_u64(
        seed.wrapping_add(epoch.wrapping_mul(0x9E37_79B9)),
    ));
    // Sort by length inside windows of a few batches: most of the padding saving of a
    // full sort, while each batch still mixes samples from across the file.
    let window = micro_batch * 8;
    for chunk in order.chunks_mut(window) {
        chunk.sort_by_key(|&i| samples[i].tokens());
    }
    let mut batches: Vec<Vec<usize>> = order.chunks(micro_batch).map(<[usize]>::to_vec).collect();
    batches.shuffle(&mut StdRng::seed_from_u64(
        seed ^ epoch.wrapping_mul(0xA5A5_A5A5),
    ));
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(line: u64, len: usize) -> TokenizedSample {
        TokenizedSample {
            line,
            ids: vec![1; len],
            mask: vec![true; len],
        }
    }

    #[test]
    fn the_split_is_seeded_disjoint_and_complete() {
        let samples: Vec<_> = (1..=20).map(|i| sample(i, 4)).collect();
        let (train, valid) = split_validation(samples.clone(), 0.1, 42);
        assert_eq!((train.len(), valid.len()), (18, 2));
        assert_eq!(
            split_validation(samples.clone(), 0.1, 42),
            (train.clone(), valid.clone())
        );
        assert_ne!(split_validation(samples.clone(), 0.1, 43).1, valid);
        let mut lines: Vec<u64> = train.iter().chain(&valid).map(|s| s.line).collect();
        lines.sort();
        assert_eq!(lines, (1..=20).collect::<Vec<_>>());
        assert_eq!(split_validation(samples, 0.0, 42).1.len(), 0);
    }

    #[test]
    fn batches_cover_every_sample_once_and_group_lengths() {
        let samples: Vec<_> = (0..64)
            .map(|i| sample(i, 1 + (i as usize * 37) % 50))
            .collect();
        let batches = epoch_batches(&samples, 4, 7, 0);
        let mut seen: Vec<usize> = batches.iter().flatten().copied().collect();
        seen.sort();
        assert_eq!(seen, (0..64).collect::<Vec<_>>());
        assert_eq!(
            batches,
            epoch_batches(&samples, 4, 7, 0),
            "same seed and epoch, same batches"
        );
        assert_ne!(
            batches,
            epoch_batches(&samples, 4, 7, 1),
            "a new epoch reshuffles"
        );
        // Padding: tokens in batches padded to their longest sample, against no grouping at all.
        let padded = |batches: &[Vec<usize>]| -> usize {
            batches
                .iter()
                .map(|b| b.len() * b.iter().map(|&i| samples[i].ids.len()).max().unwrap())
                .sum()
        };
        let ungrouped: Vec<Vec<usize>> = (0..64)
            .collect::<Vec<_>>()
            .chunks(4)
            .map(<[usize]>::to_vec)
            .collect();
        assert!(
            padded(&batches) * 10 < padded(&ungrouped) * 8,
            "{} vs {}",
            padded(&batches),
            padded(&ungrouped)
        );
    }
}
