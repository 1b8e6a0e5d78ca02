//! The order of an epoch: its micro-batches of sample indices, shuffled by the
//! seed and the epoch and grouped by length so little compute goes to padding.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::tokenized::DataItem;

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
    use crate::tokenized::TokenizedSample;

    #[test]
    fn batches_cover_every_sample_once_and_group_lengths() {
        let samples: Vec<_> = (0..64)
            .map(|i| TokenizedSample::of_len(i, 1 + (i as usize * 37) % 50))
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
