//! What the endpoint holds in memory per job: the token the controller admitted it
//! with, whether posts are still open, the folded status, whether it still needs
//! writing, and the log buffer. Entries are keyed by namespace/name and belong to one
//! job uid; a new uid under the same name gets a fresh entry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anneal_crds::events::{EventBody, TrainerEvent};
use anneal_crds::finetunejob::{JobPhase, Metrics as TrainingMetrics, Progress};
use tokio::time::Instant;

use super::ReportTarget;
use super::auth::tokens_match;
use super::coalescer::WriteSchedule;
use super::fold::{FoldOutcome, FoldRules, ReportedStatus, fold_event};
use super::log_buffer::{LogBuffer, LogSubscription};
use super::log_line::render_event;
use super::milestone::Milestone;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct JobKey {
    pub namespace: String,
    pub name: String,
}

impl JobKey {
    pub fn new(namespace: &str, name: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }
}

/// Every job the endpoint has heard from (or been asked about) since it started.
pub struct JobReports {
    slots: Mutex<HashMap<JobKey, Arc<JobSlot>>>,
    log_lines: usize,
}

impl JobReports {
    pub fn new(log_lines: usize) -> Self {
        Self {
            slots: Mutex::new(HashMap::new()),
            log_lines,
        }
    }

    fn slots(&self) -> MutexGuard<'_, HashMap<JobKey, Arc<JobSlot>>> {
        // Nothing panics while holding it; if something did, the map is still whole.
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn get(&self, key: &JobKey) -> Option<Arc<JobSlot>> {
        self.slots().get(key).cloned()
    }

    /// Takes in a job the controller admits: the entry of the same uid is kept, with
    /// the token replaced (each trainer Job gets a new one) and posts open again; an
    /// entry of another uid belonged to a deleted job and is replaced by a fresh one.
    pub fn install(&self, key: &JobKey, target: ReportTarget) -> Arc<JobSlot> {
        let mut slots = self.slots();
        if let Some(slot) = slots.get(key).filter(|slot| slot.uid == target.uid) {
            let mut state = slot.lock();
            state.token = target.token;
            state.open = true;
            drop(state);
            return slot.clone();
        }
        let slot = Arc::new(JobSlot::new(key.clone(), target, self.log_lines));
        slots.insert(key.clone(), slot.clone());
        slot
    }

    pub fn remove(&self, key: &JobKey) -> Option<Arc<JobSlot>> {
        self.slots().remove(key)
    }

    /// Whether `slot` is still the entry for its job.
    pub fn is_current(&self, slot: &Arc<JobSlot>) -> bool {
        self.slots()
            .get(&slot.key)
            .is_some_and(|current| Arc::ptr_eq(current, slot))
    }

    pub fn all(&self) -> Vec<Arc<JobSlot>> {
        self.slots().values().cloned().collect()
    }
}

/// One job's entry.
pub struct JobSlot {
    pub key: JobKey,
    pub uid: String,
    rules: FoldRules,
    state: Mutex<JobState>,
    /// Held across a status write of this job (see `coalescer::write_job`).
    pub write_gate: tokio::sync::Mutex<()>,
    /// The newest event seq the job's stored status holds: a post is answered once
    /// its events are in it ([`crate::report::server`]), so an operator that dies
    /// before writing them has not acknowledged them, and the trainer sends them again.
    persisted_seq: tokio::sync::watch::Sender<u64>,
}

struct JobState {
    token: String,
    /// Whether the trainer may post; closed once the job ended. The token still opens
    /// the job's logs.
    open: bool,
    reported: ReportedStatus,
    schedule: WriteSchedule,
    logs: LogBuffer,
}

/// What one post of events did to a job.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    /// The `type` of each newly folded event (repeats are not here).
    pub accepted_types: Vec<&'static str>,
    /// The newest seq folded so far, 0 before any.
    pub last_seq: u64,
    pub milestones: Vec<Milestone>,
    /// Each event the rules refused: its seq, the counter's label, and why.
    pub refused: Vec<(u64, &'static str, String)>,
    /// The folded numbers the per-job gauges show, when anything was accepted.
    pub gauges: Option<(Option<TrainingMetrics>, Option<Progress>)>,
}

