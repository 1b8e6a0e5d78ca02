//! Coalesced status writes: events only mark a job dirty, and a background flusher
//! writes each dirty job's report-owned status at most once per flush interval, so a
//! trainer posting every step costs the API server one patch a second per job.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream;
use tokio::time::{Instant, MissedTickBehavior};

use super::job_reports::JobSlot;
use super::state::Shared;
use super::{ReportCluster, ReportError};

/// Jobs whose patches are in flight at once during one flush.
const CONCURRENT_WRITES: usize = 8;

/// When one job's status next needs writing.
#[derive(Debug, Default)]
pub struct WriteSchedule {
    /// Set when the in-memory status holds something the stored status lacks.
    due_at: Option<Instant>,
}

impl WriteSchedule {
    /// Notes a change. A clean job becomes due one interval from now: every change
    /// comes after the previous write took its snapshot, so writes of one job are
    /// always at least an interval apart, and changes within the interval share a write.
    pub fn mark_dirty(&mut self, now: Instant, interval: Duration) {
        if self.due_at.is_none() {
            self.due_at = Some(now + interval);
        }
    }

    /// Whether to write now (`force` skips the wait); a write marks the job clean.
    pub fn take_if_due(&mut self, now: Instant, force: bool) -> bool {
        match self.due_at {
            Some(due_at) if force || now >= due_at => {
                self.due_at = None;
                true
            }
            _ => false,
        }
    }
}

/// Runs until the task is aborted: writes every job that is due, checking a few times
/// per interval so a due job waits at most a quarter interval more.
pub(super) async fn run_flusher<C: ReportCluster>(shared: Arc<Shared<C>>) {
    let tick = (shared.settings.flush_interval / 4).max(Duration::from_millis(10));
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        // Failures are counted and logged in write_job, and retried at a later tick.
        let _ = flush_jobs(&shared, false).await;
    }
}

/// Writes every job that is due (every dirty job with `force`); returns how many
/// patches were written, or the first error after trying them all.
pub(super) async fn flush_jobs<C: ReportCluster>(
    shared: &Shared<C>,
    force: bool,
) -> Result<usize, ReportError> {
    let results: Vec<Result<bool, ReportError>> = stream::iter(shared.jobs.all())
        .map(|slot| async move { write_job(shared, &slot, force).await })
        .buffer_unordered(CONCURRENT_WRITES)
        .collect()
        .await;
    let mut written = 0;
    let mut first_error = None;
    for result in results {
        match result {
            Ok(wrote) => written += usize::from(wrote),
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
    }
    first_error.map_or(Ok(written), Err)
}

/// Writes one job's status if it is due; `Ok(false)` when there was nothing to write.
pub(super) async fn write_job<C: ReportCluster>(
    shared: &Shared<C>,
    slot: &Arc<JobSlot>,
    force: bool,
) -> Result<bool, ReportError> {
    // One write per job at a time, snapshot taken inside: an older snapshot can then
    // never land after a newer one.
    let _gate = slot.write_gate.lock().await;
    if !shared.jobs.is_current(slot) {
        // The job was forgotten or re-created; its state is no longer what to write.
        return Ok(false);
    }
    let Some((patch, seq)) = slot.take_due_patch(Instant::now(), force) else {
        return Ok(false);
    };
    let (namespace, name) = (&slot.key.namespace, &slot.key.name);
    match shared
        .cluster
        .patch_reported_status(namespace, name, &patch)
        .await
    {
        Ok(()) => {
            slot.persisted(seq);
            shared
                .metrics
                .status_patches
                .with_label_values(&["ok"])
                .inc();
            Ok(true)
        }
        Err(error) => {
            shared
                .metrics
                .status_patches
                .with_label_values(&["error"])
                .inc();
            tracing::warn!(%namespace, %name, %error, "writing reported status failed; retrying");
            slot.write_failed(Instant::now(), shared.settings.flush_interval);
            Err(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_waits_one_interval_and_later_changes_share_the_write() {
        let interval = Duration::from_secs(1);
        let start = Instant::now();
        let mut schedule = WriteSchedule::default();
        assert!(
            !schedule.take_if_due(start, true),
            "a clean job is never written"
        );

        schedule.mark_dirty(start, interval);
        schedule.mark_dirty(start + Duration::from_millis(900), interval);
        assert!(!schedule.take_if_due(start + Duration::from_millis(999), false));
        assert!(schedule.take_if_due(start + interval, false));
        assert!(
            !schedule.take_if_due(start + interval * 5, true),
            "written once"
        );

        schedule.mark_dirty(start + interval, interval);
        assert!(
            schedule.take_if_due(start + interval, true),
            "force skips the wait"
        );
    }
}
