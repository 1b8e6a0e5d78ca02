//! A cluster's FineTuneJobs as the console shows them: a row of the jobs list from a
//! job's status, and a job's page from its status (authoritative for where it stands:
//! phase, progress, checkpoints, result), the history of its run's `events.jsonl`
//! (the loss curve; the trainer copies the file to storage at each checkpoint) and
//! the operator's buffer of its log lines. Pure: the operator reads the sources.

use std::sync::Arc;

use anneal_crds::FineTuneJob;
use anneal_crds::best_checkpoint::best_checkpoint_name;
use anneal_crds::events::LogLevel;
use anneal_crds::finetunejob::{JobPhase, Task};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use crate::runs::{LOG_LINES_SHOWN, LogLine, RunSummary, fold_events};

/// One FineTuneJob in the jobs list.
#[derive(Clone, Debug, PartialEq)]
pub struct JobRow {
    pub namespace: String,
    pub name: String,
    pub href: String,
    pub phase: Option<JobPhase>,
    pub base_model: String,
    /// `sft`, `dpo` or `text-to-image`.
    pub method: String,
    pub step: u64,
    pub total_steps: u64,
    pub train_loss: Option<f64>,
    pub valid_loss: Option<f64>,
    pub best_checkpoint: Option<String>,
    /// `metadata.creationTimestamp`, RFC 3339.
    pub created: Option<String>,
    pub message: Option<String>,
}

/// The path of a job's page.
pub fn job_href(namespace: &str, name: &str) -> String {
    format!("/jobs/{namespace}/{name}")
}

/// The jobs list's row of `job`.
pub fn job_row(job: &FineTuneJob) -> JobRow {
    let namespace = job.metadata.namespace.clone().unwrap_or_default();
    let name = job.metadata.name.clone().unwrap_or_default();
    let status = job.status.clone().unwrap_or_default();
    let progress = status.progress.unwrap_or_default();
    let metrics = status.metrics.unwrap_or_default();
    JobRow {
        href: job_href(&namespace, &name),
        phase: status.phase,
        base_model: job.spec.base_model.name.clone(),
        method: method_label(job),
        step: progress.step,
        total_steps: progress.total_steps,
        train_loss: metrics.train_loss,
        valid_loss: metrics.valid_loss,
        best_checkpoint: best_checkpoint_name(&status.checkpoints),
        created: (job.metadata.creation_timestamp.as_ref()).map(|t| t.0.to_string()),
        message: status.message,
        namespace,
        name,
    }
}

