//! The order an image job's examples are seen in: each epoch, every example
//! `repeats` times, shuffled with a seed of the epoch's own, then grouped into batches
//! of one bucket (so a batch stacks into one tensor) and the batches shuffled. The
//! number of steps an epoch takes depends only on the bucket counts, so the
//! schedule's length is known before the first step, and an epoch's order only on
//! the seed and the epoch, so a resumed run sees what the first run would have.

use std::collections::BTreeMap;

use anneal_image::buckets::Bucket;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

/// Optimizer steps in one epoch: per bucket, its examples times `repeats`, in
/// batches of `batch_size` (the last one may be smaller).
pub fn steps_per_epoch(buckets: &[Bucket], repeats: u32, batch_size: usize) -> u64 {
    bucket_counts(buckets)
        .values()
        .map(|count| (count * repeats as usize).div_ceil(batch_size.max(1)) as u64)
        .sum()
}

fn bucket_counts(buckets: &[Bucket]) -> BTreeMap<Bucket, usize> {
    let mut counts = BTreeMap::new();
    for bucket in buckets {
        *counts.entry(*bucket).or_insert(0) += 1;
    }
    counts
}

/// Epoch `epoch`'s batches, as indices into `buckets` (each example's bucket).
pub fn epoch_batches(
    buckets: &[Bucket],
    repeats: u32,
    batch_size: usize,
    seed: u64,
    epoch: u64,
) -> Vec<Vec<usize>> {
    let mut rng = StdRng::seed_from_u64(epoch_seed(seed, epoch));
    let mut seen: Vec<usize> = (0..buckets.len())
        .flat_map(|index| std::iter::repeat_n(index, repeats as usize))
        .collect();
    seen.shuffle(&mut rng);
    // In shuffled order within each bucket, then cut into batches.
    let mut by_bucket: BTreeMap<Bucket, Vec<usize>> = BTreeMap::new();
    for index in seen {
        by_bucket.entry(buckets[index]).or_default().push(index);
    }
    let mut batches: Vec<Vec<usize>> = by_bucket
        .into_values()
        .flat_map(|indices| {
            indices
                .chunks(batch_size.max(1))
                .map(<[usize]>::to_vec)
                .collect::<Vec<_>>()
        })
        .collect();
    batches.shuffle(&mut rng);
    batches
}

fn epoch_seed(seed: u64, epoch: u64) -> u64 {
    seed ^ (epoch + 1).wrapping_mul(0xD6E8_FEB8_6659_FD93)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SQUARE: Bucket = Bucket {
        width: 64,
        height: 64,
    };
    const WIDE: Bucket = Bucket {
        width: 64,
        height: 48,
    };

    #[test]
    fn every_example_is_seen_repeats_times_in_batches_of_one_bucket() {
        let buckets = [SQUARE, WIDE, SQUARE, SQUARE, WIDE];
        let batches = epoch_batches(&buckets, 3, 2, 42, 0);
        // Square: 3 examples x 3 = 9 -> 5 batches; wide: 2 x 3 = 6 -> 3 batches.
        assert_eq!(batches.len(), 8);
        assert_eq!(steps_per_epoch(&buckets, 3, 2), 8);
        let mut seen = [0; 5];
        for batch in &batches {
            assert!(!batch.is_empty() && batch.len() <= 2);
            assert!(
                batch.iter().all(|&i| buckets[i] == buckets[batch[0]]),
                "{batch:?}"
            );
            for &i in batch {
                seen[i] += 1;
            }
        }
        assert_eq!(seen, [3; 5]);
    }

    #[test]
    fn an_epochs_order_depends_on_the_seed_and_the_epoch_only() {
        let buckets = [SQUARE; 6];
        let first = epoch_batches(&buckets, 4, 1, 42, 0);
        assert_eq!(first, epoch_batches(&buckets, 4, 1, 42, 0));
        assert_ne!(first, epoch_batches(&buckets, 4, 1, 42, 1));
        assert_ne!(first, epoch_batches(&buckets, 4, 1, 7, 0));
    }
}
