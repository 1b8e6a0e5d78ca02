//! How much a metric's mean over the evaluated samples can be trusted: the
//! percentile bootstrap. The samples are drawn again with replacement, `resamples`
//! times, from a seeded generator (the same report for the same answers); the
//! interval holds the middle `confidence` share of the resampled means. For two
//! models answering the same prompts, [`bootstrap_difference`] resamples the pairs
//! together, so that prompts hard for both do not widen the interval of their
//! difference.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

/// The resamples a report takes by default: enough for the 2.5th and 97.5th
/// percentiles to be stable to about a tenth of the interval.
pub const RESAMPLES: usize = 1000;

/// A mean and the interval around it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub mean: f64,
    pub low: f64,
    pub high: f64,
}

/// The mean of `scores` and its percentile interval at `confidence` (0.95); `None`
/// when there are no scores.
pub fn bootstrap_mean(
    scores: &[f64],
    resamples: usize,
    confidence: f64,
    seed: u64,
) -> Option<Interval> {
    bootstrap(scores.len(), resamples, confidence, seed, |i| scores[i])
}

/// The mean of `a[i] − b[i]` (the same samples answered by two models) and its
/// interval; `None` when there are none. Panics when the lengths differ.
pub fn bootstrap_difference(
    a: &[f64],
    b: &[f64],
    resamples: usize,
    confidence: f64,
    seed: u64,
) -> Option<Interval> {
    assert_eq!(a.len(), b.len(), "the same samples, scored for both models");
    bootstrap(a.len(), resamples, confidence, seed, |i| a[i] - b[i])
}

fn bootstrap(
    count: usize,
    resamples: usize,
    confidence: f64,
    seed: u64,
    value: impl Fn(usize) -> f64,
) -> Option<Interval> {
    if count == 0 {
        return None;
    }
    let mean = (0..count).map(&value).sum::<f64>() / count as f64;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut means: Vec<f64> = (0..resamples.max(1))
        .map(|_| {
            (0..count)
                .map(|_| value(rng.random_range(0..count)))
                .sum::<f64>()
                / count as f64
        })
        .collect();
    means.sort_by(f64::total_cmp);
    let tail = (1.0 - confidence.clamp(0.0, 1.0)) / 2.0;
    Some(Interval {
        mean,
        low: percentile(&means, tail),
        high: percentile(&means, 1.0 - tail),
    })
}

/// The `q` quantile of sorted `values`, linearly interpolated between ranks (numpy's
/// default).
fn percentile(values: &[f64], q: f64) -> f64 {
    let position = q * (values.len() - 1) as f64;
    let (below, above) = (position.floor() as usize, position.ceil() as usize);
    let weight = position - below as f64;
    values[below] * (1.0 - weight) + values[above] * weight
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_scores_have_no_spread_and_no_scores_no_interval() {
        let interval = bootstrap_mean(&[0.5; 20], RESAMPLES, 0.95, 1).unwrap();
        assert_eq!(
            interval,
            Interval {
                mean: 0.5,
                low: 0.5,
                high: 0.5
            }
        );
        assert_eq!(bootstrap_mean(&[], RESAMPLES, 0.95, 1), None);
    }

    #[test]
    fn a_coin_flips_interval_is_the_normal_approximations() {
        // 400 samples, half of them 1: the mean's standard error is sqrt(0.25 / 400) =
        // 0.025, so a 95% interval is about 0.5 ± 1.96 · 0.025 = [0.451, 0.549].
        let scores: Vec<f64> = (0..400).map(|i| f64::from(i % 2)).collect();
        let interval = bootstrap_mean(&scores, 4000, 0.95, 7).unwrap();
        assert_eq!(interval.mean, 0.5);
        assert!((interval.low - 0.451).abs() < 0.01, "{interval:?}");
        assert!((interval.high - 0.549).abs() < 0.01, "{interval:?}");
        // Fewer samples, a wider interval; the same seed, the same interval.
        let few = bootstrap_mean(&scores[..40], 4000, 0.95, 7).unwrap();
        assert!(
            few.high - few.low > 2.5 * (interval.high - interval.low),
            "{few:?}"
        );
        assert_eq!(few, bootstrap_mean(&scores[..40], 4000, 0.95, 7).unwrap());
        // Another seed draws other resamples (scores that are not all 0 or 1, so that
        // the percentiles can tell).
        let spread: Vec<f64> = (0..50).map(|i| f64::from((i * 37) % 101) / 100.0).collect();
        assert_ne!(
            bootstrap_mean(&spread, 500, 0.95, 7),
            bootstrap_mean(&spread, 500, 0.95, 8)
        );
    }

    #[test]
    fn a_paired_difference_ignores_what_both_models_share() {
        // Both models score the same on every prompt but one in ten, where the first
        // is right and the second wrong: the difference is 0.1 with a narrow interval,
        // though each model's own scores spread from 0 to 1.
        let a: Vec<f64> = (0..200)
            .map(|i| f64::from(i % 3 == 0 || i % 10 == 0))
            .collect();
        let b: Vec<f64> = (0..200).map(|i| f64::from(i % 3 == 0)).collect();
        let difference = bootstrap_difference(&a, &b, RESAMPLES, 0.95, 3).unwrap();
        let shared = (0..200).filter(|i| i % 3 == 0 && i % 10 == 0).count() as f64;
        assert!((difference.mean - (20.0 - shared) / 200.0).abs() < 1e-12);
        assert!(difference.low > 0.0, "{difference:?}");
        let own = bootstrap_mean(&a, RESAMPLES, 0.95, 3).unwrap();
        assert!(difference.high - difference.low < own.high - own.low);
    }

    #[test]
    fn percentiles_interpolate_between_ranks() {
        let values = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(percentile(&values, 0.0), 1.0);
        assert_eq!(percentile(&values, 0.5), 3.0);
        assert!((percentile(&values, 0.1) - 1.4).abs() < 1e-12);
        assert_eq!(percentile(&values, 1.0), 5.0);
    }
}