fn method_label(job: &FineTuneJob) -> String {
    if job.spec.task == Task::TextToImage {
        return Task::TextToImage.as_str().to_owned();
    }
    serde_json::to_value(job.spec.method)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// A job's page: its status, the loss history of `events` (its run's
/// `events.jsonl`, when it could be read) and the log lines `log` the operator holds
/// (`TIME LEVEL text` each; without them, the log events of `events`).
pub fn job_summary(
    job: &FineTuneJob,
    events: Option<&str>,
    log: Option<&[Arc<str>]>,
) -> RunSummary {
    let namespace = job.metadata.namespace.clone().unwrap_or_default();
    let name = job.metadata.name.clone().unwrap_or_default();
    let mut summary = events.map(fold_events).unwrap_or_default();
    let status = job.status.clone().unwrap_or_default();
    summary.title = format!("{namespace}/{name}");
    summary.href = job_href(&namespace, &name);
    summary.watch = Some(format!("{}/watch", summary.href));
    summary.phase = status.phase.or(summary.phase);
    summary.message = status.message.or(summary.message.take());
    summary.started = (status.start_time.as_ref())
        .map(|t| t.0.to_string())
        .or(summary.started.take());
    if let Some(progress) = status.progress {
        summary.step = progress.step;
        summary.total_steps = progress.total_steps;
    }
    if let Some(metrics) = status.metrics {
        // The status is newer than the last copy of events.jsonl: its latest losses
        // end the curves.
        extend_series(&mut summary.train_loss, summary.step, metrics.train_loss);
        extend_series(&mut summary.valid_loss, summary.step, metrics.valid_loss);
        summary.tokens_per_second = metrics.tokens_per_second.or(summary.tokens_per_second);
    }
    if !status.checkpoints.is_empty() {
        summary.checkpoints = status.checkpoints;
    }
    summary.best_checkpoint = best_checkpoint_name(&summary.checkpoints);
    if let Some(result) = status.result {
        summary.model_id = Some(result.model_id);
    }
    if let Some(lines) = log {
        summary.log = lines.iter().filter_map(|l| parse_log_line(l)).collect();
        let excess = summary.log.len().saturating_sub(LOG_LINES_SHOWN);
        summary.log.drain(..excess);
    }
    summary.base_model = Some(job.spec.base_model.name.clone());
    summary.sample_prompts = crate::runs::sample_prompt_texts(job);
    summary
}

/// Appends `(step, value)` unless the series already ends at `step` or later.
fn extend_series(series: &mut Vec<(u64, f64)>, step: u64, value: Option<f64>) {
    let Some(value) = value.filter(|v| v.is_finite()) else {
        return;
    };
    if series.last().is_none_or(|(last, _)| *last < step) {
        series.push((step, value));
    }
}

/// A line of the operator's log buffer, `TIME LEVEL text`.
pub fn parse_log_line(line: &str) -> Option<LogLine> {
    let (time, rest) = line.split_once(' ')?;
    let (level, message) = rest.split_once(' ').unwrap_or((rest, ""));
    let level = match level {
        "INFO" => LogLevel::Info,
        "WARN" => LogLevel::Warn,
        "ERROR" => LogLevel::Error,
        _ => return None,
    };
    Some(LogLine {
        time: time.to_owned(),
        level,
        message: message.to_owned(),
    })
}

/// What a cluster job's page shows besides its run: its conditions, its Kubernetes
/// Events and its spec.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobDetails {
    pub conditions: Vec<Condition>,
    pub events: Vec<EventLine>,
    /// Why the Events are not shown, when they could not be read.
    pub events_unread: Option<String>,
    /// Why the run's history is not shown, when it could not be read.
    pub history_unread: Option<String>,
    /// The job as YAML: its spec, with the metadata a user wrote.
    pub manifest: String,
    /// The memory plan of a GPU job, as text (`anneal_crds::memory_plan`'s table).
    pub memory_plan: Option<String>,
    /// What the operator estimated in Validating (`status.estimate`).
    pub estimate: Option<anneal_crds::finetunejob::JobEstimate>,
    /// What the viewer may do with it (`None`: the console is read-only).
    pub actions: Option<JobActions>,
}

/// The actions a job's page offers its viewer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobActions {
    /// The job's page, below which the actions are posted.
    pub href: String,
    pub name: String,
    pub permitted: crate::actions::Permitted,
    pub suspended: bool,
    /// The checkpoints a deployment may name.
    pub checkpoints: Vec<String>,
    /// The manifest a deployment of the first of them would apply.
    pub deployment_preview: Option<String>,
    /// The patch publishing the first of them would apply.
    pub publish_preview: Option<String>,
    /// What came of the last action, or why it was refused.
    pub outcome: Option<String>,
}

/// One Kubernetes Event about the job.
#[derive(Clone, Debug, PartialEq)]
pub struct EventLine {
    pub time: String,
    /// `Normal` or `Warning`.
    pub type_: String,
    pub reason: String,
    pub note: String,
}

