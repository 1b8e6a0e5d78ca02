//! Which job a request is about and whether it may touch it, from memory alone: the
//! controller admitted the job with its token when it started the trainer. An
//! unknown job and a wrong token get the same answer, so a post cannot tell which
//! jobs exist, and neither costs a read of the cluster.

use std::sync::Arc;

use super::job_reports::{JobKey, JobSlot};
use super::state::Shared;

/// The trainer may post `presented` for the job: its entry, or `None` (unknown job,
/// wrong token, or a job that has ended).
pub fn authorize_post<C>(
    shared: &Shared<C>,
    key: &JobKey,
    presented: &str,
) -> Option<Arc<JobSlot>> {
    shared
        .jobs
        .get(key)
        .filter(|slot| slot.accepts_posts_with(presented))
}

/// The job's log may be read with `presented`: the job's current report token, which
/// whoever may read the job's report Secret can read. It opens the logs after the job
/// ended too.
pub fn authorize_logs<C>(
    shared: &Shared<C>,
    key: &JobKey,
    presented: &str,
) -> Option<Arc<JobSlot>> {
    shared
        .jobs
        .get(key)
        .filter(|slot| slot.token_matches(presented))
}
