//! How long the poster waits between failed posts.

use std::time::Duration;

/// Waits between failed posts: 0.5 s doubling to 30 s, each spread ±25% so that
/// many pods do not retry an operator that comes back all at the same moment.
#[derive(Debug)]
pub struct Backoff {
    base: Duration,
}

impl Backoff {
    pub const FIRST: Duration = Duration::from_millis(500);
    pub const MAX: Duration = Duration::from_secs(30);

    pub fn new() -> Self {
        Self { base: Self::FIRST }
    }

    /// The wait before the next attempt; `jitter` in [0, 1) picks where in the
    /// ±25% spread it falls.
    pub fn next_delay(&mut self, jitter: f64) -> Duration {
        let delay = spread(self.base, jitter);
        self.base = (self.base * 2).min(Self::MAX);
        delay
    }

    /// After a post got through: the next problem starts from the first wait again.
    pub fn reset(&mut self) {
        self.base = Self::FIRST;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

/// `base` scaled by 0.75 + `jitter` / 2, for `jitter` in [0, 1).
pub(super) fn spread(base: Duration, jitter: f64) -> Duration {
    base.mul_f64(0.75 + jitter.clamp(0.0, 1.0) / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_half_a_second_to_thirty_and_starts_over_after_success() {
        let mut backoff = Backoff::new();
        // Jitter 0.5 is the middle of the spread: the bare schedule.
        let waits: Vec<f64> = (0..9)
            .map(|_| backoff.next_delay(0.5).as_secs_f64())
            .collect();
        assert_eq!(waits, [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]);
        backoff.reset();
        assert_eq!(backoff.next_delay(0.5), Duration::from_millis(500));
    }

    #[test]
    fn jitter_spreads_each_wait_by_a_quarter_either_way() {
        let mut low = Backoff::new();
        let mut high = Backoff::new();
        for _ in 0..3 {
            low.next_delay(0.0);
            high.next_delay(0.999_999);
        }
        // The fourth wait is 4 s before jitter.
        assert_eq!(low.next_delay(0.0), Duration::from_secs(3));
        let high = high.next_delay(0.999_999).as_secs_f64();
        assert!((4.99..5.0).contains(&high), "{high}");
    }
}
