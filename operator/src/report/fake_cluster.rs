//! A [`ReportCluster`] for tests: every patch and milestone is recorded with the time
//! it arrived.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use super::{Milestone, ReportCluster, ReportError};

#[derive(Clone, Default)]
pub struct FakeCluster {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    patches: Mutex<Vec<(Instant, String, serde_json::Value)>>,
    milestones: Mutex<Vec<(String, Milestone)>>,
    fail_patches: AtomicBool,
}

impl FakeCluster {
    /// Patches written, as (time, "namespace/name", patch).
    pub fn patches(&self) -> Vec<(Instant, String, serde_json::Value)> {
        self.inner.patches.lock().unwrap().clone()
    }

    /// Milestones recorded, as ("namespace/name", milestone).
    pub fn milestones(&self) -> Vec<(String, Milestone)> {
        self.inner.milestones.lock().unwrap().clone()
    }

    pub fn fail_patches(&self, fail: bool) {
        self.inner.fail_patches.store(fail, Ordering::SeqCst);
    }
}

impl ReportCluster for FakeCluster {
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
