//! What the report endpoint writes to the cluster, over kube: the merge patch of the
//! report-owned status fields, and milestones as Kubernetes Events on the job.

use anneal_crds::FineTuneJob;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Client, Resource};

use crate::report::{Milestone, ReportCluster, ReportError};

#[derive(Clone)]
pub struct KubeReportCluster {
    client: Client,
    recorder: Recorder,
}

impl KubeReportCluster {
    pub fn new(client: Client, recorder: Recorder) -> Self {
        Self { client, recorder }
    }
}

impl ReportCluster for KubeReportCluster {
    async fn patch_reported_status(
        &self,
        namespace: &str,
        name: &str,
        patch: &serde_json::Value,
    ) -> Result<(), ReportError> {
        let jobs: Api<FineTuneJob> = Api::namespaced(self.client.clone(), namespace);
        jobs.patch_status(name, &PatchParams::default(), &Patch::Merge(patch))
            .await?;
        Ok(())
    }

    async fn record_milestone(
        &self,
        namespace: &str,
        name: &str,
        milestone: &Milestone,
    ) -> Result<(), ReportError> {
        let jobs: Api<FineTuneJob> = Api::namespaced(self.client.clone(), namespace);
        let Some(job) = jobs.get_opt(name).await? else {
            return Ok(());
        };
        let event = Event {
            type_: if milestone.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: milestone.reason.clone(),
            note: Some(milestone.message.clone()),
            action: "Report".to_owned(),
            secondary: None,
        };
        self.recorder.publish(&event, &job.object_ref(&())).await?;
        Ok(())
    }
}
