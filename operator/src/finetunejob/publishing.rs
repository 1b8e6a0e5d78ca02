//! Publishing a succeeded job's checkpoints (`spec.publish`): one Job per entry running
//! `trainer publish`, its outcome read back from the pod's termination message (the
//! JSON line `trainer publish --json` leaves there) into `status.published`. An entry
//! recorded `Published` or `Failed` is not run again; entries added later are published
//! when they appear, which is how "save to repository" works on a finished job.

use anneal_crds::FineTuneJob;
use anneal_crds::finetunejob::{FineTuneJobStatus, PublishSpec, PublishedStatus};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{ListParams, PostParams};
use kube::{Api, ResourceExt};

use crate::error::Result;
use crate::finetunejob::controller::Context;
use crate::finetunejob::publish_job::{
    PUBLISH_CONTAINER, PUBLISH_LABEL, plan_publish_job, publish_job_name, publish_source,
};

pub const PUBLISHING: &str = "Publishing";
pub const PUBLISHED: &str = "Published";
pub const PUBLISH_FAILED: &str = "Failed";

/// What happened to one entry in this reconcile, for an Event.
pub enum PublishNews {
    Published(String),
    Failed(String),
}

/// Brings `status.published` up to date with `spec.publish`, starting the Jobs still
/// needed. Returns the new list, what finished in this pass, and whether any is still
/// running.
pub async fn reconcile_publishing(
    job: &FineTuneJob,
    status: &FineTuneJobStatus,
    now: &Time,
    context: &Context,
) -> Result<(Vec<PublishedStatus>, Vec<PublishNews>, bool)> {
    let namespace = job.namespace().unwrap_or_default();
    let jobs: Api<Job> = Api::namespaced(context.client.clone(), &namespace);
    let pods: Api<Pod> = Api::namespaced(context.client.clone(), &namespace);
    let mut published = status.published.clone();
    let mut news = Vec::new();
    let mut running = false;
    let spec_problems = job.spec.validate().err().map(|e| e.0).unwrap_or_default();
    for (index, entry) in job.spec.publish.iter().enumerate() {
        let position = published.iter().position(|p| p.records(entry));
        if position.is_some_and(|i| published[i].phase != PUBLISHING) {
            continue;
        }
        let mut record = match position {
            Some(i) => published[i].clone(),
            None => new_record(entry),
        };
        let prefix = format!("spec.publish[{index}]");
        let problem = spec_problems
            .iter()
            .find(|p| p.path.starts_with(&prefix))
            .map(ToString::to_string);
        let outcome = match (problem, publish_source(status, entry)) {
            (Some(problem), _) => Some(Err(problem)),
            (None, Err(why)) => Some(Err(format!("{prefix}.checkpoint: {why}"))),
            (None, Ok((name, uri))) => {
                record.resolved_checkpoint = Some(name);
                let job_name = publish_job_name(&job.name_any(), entry);
                match jobs.get_opt(&job_name).await? {
                    None => match plan_publish_job(job, entry, &uri, &context.config) {
                        Ok(planned) => {
                            match jobs.create(&PostParams::default(), &planned).await {
                                Ok(_) => {}
                                // Made by an earlier pass whose status write was lost.
                                Err(kube::Error::Api(e)) if e.code == 409 => {}
                                Err(error) => return Err(error.into()),
                            }
                            None
                        }
                        Err(problem) => Some(Err(format!("{prefix}: {problem}"))),
                    },
                    Some(found) => finished(&found, &pods, &job_name).await?,
                }
            }
        };
        match outcome {
            None => {
                running = true;
                record.phase = PUBLISHING.to_owned();
            }
            Some(Ok((commit, uri))) => {
                record.phase = PUBLISHED.to_owned();
                record.commit = commit;
                record.uri = Some(uri.clone());
                record.completion_time = Some(now.clone());
                news.push(PublishNews::Published(format!(
                    "{} of {} published to {}",
                    record
                        .resolved_checkpoint
                        .as_deref()
                        .unwrap_or(&entry.checkpoint),
                    job.name_any(),
                    uri
                )));
            }
            Some(Err(message)) => {
                record.phase = PUBLISH_FAILED.to_owned();
                record.message = Some(message.clone());
                record.completion_time = Some(now.clone());
                news.push(PublishNews::Failed(format!(
                    "publishing to {}: {message}",
                    entry.to
                )));
            }
        }
        match position {
            Some(i) => published[i] = record,
            None => published.push(record),
        }
    }
    Ok((published, news, running))
}

fn new_record(entry: &PublishSpec) -> PublishedStatus {
    PublishedStatus {
        checkpoint: entry.checkpoint.clone(),
        resolved_checkpoint: None,
        to: entry.to.clone(),
        merge: entry.merge,
        phase: PUBLISHING.to_owned(),
        commit: None,
        uri: None,
        message: None,
        completion_time: None,
    }
}

/// A finished publish Job's outcome: its commit and URI, or why it failed; `None`
/// while it runs.
async fn finished(
    found: &Job,
    pods: &Api<Pod>,
    job_name: &str,
) -> Result<Option<std::result::Result<(Option<String>, String), String>>> {
    let condition = |kind: &str| {
        found
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == kind && c.status == "True"))
    };
    let (complete, failed) = (condition("Complete"), condition("Failed"));
    if !complete && !failed {
        return Ok(None);
    }
    let listed = pods
        .list(&ListParams::default().labels(&format!("{PUBLISH_LABEL}={job_name}")))
        .await?;
    let messages: Vec<(i32, String)> = listed
        .items
        .iter()
        .filter_map(|pod| {
            let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
            let container = statuses.iter().find(|c| c.name == PUBLISH_CONTAINER)?;
            let terminated = container.state.as_ref()?.terminated.as_ref()?;
            Some((
                terminated.exit_code,
                terminated.message.clone().unwrap_or_default(),
            ))
        })
        .collect();
    if complete {
        let outcome = messages
            .iter()
            .filter(|(code, _)| *code == 0)
            .find_map(|(_, message)| {
                let line: serde_json::Value =
                    serde_json::from_str(message.lines().last().unwrap_or_default()).ok()?;
                let uri = line["uri"].as_str()?.to_owned();
                Some((line["commit"].as_str().map(str::to_owned), uri))
            });
        return Ok(Some(outcome.ok_or_else(|| {
            "the publish pod succeeded but left no outcome in its termination message".to_owned()
        })));
    }
    let why = messages
        .iter()
        .rev()
        .find(|(code, _)| *code != 0)
        .and_then(|(code, message)| {
            let line = message
                .lines()
                .rev()
                .map(str::trim)
                .find(|l| !l.is_empty())?;
            Some(format!("exit code {code}: {line}"))
        })
        .unwrap_or_else(|| "the publish Job failed".to_owned());
    Ok(Some(Err(why)))
}
