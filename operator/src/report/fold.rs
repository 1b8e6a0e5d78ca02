//! Trainer events folded into the part of a FineTuneJob's status the trainer owns,
//! as a pure function: the report endpoint folds posted events with it, and the
//! controller folds a stored `events.jsonl` with it after a restart, so both arrive
//! at the same status from the same events.
//!
//! Events come from a pod the job's author controls, so the fold trusts none of them:
//! a seq may only move forward by a bounded step, every URI must lie in the job's own
//! run folder, and what the status keeps is bounded (the newest checkpoints and the
//! best, samples cut to a preview), so the status always fits the API server's limit.

use anneal_crds::FineTuneJobStatus;
use anneal_crds::best_checkpoint::best_checkpoint_index;
use anneal_crds::events::{EventBody, LogLevel, TrainerEvent};
use anneal_crds::finetunejob::{CheckpointStatus, JobPhase, JobResult, Metrics, Progress};
use serde::Serialize;

pub use super::fold_rules::{FoldRules, Refusal};
use super::fold_rules::{
    MESSAGE_BYTES_MAX, SAMPLE_BYTES_MAX, SAMPLES_MAX, STATUS_CHECKPOINTS_MAX, cut,
};
use super::milestone::Milestone;

/// The report-owned fields of [`FineTuneJobStatus`]; phase, conditions, times and the
/// message belong to the controller and are not here.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReportedStatus {
    pub progress: Option<Progress>,
    pub metrics: Option<Metrics>,
    /// One entry per checkpoint name, ordered by step.
    pub checkpoints: Vec<CheckpointStatus>,
    pub result: Option<JobResult>,
    pub last_event_seq: Option<u64>,
    /// The phase the trainer last reported, with its message: input for the
    /// controller's own status message; not written to the status by the endpoint.
    pub trainer_phase: Option<JobPhase>,
    pub trainer_message: Option<String>,
}

/// What folding one event did.
#[derive(Clone, Debug, PartialEq)]
pub enum FoldOutcome {
    /// The event's seq is at or below `last_event_seq`: it was folded before and
    /// nothing changed.
    Repeat,
    /// The event breaks a rule; nothing changed (its seq is not taken either).
    Refused(Refusal),
    Applied {
        /// A Kubernetes Event to record, if this event is a milestone.
        milestone: Option<Milestone>,
        /// The trainer reported a terminal phase (`Succeeded`, `Failed`, `Cancelled`).
        terminal: bool,
    },
}

impl FoldOutcome {
    pub fn is_applied(&self) -> bool {
        matches!(self, FoldOutcome::Applied { .. })
    }
}

/// Folds one event into `status`, unless it is a repeat or breaks `rules`.
pub fn fold_event(
    status: &mut ReportedStatus,
    event: &TrainerEvent,
    rules: &FoldRules,
) -> FoldOutcome {
    if status.last_event_seq.is_some_and(|last| event.seq <= last) {
        return FoldOutcome::Repeat;
    }
    if let Err(refusal) = rules.check(status.last_event_seq, event) {
        return FoldOutcome::Refused(refusal);
    }
    status.last_event_seq = Some(event.seq);
    let mut terminal = false;
    let milestone = match &event.body {
        EventBody::Phase {
            phase,
            message,
            result,
        } => {
            status.trainer_phase = Some(*phase);
            status.trainer_message = message.as_deref().map(|m| cut(m, MESSAGE_BYTES_MAX));
            if let Some(result) = result {
                let mut result = result.clone();
                // Words from the trainer, kept to what a status should hold.
                result.stopped_early = result
                    .stopped_early
                    .map(|why| cut(&why, MESSAGE_BYTES_MAX).to_owned());
                status.result = Some(result);
            }
            terminal = is_terminal(*phase);
            phase_milestone(*phase, message.as_deref(), status.result.as_ref())
        }
        EventBody::Progress(progress) => {
            status.progress = Some(progress.clone());
            None
        }
        EventBody::Metrics { metrics, .. } => {
            merge_metrics(status.metrics.get_or_insert_with(Metrics::default), metrics);
            None
        }
        EventBody::Checkpoint(checkpoint) => {
            let checkpoint = preview(checkpoint);
            upsert_checkpoint(&mut status.checkpoints, &checkpoint);
            Some(Milestone::checkpoint_saved(&checkpoint))
        }
        EventBody::Log { level, message } => match level {
            LogLevel::Info => None,
            LogLevel::Warn => Some(Milestone::trainer_warning(message)),
            LogLevel::Error => Some(Milestone::trainer_error(message)),
        },
    };
    FoldOutcome::Applied {
        milestone,
        terminal,
    }
}

