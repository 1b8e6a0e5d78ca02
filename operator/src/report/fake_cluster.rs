//! A [`ReportCluster`] for tests: jobs are set by the test, and every patch and
//! milestone is recorded with the time it arrived.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use super::{Milestone, ReportCluster, ReportError, ReportTarget, ReportedStatus};

#[derive(Clone, Default)]
pub struct FakeCluster {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    targets: Mutex<HashMap<(String, String), ReportTarget>>,
    patches: Mutex<Vec<(Instant, String, serde_json::Value)>>,
    milestones: Mutex<Vec<(String, Milestone)>>,
    lookups: AtomicUsize,
    fail_patches: AtomicBool,
}

impl FakeCluster {
    /// Creates (or re-creates) job `namespace/name`.
    pub fn set_job(&self, namespace: &str, name: &str, uid: &str, token: &str) {
        let target = ReportTarget {
            uid: uid.into(),
            token: token.into(),
            reported: ReportedStatus::default(),
        };
        self.inner
            .targets
            .lock()
            .unwrap()
            .insert((namespace.into(), name.into()), target);
    }

    /// Patches written, as (time, "namespace/name", patch).
    pub fn patches(&self) -> Vec<(Instant, String, serde_json::Value)> {
        self.inner.patches.lock().unwrap().clone()
    }

    /// Milestones recorded, as ("namespace/name", milestone).
    pub fn milestones(&self) -> Vec<(String, Milestone)> {
        self.inner.milestones.lock().unwrap().clone()
    }

    pub fn lookups(&self) -> usize {
        self.inner.lookups.load(Ordering::SeqCst)
    }

    pub fn fail_patches(&self, fail: bool) {
        self.inner.fail_patches.store(fail, Ordering::SeqCst);
    }
}

impl ReportCluster for FakeCluster {
    async fn report_target(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ReportTarget>, ReportError> {
        self.inner.lookups.fetch_add(1, Ordering::SeqCst);
        let targets = self.inner.targets.lock().unwrap();
        Ok(targets.get(&(namespace.into(), name.into())).cloned())
    }

    async fn patch_reported_status(
        &self,
        namespace: &str,
        name: &str,
        patch: &serde_json::Value,
    ) -> Result<(), ReportError> {
        if self.inner.fail_patches.load(Ordering::SeqCst) {
            return Err(ReportError::Other("the API server is away".into()));
        }
        self.inner.patches.lock().unwrap().push((
            Instant::now(),
            format!("{namespace}/{name}"),
            patch.clone(),
        ));
        Ok(())
    }

    async fn record_milestone(
        &self,
        namespace: &str,
        name: &str,
        milestone: &Milestone,
    ) -> Result<(), ReportError> {
        self.inner
            .milestones
            .lock()
            .unwrap()
            .push((format!("{namespace}/{name}"), milestone.clone()));
        Ok(())
    }
}
