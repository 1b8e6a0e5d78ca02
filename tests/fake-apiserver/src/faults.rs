//! Faults on purpose: a seeded schedule that makes a share of requests fail as a busy
//! or restarting API server would: `500 InternalError` on any request, `409 Conflict`
//! on writes (nothing is written), latency, `410 Expired` when a watch starts (the
//! client must list again), and watch streams cut off after a while. Which request
//! gets which fault depends only on the seed and the request's number among those the
//! schedule applies to, so a failing run can be repeated.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What to inject, in percent of the requests it applies to.
#[derive(Clone, Debug)]
pub struct FaultSchedule {
    pub seed: u64,
    /// Only requests from this user (the bearer token); `None`: every request.
    pub user: Option<String>,
    /// Any request answered `500 InternalError` without being served.
    pub server_error_percent: u64,
    /// A write (create, update, patch, delete) answered `409 Conflict` unapplied.
    pub conflict_percent: u64,
    /// Any request held for `latency` first.
    pub latency_percent: u64,
    pub latency: Duration,
    /// A watch answered `410 Expired` at once.
    pub watch_gone_percent: u64,
    /// A watch stream ended after between 0 and `watch_drop_within`.
    pub watch_drop_percent: u64,
    pub watch_drop_within: Duration,
}

/// How many of each fault were injected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Requests the schedule applied to.
    pub requests: u64,
    pub server_errors: u64,
    pub conflicts: u64,
    pub latencies: u64,
    pub watches_gone: u64,
    pub watches_dropped: u64,
}

impl FaultCounts {
    pub fn faults(&self) -> u64 {
        self.server_errors
            + self.conflicts
            + self.latencies
            + self.watches_gone
            + self.watches_dropped
    }
}

/// The fault one request gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    ServerError,
    Conflict,
    Latency(Duration),
    WatchGone,
    WatchDrop(Duration),
}

/// The schedule in force and what it did.
#[derive(Debug, Default)]
pub struct Faults {
    schedule: Mutex<Option<FaultSchedule>>,
    numbered: AtomicU64,
    counts: Mutex<FaultCounts>,
}

/// A request as the schedule sees it.
pub struct Attempt<'a> {
    pub user: &'a str,
    pub write: bool,
    pub watch: bool,
}

impl Faults {
    pub fn set(&self, schedule: Option<FaultSchedule>) {
        *self.schedule.lock().unwrap_or_else(|p| p.into_inner()) = schedule;
    }

    pub fn counts(&self) -> FaultCounts {
        *self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The fault for this request, if it gets one (and counts it).
    pub fn draw(&self, attempt: &Attempt) -> Option<Fault> {
        let schedule = self
            .schedule
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()?;
        if schedule
            .user
            .as_deref()
            .is_some_and(|user| user != attempt.user)
        {
            return None;
        }
        let number = self.numbered.fetch_add(1, Ordering::SeqCst);
        let roll = splitmix(schedule.seed ^ number.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let percent = roll % 100;
        // A second draw from the same roll picks a duration.
        let fraction = ((roll >> 32) % 1000) as f64 / 1000.0;
        let mut threshold = 0;
        let mut take = |share: u64, applies: bool| {
            if !applies {
                return false;
            }
            threshold += share;
            percent < threshold
        };
        let fault = if take(schedule.server_error_percent, true) {
            Some(Fault::ServerError)
        } else if take(schedule.conflict_percent, attempt.write) {
            Some(Fault::Conflict)
        } else if take(schedule.watch_gone_percent, attempt.watch) {
            Some(Fault::WatchGone)
        } else if take(schedule.watch_drop_percent, attempt.watch) {
            Some(Fault::WatchDrop(
                schedule.watch_drop_within.mul_f64(fraction),
            ))
        } else if take(schedule.latency_percent, true) {
            Some(Fault::Latency(
                schedule.latency.mul_f64(0.5 + fraction / 2.0),
            ))
        } else {
            None
        };
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.requests += 1;
        match fault {
            Some(Fault::ServerError) => counts.server_errors += 1,
            Some(Fault::Conflict) => counts.conflicts += 1,
            Some(Fault::Latency(_)) => counts.latencies += 1,
            Some(Fault::WatchGone) => counts.watches_gone += 1,
            Some(Fault::WatchDrop(_)) => counts.watches_dropped += 1,
            None => {}
        }
        fault
    }
}

fn splitmix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(seed: u64) -> FaultSchedule {
        FaultSchedule {
            seed,
            user: Some("operator".into()),
            server_error_percent: 5,
            conflict_percent: 5,
            latency_percent: 10,
            latency: Duration::from_millis(100),
            watch_gone_percent: 10,
            watch_drop_percent: 10,
            watch_drop_within: Duration::from_secs(2),
        }
    }

    fn draws(seed: u64, attempt: &Attempt) -> Vec<Option<Fault>> {
        let faults = Faults::default();
        faults.set(Some(schedule(seed)));
        (0..2000).map(|_| faults.draw(attempt)).collect()
    }

    #[test]
    fn faults_follow_the_seed_the_user_and_the_kind_of_request() {
        let read = Attempt {
            user: "operator",
            write: false,
            watch: false,
        };
        assert_eq!(draws(3, &read), draws(3, &read));
        assert_ne!(draws(3, &read), draws(4, &read));
        let reads = draws(3, &read);
        assert!(
            !reads.contains(&Some(Fault::Conflict)),
            "no conflict on a read"
        );
        assert!(!reads.iter().any(|f| matches!(f, Some(Fault::WatchDrop(_)))));
        let errors = reads
            .iter()
            .filter(|f| **f == Some(Fault::ServerError))
            .count();
        assert!((60..140).contains(&errors), "{errors} of 2000");
        let watch = Attempt {
            user: "operator",
            write: false,
            watch: true,
        };
        let watches = draws(3, &watch);
        let gone = watches
            .iter()
            .filter(|f| **f == Some(Fault::WatchGone))
            .count();
        assert!((140..260).contains(&gone), "{gone} of 2000");
        let other_user = Attempt {
            user: "test",
            write: true,
            watch: false,
        };
        assert!(draws(3, &other_user).iter().all(Option::is_none));
    }
}
