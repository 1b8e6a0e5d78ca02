//! The report endpoint's view of the cluster, over kube: a job's uid, report token and
//! current status; the merge patch of the report-owned status fields; and milestones
//! as Kubernetes Events on the job.

use anneal_crds::FineTuneJob;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Client, Resource};

use crate::finetunejob::trainer_job::{TOKEN_KEY, trainer_secret_name};
use crate::report::{Milestone, ReportCluster, ReportError, ReportTarget, ReportedStatus};

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
    async fn report_target(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ReportTarget>, ReportError> {
        let jobs: Api<FineTuneJob> = Api::namespaced(self.client.clone(), namespace);
        let Some(job) = jobs.get_opt(name).await? else {
            return Ok(None);
        };
        let Some(uid) = job.metadata.uid.clone() else {
            return Ok(None);
        };
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let Some(secret) = secrets.get_opt(&trainer_secret_name(name)).await? else {
            return Ok(None);
        };
        // A Secret from an earlier job of the same name does not open this one.
        let owned = secret
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|owner| owner.uid == uid);
        let token = secret
            .data
            .as_ref()
            .and_then(|data| data.get(TOKEN_KEY))
            .map(|bytes| String::from_utf8_lossy(&bytes.0).into_owned());
        let (true, Some(token)) = (owned, token) else {
            return Ok(None);
        };
        Ok(Some(ReportTarget {
            uid,
            token,
            reported: ReportedStatus::from_status(&job.status.unwrap_or_default()),
        }))
    }

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
