//! The report endpoint trainers post their events to, and what the operator makes of
//! them: the report-owned part of a FineTuneJob's status (folded from the events,
//! written at most once per job per interval), Kubernetes Events for milestones,
//! Prometheus gauges, and a bounded buffer of log lines users can read or follow.
//!
//! The endpoint never reads from Kubernetes to answer a request: the controller
//! admits each job it starts a trainer for (uid, token, run folder, status so far)
//! and closes it when the job ends, so a post with an unknown job or a wrong token
//! costs one map lookup and never its body. What the endpoint writes to the cluster
//! goes through [`ReportCluster`], which the controller implements over kube and
//! tests implement with a fake.

mod access;
mod auth;
mod coalescer;
mod events_file;
mod fold;
mod fold_rules;
mod job_gauges;
mod job_reports;
mod log_buffer;
mod log_line;
mod milestone;
mod post_limits;
mod server;
mod state;

#[cfg(test)]
mod fake_cluster;
#[cfg(test)]
mod hostile_posts;
#[cfg(test)]
mod tests;

use std::future::Future;

pub use events_file::{EventsFileError, fold_events_jsonl};
pub use fold::{FoldOutcome, FoldRules, Refusal, ReportedStatus, fold_event};
pub use log_line::render_event;
pub use milestone::Milestone;
pub use server::{parse_events, report_router};
pub use state::{ReportSettings, ReportState};

/// What the endpoint needs to know about a job before it accepts its trainer's
/// events; the controller hands it over when it starts the job's trainer.
#[derive(Clone, Debug, PartialEq)]
pub struct ReportTarget {
    /// `metadata.uid` of the FineTuneJob; a different uid under the same name means the
    /// job was deleted and re-created, and everything held for the old one is dropped.
    pub uid: String,
    /// The bearer token in the job's report Secret (a new one for every trainer Job).
    pub token: String,
    /// The run's folder, `{output}/{namespace}/{job}/{uid}`: reported URIs must lie in it.
    pub run_prefix: String,
    /// The report-owned fields as the job's status holds them now
    /// ([`ReportedStatus::from_status`]). In-memory state starts from them, so that the
    /// first patch after an operator restart keeps the checkpoints already listed (a
    /// merge patch replaces lists whole) and repeats at or below `lastEventSeq` are
    /// still dropped.
    pub reported: ReportedStatus,
}

/// A cluster call the endpoint made failed; posts answer 503 and patches are retried.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Other(String),
}

/// What the report endpoint writes to the cluster. Implementations are cheap to clone
/// (they wrap a client) and are called from many tasks at once.
pub trait ReportCluster: Clone + Send + Sync + 'static {
    /// Writes `patch` as a JSON merge patch to the job's `status` subresource. The
    /// patch is `{"metadata": {"uid": UID}, "status": {...report-owned fields...}}`:
    /// the uid makes the API server refuse it when the job was re-created meanwhile
    /// (uid is immutable), and the status holds only `progress`, `metrics`,
    /// `checkpoints`, `result` and `lastEventSeq`, never phase or conditions.
    fn patch_reported_status(
        &self,
        namespace: &str,
        name: &str,
        patch: &serde_json::Value,
    ) -> impl Future<Output = Result<(), ReportError>> + Send;

    /// Records a Kubernetes Event on the job (type `Warning` when `milestone.warning`).
    fn record_milestone(
        &self,
        namespace: &str,
        name: &str,
        milestone: &Milestone,
    ) -> impl Future<Output = Result<(), ReportError>> + Send;
}
