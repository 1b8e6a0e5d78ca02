//! The order of an epoch: its optimizer steps' batches of sample indices, shuffled by
//! the seed and the epoch and grouped by length so little compute goes to padding;
//! and a step's batch split into the micro-batches the device runs. The order depends
//! on `(seed, epoch, batchSize)` alone, never on the device's micro-batch.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::tokenized::DataItem;

/// The samples of one epoch (`pool`, indices into `samples`) in step batches of
/// `batch` indices (`batchSize`; the last may be shorter): shuffled by `(seed,
/// epoch)`, then grouped so each batch holds samples of similar length, in ascending
/// length within a batch.
pub fn epoch_batches<T: DataItem>(
    samples: &[T],
    pool: Vec<usize>,
    batch: usize,
    seed: u64,
    epoch: u64,
) -> Vec<Vec<usize>> {
    let mut order = pool;
    order.shuffle(&mut StdRng::seed_from_u64(
        seed.wrapping_add(epoch.wrapping_mul(0x9E37_79B9)),
    ));
    // Sort by length inside windows of a few batches: most of the padding saving of a
    // full sort, while each batch still mixes samples from across the file.
    let window = batch * 8;
    for chunk in order.chunks_mut(window) {
        chunk.sort_by_key(|&i| samples[i].tokens());
    }
    let mut batches: Vec<Vec<usize>> = order.chunks(batch).map(<[usize]>::to_vec).collect();
    batches.shuffle(&mut StdRng::seed_from_u64(
        seed ^ epoch.wrapping_mul(0xA5A5_A5A5),
    ));
    batches
}

/// A step's `batch` in the fewest micro-batches of at most `micro_batch` samples (or
/// packed rows), their sizes differing by at most one (32 samples at 12 run as
/// 11, 11 and 10, not 12, 12 and 8), each a run of neighbours so it keeps the batch's
/// grouping by length.
pub fn split_evenly<T>(batch: &[T], micro_batch: usize) -> Vec<&[T]> {
    let parts = batch.len().div_ceil(micro_batch.max(1));
    let mut rest = batch;
    (0..parts)
        .map(|part| {
            // The first `len % parts` micro-batches take one sample more.
            let size = rest.len().div_ceil(parts - part);
            let (head, tail) = rest.split_at(size);
            rest = tail;
            head
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenized::TokenizedSample;

    #[test]
    fn batches_cover_every_sample_once_and_group_lengths() {
        let samples: Vec<_> = (0..64)
            .map(|i| TokenizedSample::of_len(i, 1 + (i as usize * 37) % 50))
            .collect();
        let batches = epoch_batches(&samples, (0..samples.len()).collect(), 4, 7, 0);
        let mut seen: Vec<usize> = batches.iter().flatten().copied().collect();
        seen.sort();
        assert_eq!(seen, (0..64).collect::<Vec<_>>());
        assert_eq!(
            batches,
            epoch_batches(&samples, (0..samples.len()).collect(), 4, 7, 0),
            "same seed and epoch, same batches"
        );
        assert_ne!(
            batches,
            epoch_batches(&samples, (0..samples.len()).collect(), 4, 7, 1),
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

    #[test]
    fn a_step_splits_into_the_fewest_micro_batches_of_near_equal_size() {
        let sizes = |len: usize, micro: usize| -> Vec<usize> {
            let batch: Vec<usize> = (100..100 + len).collect();
            let parts = split_evenly(&batch, micro);
            let joined: Vec<usize> = parts.concat();
            assert_eq!(
                joined, batch,
                "{len} at {micro}: every sample once, in order"
            );
            parts.iter().map(|p| p.len()).collect()
        };
        assert_eq!(sizes(32, 12), [11, 11, 10]);
        assert_eq!(sizes(32, 32), [32]);
        assert_eq!(sizes(32, 40), [32]);
        assert_eq!(sizes(8, 7), [4, 4]);
        assert_eq!(sizes(8, 3), [3, 3, 2]);
        assert_eq!(sizes(16, 4), [4, 4, 4, 4]);
        assert_eq!(sizes(3, 2), [2, 1], "an epoch's short last step");
        assert_eq!(sizes(5, 1), [1, 1, 1, 1, 1]);
        assert_eq!(sizes(1, 4), [1]);
    }
}