/// The job as a user would apply it again: apiVersion, kind, name, namespace,
/// labels and spec; no status and none of the server's metadata.
pub fn job_manifest(job: &FineTuneJob) -> String {
    let mut metadata = serde_json::Map::new();
    metadata.insert("name".into(), job.metadata.name.clone().into());
    metadata.insert("namespace".into(), job.metadata.namespace.clone().into());
    if let Some(labels) = job.metadata.labels.as_ref().filter(|l| !l.is_empty()) {
        metadata.insert("labels".into(), serde_json::json!(labels));
    }
    let manifest = serde_json::json!({
        "apiVersion": "anneal.dev/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": metadata,
        "spec": job.spec,
    });
    serde_yaml_ng::to_string(&manifest).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> FineTuneJob {
        let yaml = r#"
apiVersion: anneal.dev/v1alpha1
kind: FineTuneJob
metadata: {name: story, namespace: team-a, creationTimestamp: "2026-12-05T10:00:00Z", labels: {team: a}, uid: u1, resourceVersion: "9"}
spec:
  baseModel: {name: anneal-tiny, source: "s3://models/anneal-tiny"}
  dataset: {train: "s3://data/train.jsonl"}
  checkpoints:
    samplePrompts: [{prompt: "Tell me a story."}]
status:
  phase: Running
  message: training
  progress: {epoch: 0.5, step: 12, totalSteps: 24, percent: 50}
  metrics: {trainLoss: 1.5, validLoss: 1.7, tokensPerSecond: 800.0}
  checkpoints:
    - {name: ckpt-6, step: 6, epoch: 0.25, uri: "s3://runs/team-a/story/u1/checkpoints/ckpt-6", validLoss: 1.9, samples: ["Once."]}
    - {name: ckpt-12, step: 12, epoch: 0.5, uri: "s3://runs/team-a/story/u1/checkpoints/ckpt-12", validLoss: 1.7, samples: ["Once upon a time."]}
"#;
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn a_row_says_where_the_job_stands() {
        let row = job_row(&job());
        assert_eq!(row.href, "/jobs/team-a/story");
        assert_eq!(row.phase, Some(JobPhase::Running));
        assert_eq!((row.step, row.total_steps), (12, 24));
        assert_eq!((row.train_loss, row.valid_loss), (Some(1.5), Some(1.7)));
        assert_eq!(row.best_checkpoint.as_deref(), Some("ckpt-12"));
        assert_eq!(row.method, "sft");
        assert_eq!(row.created.as_deref(), Some("2026-12-05T10:00:00Z"));
    }

    #[test]
    fn the_page_takes_history_from_events_and_the_rest_from_status() {
        let events = [
            r#"{"seq":1,"time":"2026-12-05T10:00:01Z","type":"metrics","step":3,"epoch":0.1,"trainLoss":2.5}"#,
            r#"{"seq":2,"time":"2026-12-05T10:00:02Z","type":"metrics","step":6,"epoch":0.25,"trainLoss":2.0,"validLoss":1.9}"#,
            r#"{"seq":3,"time":"2026-12-05T10:00:03Z","type":"log","level":"info","message":"from the file"}"#,
        ]
        .join("\n");
        let log: Vec<Arc<str>> = vec![
            "2026-12-05T10:00:04Z INFO step 12/24 loss 1.5".into(),
            "2026-12-05T10:00:05Z WARN slow disk".into(),
            "not a log line".into(),
        ];
        let summary = job_summary(&job(), Some(&events), Some(&log));
        assert_eq!(summary.title, "team-a/story");
        assert_eq!(summary.href, "/jobs/team-a/story");
        assert_eq!(summary.train_loss, [(3, 2.5), (6, 2.0), (12, 1.5)]);
        assert_eq!(summary.valid_loss, [(6, 1.9), (12, 1.7)]);
        assert_eq!(summary.checkpoints.len(), 2, "from status");
        assert_eq!(summary.best_checkpoint.as_deref(), Some("ckpt-12"));
        assert_eq!(summary.sample_prompts, ["Tell me a story."]);
        let messages: Vec<_> = summary.log.iter().map(|l| l.message.as_str()).collect();
        assert_eq!(messages, ["step 12/24 loss 1.5", "slow disk"]);
        assert_eq!(summary.log[1].level, LogLevel::Warn);

        let without = job_summary(&job(), None, None);
        assert_eq!(without.train_loss, [(12, 1.5)], "the status's latest alone");
        assert!(without.log.is_empty());
        let file_log = job_summary(&job(), Some(&events), None);
        assert_eq!(file_log.log[0].message, "from the file");
    }

    #[test]
    fn the_manifest_is_what_a_user_would_apply() {
        let manifest = job_manifest(&job());
        assert!(manifest.contains("kind: FineTuneJob"), "{manifest}");
        assert!(manifest.contains("team: a"), "{manifest}");
        assert!(
            manifest.contains("source: s3://models/anneal-tiny"),
            "{manifest}"
        );
        for server_side in ["status", "uid", "resourceVersion", "creationTimestamp"] {
            assert!(
                !manifest.contains(server_side),
                "{server_side} in {manifest}"
            );
        }
    }
}
