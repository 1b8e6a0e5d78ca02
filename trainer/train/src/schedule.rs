//! The learning-rate schedule: linear warmup to the peak rate, then cosine decay
//! towards zero at the last step (the schedule Hugging Face calls
//! `cosine_with_warmup`), as a pure function of the step so a resumed run follows
//! exactly the curve the uninterrupted one would have.

use std::f64::consts::PI;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LearningRateSchedule {
    pub peak: f64,
    pub warmup_steps: u64,
    pub total_steps: u64,
}

impl LearningRateSchedule {
    /// `warmup_ratio` of the total steps, rounded up, warm up.
    pub fn new(peak: f64, warmup_ratio: f64, total_steps: u64) -> Self {
        let warmup_steps = (total_steps as f64 * warmup_ratio).ceil() as u64;
        Self {
            peak,
            warmup_steps: warmup_steps.min(total_steps),
            total_steps,
        }
    }

    /// The rate for optimizer step `step` (0-based). Warmup starts above zero, so no
    /// step is spent at a rate of 0.
    pub fn at(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return self.peak * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let decay_steps = self.total_steps.saturating_sub(self.warmup_steps).max(1);
        let progress = (step - self.warmup_steps) as f64 / decay_steps as f64;
        self.peak * 0.5 * (1.0 + (PI * progress.min(1.0)).cos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warms_up_linearly_then_decays_by_a_cosine() {
        let s = LearningRateSchedule::new(1e-3, 0.1, 100);
        assert_eq!(s.warmup_steps, 10);
        assert!((s.at(0) - 1e-4).abs() < 1e-12);
        assert!((s.at(4) - 5e-4).abs() < 1e-12);
        assert!((s.at(9) - 1e-3).abs() < 1e-12);
        assert!((s.at(10) - 1e-3).abs() < 1e-12);
        // Halfway through the decay the rate is half the peak.
        assert!((s.at(55) - 5e-4).abs() < 1e-12);
        assert!(s.at(99) > 0.0 && s.at(99) < 1e-6);
        let rates: Vec<f64> = (10..100).map(|i| s.at(i)).collect();
        assert!(rates.windows(2).all(|w| w[1] < w[0]), "decay is monotone");
    }

    #[test]
    fn no_warmup_starts_at_the_peak() {
        let s = LearningRateSchedule::new(2e-4, 0.0, 3);
        assert_eq!(s.warmup_steps, 0);
        assert_eq!(s.at(0), 2e-4);
        assert!((s.at(1) - 2e-4 * 0.75).abs() < 1e-12);
        let one = LearningRateSchedule::new(2e-4, 0.5, 1);
        assert_eq!(one.at(0), 2e-4);
    }
}