/// Phases after which this trainer run reports nothing more.
pub(crate) fn is_terminal(phase: JobPhase) -> bool {
    matches!(
        phase,
        JobPhase::Succeeded | JobPhase::Failed | JobPhase::Cancelled
    )
}

fn phase_milestone(
    phase: JobPhase,
    message: Option<&str>,
    result: Option<&JobResult>,
) -> Option<Milestone> {
    match phase {
        JobPhase::Running => Some(Milestone::training_started(message)),
        JobPhase::Succeeded => Some(Milestone::training_succeeded(result, message)),
        JobPhase::Failed => Some(Milestone::training_failed(message)),
        _ => None,
    }
}

/// Sets the fields the event carries and keeps the others: validation numbers only
/// come with evaluation steps, and must stay visible between them.
fn merge_metrics(current: &mut Metrics, update: &Metrics) {
    let fields = [
        (&mut current.train_loss, update.train_loss),
        (&mut current.valid_loss, update.valid_loss),
        (&mut current.token_accuracy, update.token_accuracy),
        (&mut current.tokens_per_second, update.tokens_per_second),
        (&mut current.learning_rate, update.learning_rate),
        (&mut current.rewards_chosen, update.rewards_chosen),
        (&mut current.rewards_rejected, update.rewards_rejected),
        (&mut current.reward_margin, update.reward_margin),
        (&mut current.reward_accuracy, update.reward_accuracy),
        (
            &mut current.valid_rewards_chosen,
            update.valid_rewards_chosen,
        ),
        (
            &mut current.valid_rewards_rejected,
            update.valid_rewards_rejected,
        ),
        (&mut current.valid_reward_margin, update.valid_reward_margin),
        (
            &mut current.valid_reward_accuracy,
            update.valid_reward_accuracy,
        ),
    ];
    for (field, value) in fields {
        if value.is_some() {
            *field = value;
        }
    }
}

/// Replaces the checkpoint of the same name (a resumed run may save it again) or adds
/// it, keeping the list in step order and at most [`STATUS_CHECKPOINTS_MAX`] long.
fn upsert_checkpoint(checkpoints: &mut Vec<CheckpointStatus>, checkpoint: &CheckpointStatus) {
    match checkpoints.iter_mut().find(|c| c.name == checkpoint.name) {
        Some(existing) => *existing = checkpoint.clone(),
        None => checkpoints.push(checkpoint.clone()),
    }
    checkpoints.sort_by(|a, b| a.step.cmp(&b.step).then_with(|| a.name.cmp(&b.name)));
    keep_newest_and_best(checkpoints);
}

/// Drops the oldest checkpoints past [`STATUS_CHECKPOINTS_MAX`], except the best one
/// (`anneal_crds::best_checkpoint`), which `checkpoint: best` serves. The dropped ones
/// stay in storage.
fn keep_newest_and_best(checkpoints: &mut Vec<CheckpointStatus>) {
    if checkpoints.len() <= STATUS_CHECKPOINTS_MAX {
        return;
    }
    let best = best_checkpoint_index(checkpoints);
    let first_newest = checkpoints.len() - STATUS_CHECKPOINTS_MAX;
    let mut index = 0;
    checkpoints.retain(|_| {
        let keep = index >= first_newest || Some(index) == best;
        index += 1;
        keep
    });
}

/// The checkpoint as the status shows it: at most [`SAMPLES_MAX`] samples, each cut
/// to [`SAMPLE_BYTES_MAX`] (the whole answers are in the checkpoint's folder).
fn preview(checkpoint: &CheckpointStatus) -> CheckpointStatus {
    CheckpointStatus {
        samples: checkpoint
            .samples
            .iter()
            .take(SAMPLES_MAX)
            .map(|sample| cut(sample, SAMPLE_BYTES_MAX))
            .collect(),
        ..checkpoint.clone()
    }
}