impl JobSlot {
    fn new(key: JobKey, target: ReportTarget, log_lines: usize) -> Self {
        // What the controller read from the stored status is stored already.
        let persisted = target.reported.last_event_seq.unwrap_or(0);
        Self {
            persisted_seq: tokio::sync::watch::Sender::new(persisted),
            key,
            uid: target.uid,
            rules: FoldRules::for_run(&target.run_prefix),
            state: Mutex::new(JobState {
                token: target.token,
                open: true,
                reported: target.reported,
                schedule: WriteSchedule::default(),
                logs: LogBuffer::new(log_lines),
            }),
            write_gate: tokio::sync::Mutex::new(()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, JobState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn token_matches(&self, presented: &str) -> bool {
        tokens_match(presented, &self.lock().token)
    }

    /// Whether the trainer may post with `presented`: the token matches and the job
    /// has not ended.
    pub fn accepts_posts_with(&self, presented: &str) -> bool {
        let state = self.lock();
        state.open && tokens_match(presented, &state.token)
    }

    /// The job ended: its trainer's token no longer posts.
    pub fn close(&self) {
        self.lock().open = false;
    }

    /// Folds a posted batch in seq order, logs what is new, and marks the status dirty.
    pub fn fold_batch(
        &self,
        events: &[TrainerEvent],
        now: Instant,
        flush_interval: Duration,
    ) -> BatchOutcome {
        let mut ordered: Vec<&TrainerEvent> = events.iter().collect();
        // A batch out of order would otherwise drop its lower seqs as repeats.
        ordered.sort_by_key(|event| event.seq);
        let mut outcome = BatchOutcome::default();
        let mut state = self.lock();
        let state = &mut *state;
        for event in ordered {
            let (milestone, terminal) = match fold_event(&mut state.reported, event, &self.rules) {
                FoldOutcome::Applied {
                    milestone,
                    terminal,
                } => (milestone, terminal),
                FoldOutcome::Repeat => continue,
                FoldOutcome::Refused(refusal) => {
                    outcome
                        .refused
                        .push((event.seq, refusal.as_str(), refusal.to_string()));
                    continue;
                }
            };
            outcome.accepted_types.push(event_type(&event.body));
            outcome.milestones.extend(milestone);
            if matches!(
                event.body,
                EventBody::Phase {
                    phase: JobPhase::Running,
                    ..
                }
            ) {
                state.logs.reopen();
            }
            let total_steps = state.reported.progress.as_ref().map(|p| p.total_steps);
            for line in render_event(event, total_steps) {
                state.logs.push(line);
            }
            if terminal {
                state.logs.finish();
            }
        }
        if !outcome.accepted_types.is_empty() {
            state.schedule.mark_dirty(now, flush_interval);
            outcome.gauges = Some((
                state.reported.metrics.clone(),
                state.reported.progress.clone(),
            ));
        }
        outcome.last_seq = state.reported.last_event_seq.unwrap_or(0);
        outcome
    }

    /// The merge patch to write now, if the job is due (or `force`), marking it clean,
    /// with the newest seq it carries. It carries `metadata.uid` so that it cannot land
    /// on a re-created job.
    pub fn take_due_patch(&self, now: Instant, force: bool) -> Option<(serde_json::Value, u64)> {
        let mut state = self.lock();
        if !state.schedule.take_if_due(now, force) {
            return None;
        }
        let mut patch = state.reported.to_status_patch();
        patch["metadata"] = serde_json::json!({ "uid": self.uid });
        Some((patch, state.reported.last_event_seq.unwrap_or(0)))
    }

    /// A status write carrying the events up to `seq` succeeded.
    pub fn persisted(&self, seq: u64) {
        self.persisted_seq.send_if_modified(|stored| {
            let newer = seq > *stored;
            if newer {
                *stored = seq;
            }
            newer
        });
    }

    /// Follows the newest seq the stored status holds.
    pub fn watch_persisted(&self) -> tokio::sync::watch::Receiver<u64> {
        self.persisted_seq.subscribe()
    }

    /// Takes `recovered` (the status folded again from the run's `events.jsonl`) in
    /// place of what was folded, when it holds newer events, and marks the job due
    /// now: a pending write of the older state can then never land after it.
    pub fn adopt(&self, recovered: ReportedStatus, now: Instant) {
        let mut state = self.lock();
        if recovered.last_event_seq > state.reported.last_event_seq {
            state.reported = recovered;
            state.schedule.mark_dirty(now, Duration::ZERO);
        }
    }

    /// A write failed: the job stays dirty and is retried an interval later.
    pub fn write_failed(&self, now: Instant, flush_interval: Duration) {
        self.lock().schedule.mark_dirty(now, flush_interval);
    }

    pub fn reported(&self) -> ReportedStatus {
        self.lock().reported.clone()
    }

    pub fn subscribe_logs(&self, tail: Option<usize>) -> LogSubscription {
        self.lock().logs.subscribe(tail)
    }

    /// The newest `lines` buffered log lines.
    pub fn log_tail(&self, lines: usize) -> Vec<Arc<str>> {
        self.lock().logs.tail(Some(lines))
    }
}

/// The `type` an event has on the wire, the label of `anneal_report_events_total`.
fn event_type(body: &EventBody) -> &'static str {
    match body {
        EventBody::Phase { .. } => "phase",
        EventBody::Progress(_) => "progress",
        EventBody::Metrics { .. } => "metrics",
        EventBody::Checkpoint(_) => "checkpoint",
        EventBody::Log { .. } => "log",
    }
}

#[cfg(test)]
mod tests {
    use anneal_crds::events::LogLevel;

    use super::*;

    fn target(uid: &str, token: &str) -> ReportTarget {
        ReportTarget {
            uid: uid.into(),
            token: token.into(),
            run_prefix: "s3://b".into(),
            reported: ReportedStatus::default(),
        }
    }

    fn log(seq: u64) -> TrainerEvent {
        TrainerEvent {
            seq,
            time: "t".into(),
            body: EventBody::Log {
                level: LogLevel::Info,
                message: format!("event {seq}"),
            },
        }
    }

    #[test]
    fn the_same_uid_keeps_its_state_and_a_new_uid_starts_over() {
        let jobs = JobReports::new(10);
        let key = JobKey::new("ns", "a");
        let first = jobs.install(&key, target("uid-1", "t1"));
        first.fold_batch(&[log(1)], Instant::now(), Duration::from_secs(1));

        let refreshed = jobs.install(&key, target("uid-1", "t2"));
        assert!(Arc::ptr_eq(&first, &refreshed));
        assert!(refreshed.token_matches("t2") && !refreshed.token_matches("t1"));
        assert_eq!(refreshed.reported().last_event_seq, Some(1));

        let recreated = jobs.install(&key, target("uid-2", "t3"));
        assert!(!jobs.is_current(&first));
        assert_eq!(recreated.reported().last_event_seq, None);
    }

    #[test]
    fn batches_fold_in_seq_order_and_report_the_last_seq() {
        let jobs = JobReports::new(10);
        let slot = jobs.install(&JobKey::new("ns", "a"), target("u", "t"));
        let now = Instant::now();
        let outcome = slot.fold_batch(&[log(2), log(1)], now, Duration::from_secs(1));
        assert_eq!(outcome.accepted_types, ["log", "log"]);
        assert_eq!(outcome.last_seq, 2);
        let repeat = slot.fold_batch(&[log(1), log(2)], now, Duration::from_secs(1));
        assert!(repeat.accepted_types.is_empty() && repeat.gauges.is_none());
        assert_eq!(repeat.last_seq, 2);
        let lines = slot.subscribe_logs(None).backlog;
        assert_eq!(lines.len(), 2);
        assert!(lines[0].ends_with("event 1"));

        assert!(slot.take_due_patch(now, false).is_none(), "not due yet");
        let (patch, seq) = slot.take_due_patch(now, true).unwrap();
        assert_eq!(seq, 2);
        assert_eq!(patch["metadata"]["uid"], "u");
        assert_eq!(patch["status"]["lastEventSeq"], 2);
        assert!(slot.take_due_patch(now, true).is_none(), "written once");
    }
}
