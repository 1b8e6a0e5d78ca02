//! The report endpoint's shared state and the calls the controller makes on it:
//! admitting a job when its trainer starts and closing it when the job ends, starting
//! the background flusher, forcing a job's status write, reading what was folded, and
//! forgetting deleted jobs.

use std::sync::Arc;
use std::time::Duration;

use super::coalescer::{flush_jobs, run_flusher, write_job};
use super::fold::ReportedStatus;
use super::job_reports::{JobKey, JobReports};
use super::log_buffer::DEFAULT_LOG_LINES;
pub use super::post_limits::PostLimitSettings;
use super::post_limits::PostLimits;
use super::{ReportCluster, ReportError, ReportTarget};
use crate::metrics::Metrics;

/// Tunables of the endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportSettings {
    /// Least time between two status writes of one job (design: one second).
    pub flush_interval: Duration,
    /// Log lines kept per job for `GET .../logs`.
    pub log_lines: usize,
    /// What one post may cost before its body is read.
    pub posts: PostLimitSettings,
}

impl Default for ReportSettings {
    fn default() -> Self {
        Self {
            flush_interval: Duration::from_secs(1),
            log_lines: DEFAULT_LOG_LINES,
            posts: PostLimitSettings::default(),
        }
    }
}

/// Handle to the endpoint's state; clones share it.
pub struct ReportState<C> {
    pub(super) shared: Arc<Shared<C>>,
}

pub(super) struct Shared<C> {
    pub cluster: C,
    pub metrics: Metrics,
    pub jobs: JobReports,
    pub limits: PostLimits,
    pub settings: ReportSettings,
}

impl<C> Clone for ReportState<C> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<C: ReportCluster> ReportState<C> {
    pub fn new(cluster: C, metrics: Metrics) -> Self {
        Self::with_settings(cluster, metrics, ReportSettings::default())
    }

    pub fn with_settings(cluster: C, metrics: Metrics, settings: ReportSettings) -> Self {
        Self {
            shared: Arc::new(Shared {
                cluster,
                jobs: JobReports::new(settings.log_lines),
                limits: PostLimits::new(settings.posts.clone()),
                metrics,
                settings,
            }),
        }
    }

    /// Opens the endpoint to the job's trainer with `target.token` (the controller
    /// calls it when it creates a trainer Job, and for a running one after an operator
    /// restart). The same uid keeps what was folded; a new uid starts over.
    pub fn admit_job(&self, namespace: &str, name: &str, target: ReportTarget) {
        self.shared
            .jobs
            .install(&JobKey::new(namespace, name), target);
    }

    /// Whether the job's trainer (uid `uid`) is admitted.
    pub fn is_admitted(&self, namespace: &str, name: &str, uid: &str) -> bool {
        self.shared
            .jobs
            .get(&JobKey::new(namespace, name))
            .is_some_and(|slot| slot.uid == uid)
    }

    /// The job ended: its token no longer posts (its logs stay readable).
    pub fn close_job(&self, namespace: &str, name: &str) {
        if let Some(slot) = self.shared.jobs.get(&JobKey::new(namespace, name)) {
            slot.close();
        }
    }

    /// The most bytes of post bodies held at once since the endpoint started.
    pub fn buffered_bytes_peak(&self) -> usize {
        self.shared.limits.buffered_peak()
    }

    /// Starts the task that writes dirty jobs' status; it runs until aborted (call
    /// [`Self::flush_all`] after aborting it at shutdown). Needs a Tokio runtime.
    pub fn spawn_flusher(&self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(run_flusher(self.shared.clone()))
    }

    /// Writes the job's folded status now if it holds anything unwritten, without
    /// waiting for the interval (the controller calls it when the trainer pod ends, so
    /// the status is complete before the job is marked finished). `Ok(true)` when a
    /// patch was written.
    pub async fn flush_now(&self, namespace: &str, name: &str) -> Result<bool, ReportError> {
        match self.shared.jobs.get(&JobKey::new(namespace, name)) {
            Some(slot) => write_job(&self.shared, &slot, true).await,
            None => Ok(false),
        }
    }

    /// Takes in the job's status folded again from its run's `events.jsonl` when it is
    /// newer than what the endpoint holds (so that no pending write of the older state
    /// lands after it) and writes it now. `Ok(false)` when the endpoint does not hold
    /// the job: the caller writes the status itself.
    pub async fn adopt_recovered(
        &self,
        namespace: &str,
        name: &str,
        recovered: ReportedStatus,
    ) -> Result<bool, ReportError> {
        let Some(slot) = self.shared.jobs.get(&JobKey::new(namespace, name)) else {
            return Ok(false);
        };
        slot.adopt(recovered, tokio::time::Instant::now());
        write_job(&self.shared, &slot, true).await?;
        Ok(true)
    }

    /// Writes every job with unwritten status now; returns how many patches were
    /// written, or the first error after trying all.
    pub async fn flush_all(&self) -> Result<usize, ReportError> {
        flush_jobs(&self.shared, true).await
    }

    /// The status folded from the events received so far, if the endpoint holds the job.
    pub fn reported_status(&self, namespace: &str, name: &str) -> Option<ReportedStatus> {
        self.shared
            .jobs
            .get(&JobKey::new(namespace, name))
            .map(|slot| slot.reported())
    }

    /// The newest `lines` log lines the endpoint holds for the job (`TIME LEVEL text`
    /// each), if it holds the job.
    pub fn log_tail(&self, namespace: &str, name: &str, lines: usize) -> Option<Vec<Arc<str>>> {
        let slot = self.shared.jobs.get(&JobKey::new(namespace, name))?;
        Some(slot.log_tail(lines))
    }

    /// Drops everything held for a deleted job (its followers' streams end) and its
    /// per-job metric series.
    pub fn forget_job(&self, namespace: &str, name: &str) {
        self.shared.jobs.remove(&JobKey::new(namespace, name));
        self.shared.limits.sweep_idle_jobs();
        self.shared.metrics.forget_job(namespace, name);
    }

    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }
}
