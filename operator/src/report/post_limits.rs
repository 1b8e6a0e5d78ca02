//! What one post to the report endpoint may cost the operator, decided before its
//! body is read: refused posts are limited per source address, accepted ones per
//! job, and the bodies being read at once share one byte budget. Together they bound
//! the operator's memory whatever any pod in the cluster sends (48 wrong-token posts
//! of 8 MiB once took it from 15 to 433 MB).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::job_reports::JobKey;

/// Tunables; [`Default`] is what the operator runs with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostLimitSettings {
    /// Largest body accepted: a trainer batch is at most 100 events, and a checkpoint
    /// event's samples are a few kilobytes each.
    pub body_bytes_max: usize,
    /// Bytes of bodies being read at once, over all posts.
    pub buffered_bytes_max: usize,
    /// Posts a second one job's trainer may make, and the burst above it.
    pub job_posts_per_second: u32,
    pub job_burst: u32,
    /// Refused posts (no or wrong token) a second from one source address, and burst.
    pub refused_per_second: u32,
    pub refused_burst: u32,
}

impl Default for PostLimitSettings {
    fn default() -> Self {
        Self {
            body_bytes_max: 4 * 1024 * 1024,
            buffered_bytes_max: 32 * 1024 * 1024,
            job_posts_per_second: 20,
            job_burst: 40,
            refused_per_second: 5,
            refused_burst: 20,
        }
    }
}

/// Source addresses whose refusals are tracked before old ones are swept out.
const SOURCES_TRACKED_MAX: usize = 10_000;
/// The budget counts kibibytes: a semaphore has at most `u32::MAX` permits at a time.
const BUDGET_UNIT: usize = 1024;

pub struct PostLimits {
    settings: PostLimitSettings,
    per_job: DefaultKeyedRateLimiter<JobKey>,
    refused_per_source: DefaultKeyedRateLimiter<IpAddr>,
    budget: Arc<Semaphore>,
    buffered: Arc<AtomicUsize>,
    buffered_peak: AtomicUsize,
}

/// Bytes of the byte budget held while one body is read and parsed.
pub struct BodyReservation {
    _permit: OwnedSemaphorePermit,
    bytes: usize,
    buffered: Arc<AtomicUsize>,
}

impl Drop for BodyReservation {
    fn drop(&mut self) {
        self.buffered.fetch_sub(self.bytes, Ordering::SeqCst);
    }
}

fn quota(per_second: u32, burst: u32) -> Quota {
    let rate = NonZeroU32::new(per_second.max(1)).expect("at least 1");
    Quota::per_second(rate).allow_burst(NonZeroU32::new(burst.max(1)).expect("at least 1"))
}

impl PostLimits {
    pub fn new(settings: PostLimitSettings) -> Self {
        let units = settings.buffered_bytes_max.div_ceil(BUDGET_UNIT).max(1);
        Self {
            per_job: RateLimiter::keyed(quota(settings.job_posts_per_second, settings.job_burst)),
            refused_per_source: RateLimiter::keyed(quota(
                settings.refused_per_second,
                settings.refused_burst,
            )),
            budget: Arc::new(Semaphore::new(units)),
            buffered: Arc::new(AtomicUsize::new(0)),
            buffered_peak: AtomicUsize::new(0),
            settings,
        }
    }

    pub fn body_bytes_max(&self) -> usize {
        self.settings.body_bytes_max
    }

    /// Counts a refused post (no or wrong token) against its source: `false` once the
    /// source spent its refusals, and it is then answered 429 instead of 401. Posts
    /// with the right token never count.
    pub fn refusal_within_limit(&self, source: Option<IpAddr>) -> bool {
        let Some(source) = source else { return true };
        let within = self.refused_per_source.check_key(&source).is_ok();
        if self.refused_per_source.len() > SOURCES_TRACKED_MAX {
            self.refused_per_source.retain_recent();
        }
        within
    }

    /// Whether the job's trainer may post now.
    pub fn job_may_post(&self, job: &JobKey) -> bool {
        self.per_job.check_key(job).is_ok()
    }

    /// Drops the rate state of every job idle long enough to be back at its full
    /// burst: called when a job is deleted, so deleted jobs' state does not pile up.
    pub fn sweep_idle_jobs(&self) {
        self.per_job.retain_recent();
    }

    /// Reserves `bytes` of the byte budget for a body, or `None` when bodies being
    /// read already hold it.
    pub fn reserve_body(&self, bytes: usize) -> Option<BodyReservation> {
        let units = u32::try_from(bytes.div_ceil(BUDGET_UNIT).max(1)).ok()?;
        let permit = self.budget.clone().try_acquire_many_owned(units).ok()?;
        let bytes = units as usize * BUDGET_UNIT;
        let now = self.buffered.fetch_add(bytes, Ordering::SeqCst) + bytes;
        self.buffered_peak.fetch_max(now, Ordering::SeqCst);
        Some(BodyReservation {
            _permit: permit,
            bytes,
            buffered: self.buffered.clone(),
        })
    }

    /// The most bytes reserved for bodies at once since the endpoint started.
    pub fn buffered_peak(&self) -> usize {
        self.buffered_peak.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> PostLimits {
        PostLimits::new(PostLimitSettings {
            body_bytes_max: 4096,
            buffered_bytes_max: 8192,
            job_posts_per_second: 1,
            job_burst: 3,
            refused_per_second: 1,
            refused_burst: 2,
        })
    }

    #[test]
    fn bodies_share_one_budget_returned_when_done() {
        let limits = limits();
        let first = limits.reserve_body(4096).unwrap();
        let second = limits.reserve_body(4000).unwrap();
        assert!(limits.reserve_body(1).is_none(), "the budget is spent");
        drop(first);
        assert!(limits.reserve_body(4096).is_some());
        drop(second);
        assert_eq!(limits.buffered_peak(), 8192);
    }

    #[test]
    fn a_job_posts_its_burst_then_waits() {
        let limits = limits();
        let job = JobKey::new("ns", "a");
        let allowed = (0..10).filter(|_| limits.job_may_post(&job)).count();
        assert_eq!(allowed, 3);
        assert!(
            limits.job_may_post(&JobKey::new("ns", "b")),
            "jobs are limited apart"
        );
    }

    #[test]
    fn a_source_that_spent_its_refusals_is_turned_away() {
        let limits = limits();
        let source: IpAddr = "10.0.0.9".parse().unwrap();
        let within: Vec<bool> = (0..4)
            .map(|_| limits.refusal_within_limit(Some(source)))
            .collect();
        assert_eq!(within, [true, true, false, false], "a burst of 2");
        let other: IpAddr = "10.0.0.10".parse().unwrap();
        assert!(
            limits.refusal_within_limit(Some(other)),
            "sources are limited apart"
        );
        assert!(
            limits.refusal_within_limit(None),
            "no address, nothing to limit by"
        );
    }
}