/// The report-owned fields as they appear under `status` (camelCase, absent when unset).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReportedFields<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    progress: Option<&'a Progress>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics: Option<&'a Metrics>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    checkpoints: &'a [CheckpointStatus],
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a JobResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_event_seq: Option<u64>,
}

impl ReportedStatus {
    /// The report-owned fields of a job's current status, to continue folding from.
    pub fn from_status(status: &FineTuneJobStatus) -> Self {
        Self {
            progress: status.progress.clone(),
            metrics: status.metrics.clone(),
            checkpoints: status.checkpoints.clone(),
            result: status.result.clone(),
            last_event_seq: status.last_event_seq,
            trainer_phase: None,
            trainer_message: None,
        }
    }

    /// The JSON merge patch body `{"status": {...}}` that writes exactly the
    /// report-owned fields. Unset fields are left out rather than nulled, so a patch
    /// never erases what the status already holds.
    pub fn to_status_patch(&self) -> serde_json::Value {
        let fields = ReportedFields {
            progress: self.progress.as_ref(),
            metrics: self.metrics.as_ref(),
            checkpoints: &self.checkpoints,
            result: self.result.as_ref(),
            last_event_seq: self.last_event_seq,
        };
        serde_json::json!({ "status": fields })
    }

    /// Does to `status` what [`Self::to_status_patch`] does to the stored object.
    pub fn apply_to(&self, status: &mut FineTuneJobStatus) {
        if let Some(progress) = &self.progress {
            status.progress = Some(progress.clone());
        }
        if let Some(metrics) = &self.metrics {
            status.metrics = Some(metrics.clone());
        }
        if !self.checkpoints.is_empty() {
            status.checkpoints.clone_from(&self.checkpoints);
        }
        if let Some(result) = &self.result {
            status.result = Some(result.clone());
        }
        if let Some(seq) = self.last_event_seq {
            status.last_event_seq = Some(seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn rules() -> FoldRules {
        FoldRules::for_run("s3://b")
    }

    fn event(seq: u64, body: EventBody) -> TrainerEvent {
        TrainerEvent {
            seq,
            time: "2026-11-23T06:00:00Z".into(),
            body,
        }
    }

    fn metrics(train: Option<f64>, valid: Option<f64>) -> EventBody {
        EventBody::Metrics {
            step: 1,
            epoch: 0.1,
            metrics: Metrics {
                train_loss: train,
                valid_loss: valid,
                ..Metrics::default()
            },
        }
    }

    fn checkpoint(name: &str, step: u64, valid_loss: Option<f64>) -> EventBody {
        EventBody::Checkpoint(CheckpointStatus {
            name: name.into(),
            step,
            epoch: step as f64 / 10.0,
            uri: format!("s3://b/{name}"),
            valid_loss,
            evaluation: Vec::new(),
            samples: vec![],
        })
    }

    fn fold_all(bodies: Vec<EventBody>) -> (ReportedStatus, Vec<FoldOutcome>) {
        let mut status = ReportedStatus::default();
        let outcomes = bodies
            .into_iter()
            .enumerate()
            .map(|(i, body)| fold_event(&mut status, &event(i as u64 + 1, body), &rules()))
            .collect();
        (status, outcomes)
    }

    #[test]
    fn repeats_at_or_below_the_last_seq_change_nothing() {
        let mut status = ReportedStatus::default();
        let first = event(5, metrics(Some(2.0), None));
        assert!(fold_event(&mut status, &first, &rules()).is_applied());
        let before = status.clone();
        for seq in [1, 5] {
            let repeat = event(seq, metrics(Some(9.0), None));
            assert_eq!(
                fold_event(&mut status, &repeat, &rules()),
                FoldOutcome::Repeat
            );
        }
        assert_eq!(status, before);
        assert!(
            fold_event(&mut status, &event(6, metrics(Some(1.0), None)), &rules()).is_applied()
        );
        assert_eq!(status.last_event_seq, Some(6));
        assert_eq!(status.metrics.unwrap().train_loss, Some(1.0));
    }

    #[test]
    fn metrics_keep_the_validation_loss_between_evaluations() {
        let (status, _) = fold_all(vec![
            metrics(None, Some(3.0)),
            metrics(Some(2.5), None),
            metrics(Some(2.0), Some(2.2)),
            metrics(Some(1.5), None),
        ]);
        let metrics = status.metrics.unwrap();
        assert_eq!(metrics.train_loss, Some(1.5));
        assert_eq!(metrics.valid_loss, Some(2.2));
    }

    #[test]
    fn dpo_rewards_pass_through_and_validation_ones_stay_between_evaluations() {
        let dpo = |step_margin: f64, valid_accuracy: Option<f64>| EventBody::Metrics {
            step: 1,
            epoch: 0.1,
            metrics: Metrics {
                train_loss: Some(0.6),
                rewards_chosen: Some(0.2),
                rewards_rejected: Some(0.2 - step_margin),
                reward_margin: Some(step_margin),
                reward_accuracy: Some(0.75),
                valid_reward_accuracy: valid_accuracy,
                valid_reward_margin: valid_accuracy.map(|a| a / 2.0),
                ..Metrics::default()
            },
        };
        let (status, _) = fold_all(vec![dpo(0.1, Some(0.9)), dpo(0.3, None)]);
        let metrics = status.metrics.unwrap();
        assert_eq!(metrics.reward_margin, Some(0.3));
        assert_eq!(metrics.rewards_rejected, Some(0.2 - 0.3));
        assert_eq!(metrics.reward_accuracy, Some(0.75));
        assert_eq!(metrics.valid_reward_accuracy, Some(0.9));
        assert_eq!(metrics.valid_reward_margin, Some(0.45));
    }

    #[test]
    fn checkpoints_are_replaced_by_name_and_kept_in_step_order() {
        let (status, outcomes) = fold_all(vec![
            checkpoint("ckpt-20", 20, Some(1.0)),
            checkpoint("ckpt-10", 10, Some(2.0)),
            checkpoint("ckpt-20", 20, Some(0.9)),
        ]);
        let names: Vec<_> = status.checkpoints.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["ckpt-10", "ckpt-20"]);
        assert_eq!(status.checkpoints[1].valid_loss, Some(0.9));
        let FoldOutcome::Applied {
            milestone: Some(milestone),
            ..
        } = &outcomes[2]
        else {
            panic!("a checkpoint is a milestone: {:?}", outcomes[2]);
        };
        assert_eq!(milestone.reason, Milestone::CHECKPOINT_SAVED);
        assert!(milestone.message.contains("ckpt-20") && milestone.message.contains("0.9000"));
    }

    /// An event, the (reason, warning) of the milestone it should make, and whether it is terminal.
    type MilestoneCase = (EventBody, Option<(&'static str, bool)>, bool);

    #[test]
    fn phases_and_logs_are_milestones_and_success_carries_the_result() {
        let result = JobResult {
            model_id: "ft:tiny:job:ckpt-4".into(),
            uri: "s3://b/final".into(),
            stopped_early: None,
        };
        let table: Vec<MilestoneCase> = vec![
            (
                EventBody::Phase {
                    phase: JobPhase::Running,
                    message: Some("training on 10 samples".into()),
                    result: None,
                },
                Some((Milestone::TRAINING_STARTED, false)),
                false,
            ),
            (
                EventBody::Progress(Progress {
                    epoch: 0.5,
                    step: 2,
                    total_steps: 4,
                    percent: 50,
                    eta_seconds: Some(3),
                }),
                None,
                false,
            ),
            (
                EventBody::Log {
                    level: LogLevel::Info,
                    message: "hello".into(),
                },
                None,
                false,
            ),
            (
                EventBody::Log {
                    level: LogLevel::Warn,
                    message: "dropped 2 samples".into(),
                },
                Some((Milestone::TRAINER_WARNING, true)),
                false,
            ),
            (
                EventBody::Phase {
                    phase: JobPhase::Succeeded,
                    message: None,
                    result: Some(result.clone()),
                },
                Some((Milestone::TRAINING_SUCCEEDED, false)),
                true,
            ),
        ];
        let mut status = ReportedStatus::default();
        for (i, (body, expected_milestone, expected_terminal)) in table.into_iter().enumerate() {
            let outcome = fold_event(&mut status, &event(i as u64 + 1, body), &rules());
            let FoldOutcome::Applied {
                milestone,
                terminal,
            } = outcome
            else {
                panic!("event {i} applies");
            };
            assert_eq!(
                milestone.as_ref().map(|m| (m.reason.as_str(), m.warning)),
                expected_milestone,
                "event {i}"
            );
            assert_eq!(terminal, expected_terminal, "event {i}");
            if let Some(milestone) = milestone.filter(|m| m.reason == Milestone::TRAINING_SUCCEEDED)
            {
                assert!(milestone.message.contains("ft:tiny:job:ckpt-4"));
            }
        }
        assert_eq!(status.result, Some(result));
        assert_eq!(status.progress.unwrap().step, 2);
        assert_eq!(status.trainer_phase, Some(JobPhase::Succeeded));
    }

    #[test]
    fn failure_is_a_warning_milestone_with_the_trainer_message() {
        let (_, outcomes) = fold_all(vec![EventBody::Phase {
            phase: JobPhase::Failed,
            message: Some("out of memory".into()),
            result: None,
        }]);
        let FoldOutcome::Applied {
            milestone: Some(milestone),
            terminal: true,
        } = &outcomes[0]
        else {
            panic!("{outcomes:?}");
        };
        assert_eq!(milestone.reason, Milestone::TRAINING_FAILED);
        assert!(milestone.warning && milestone.message.contains("out of memory"));
    }

    #[test]
    fn the_patch_holds_exactly_the_report_owned_fields() {
        let (status, _) = fold_all(vec![
            metrics(Some(2.0), None),
            checkpoint("ckpt-1", 1, None),
        ]);
        assert_eq!(
            status.to_status_patch(),
            json!({"status": {
                "metrics": {"trainLoss": 2.0},
                "checkpoints": [{"name": "ckpt-1", "step": 1, "epoch": 0.1, "uri": "s3://b/ckpt-1"}],
                "lastEventSeq": 2,
            }})
        );
        assert_eq!(
            ReportedStatus::default().to_status_patch(),
            json!({"status": {}})
        );
    }

    /// RFC 7386: objects merge key by key, null removes, anything else replaces.
    fn merge_patch(target: &mut Value, patch: &Value) {
        let Value::Object(patch) = patch else {
            *target = patch.clone();
            return;
        };
        if !target.is_object() {
            *target = json!({});
        }
        let target = target.as_object_mut().unwrap();
        for (key, value) in patch {
            if value.is_null() {
                target.remove(key);
            } else {
                merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }

    #[test]
    fn apply_to_matches_the_merge_patch_and_leaves_controller_fields_alone() {
        let mut stored = FineTuneJobStatus {
            phase: Some(JobPhase::Running),
            message: Some("controller's words".into()),
            checkpoints: vec![CheckpointStatus {
                name: "old".into(),
                ..CheckpointStatus::default()
            }],
            result: Some(JobResult::default()),
            ..FineTuneJobStatus::default()
        };
        let (reported, _) = fold_all(vec![
            metrics(Some(2.0), Some(2.5)),
            checkpoint("ckpt-1", 1, Some(2.5)),
        ]);

        let mut patched = json!({ "status": serde_json::to_value(&stored).unwrap() });
        merge_patch(&mut patched, &reported.to_status_patch());
        reported.apply_to(&mut stored);
        assert_eq!(serde_json::to_value(&stored).unwrap(), patched["status"]);
        assert_eq!(stored.phase, Some(JobPhase::Running));
        assert_eq!(stored.message.as_deref(), Some("controller's words"));
        assert_eq!(stored.checkpoints.len(), 1);
        assert_eq!(ReportedStatus::from_status(&stored).last_event_seq, Some(2));
    }
}
