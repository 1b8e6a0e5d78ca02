//! Which job a request is about and whether it may touch it: the cached entry when
//! the token matches, otherwise one look at the cluster (the job may be new, its
//! token Secret re-created, or the job deleted and re-created under the same name).

use std::sync::Arc;

use super::auth::tokens_match;
use super::job_reports::{JobKey, JobSlot};
use super::state::Shared;
use super::{ReportCluster, ReportError};

pub enum Access {
    Granted(Arc<JobSlot>),
    Unauthorized,
    UnknownJob,
}

/// Checks a trainer's token. A refused token changes nothing held in memory.
pub async fn authorize<C: ReportCluster>(
    shared: &Shared<C>,
    key: &JobKey,
    presented: &str,
) -> Result<Access, ReportError> {
    if let Some(slot) = shared.jobs.get(key)
        && slot.token_matches(presented)
    {
        return Ok(Access::Granted(slot));
    }
    let Some(target) = shared
        .cluster
        .report_target(&key.namespace, &key.name)
        .await?
    else {
        // The job is gone: nothing held for it is of use any more.
        shared.jobs.remove(key);
        return Ok(Access::UnknownJob);
    };
    if !tokens_match(presented, &target.token) {
        return Ok(Access::Unauthorized);
    }
    Ok(Access::Granted(shared.jobs.install(key, target)))
}

/// The entry to read logs from, looked up in the cluster when not held yet, so that
/// a follow started before the trainer's first post waits for its lines.
pub async fn job_for_logs<C: ReportCluster>(
    shared: &Shared<C>,
    key: &JobKey,
) -> Result<Option<Arc<JobSlot>>, ReportError> {
    if let Some(slot) = shared.jobs.get(key) {
        return Ok(Some(slot));
    }
    let target = shared
        .cluster
        .report_target(&key.namespace, &key.name)
        .await?;
    Ok(target.map(|target| shared.jobs.install(key, target)))
}
