//! The validation split: a seeded share of the training file held out when the
//! job names no validation file.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::tokenized::DataItem;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenized::TokenizedSample;

    #[test]
    fn the_split_is_seeded_disjoint_and_complete() {
        let samples: Vec<_> = (1..=20).map(|i| TokenizedSample::of_len(i, 4)).collect();
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
}
