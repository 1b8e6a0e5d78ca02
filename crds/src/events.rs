//! Trainer events: the one record the trainer writes to `events.jsonl`, prints in
//! local mode and posts to the operator, which folds it into the FineTuneJob status.
//! Fields reuse the status types, so every name (`step`, `trainLoss`, `validLoss`,
//! `tokenAccuracy`, ...) is the one `kubectl get ftj -o yaml` shows.

use serde::{Deserialize, Serialize};

use crate::finetunejob::{CheckpointStatus, JobPhase, JobResult, Metrics, Progress};

/// One event, numbered per job run so a receiver can drop repeats.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TrainerEvent {
    /// 1, 2, 3, ... in the order the trainer emitted them.
    pub seq: u64,
    /// RFC 3339, UTC.
    pub time: String,
    #[serde(flatten)]
    pub body: EventBody,
}

/// What happened.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum EventBody {
    /// The trainer entered a phase (`Running`, `Succeeded`, `Failed`).
    Phase {
        phase: JobPhase,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        /// Set with `Succeeded`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        result: Option<JobResult>,
    },
    Progress(Progress),
    /// Metrics at a step; `validLoss` and `tokenAccuracy` (on the validation set)
    /// only when the step ran an evaluation.
    #[serde(rename_all = "camelCase")]
    Metrics {
        step: u64,
        epoch: f64,
        #[serde(flatten)]
        metrics: Metrics,
    },
    /// A checkpoint that is complete in storage.
    Checkpoint(CheckpointStatus),
    Log {
        level: LogLevel,
        message: String,
    },
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Info,
    Warn,
    Error,
}

impl TrainerEvent {
    /// An event stamped with the current time.
    pub fn now(seq: u64, body: EventBody) -> Self {
        Self {
            seq,
            time: k8s_openapi::jiff::Timestamp::now()
                .round(k8s_openapi::jiff::Unit::Millisecond)
                .expect("rounding a timestamp to milliseconds")
                .to_string(),
            body,
        }
    }

    /// The event as one `events.jsonl` line (no newline).
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("events serialize")
    }

    /// Reads one `events.jsonl` line.
    pub fn from_line(line: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_use_the_status_field_names_and_read_back() {
        let event = TrainerEvent {
            seq: 7,
            time: "2026-11-23T06:00:00Z".into(),
            body: EventBody::Metrics {
                step: 12,
                epoch: 1.5,
                metrics: Metrics {
                    train_loss: Some(1.25),
                    valid_loss: Some(1.5),
                    token_accuracy: Some(0.5),
                    tokens_per_second: Some(900.0),
                    learning_rate: Some(1e-4),
                    ..Metrics::default()
                },
            },
        };
        let line = event.to_line();
        assert_eq!(
            line,
            r#"{"seq":7,"time":"2026-11-23T06:00:00Z","type":"metrics","step":12,"epoch":1.5,"trainLoss":1.25,"validLoss":1.5,"tokenAccuracy":0.5,"tokensPerSecond":900.0,"learningRate":0.0001}"#
        );
        assert_eq!(TrainerEvent::from_line(&line).unwrap(), event);

        let checkpoint = TrainerEvent {
            seq: 8,
            time: "2026-11-23T06:00:01Z".into(),
            body: EventBody::Checkpoint(CheckpointStatus {
                name: "ckpt-12".into(),
                step: 12,
                epoch: 1.5,
                uri: "s3://b/p/checkpoints/ckpt-12".into(),
                valid_loss: Some(1.5),
                evaluation: vec![crate::modelevaluation::MetricScore {
                    metric: "rougeL".into(),
                    score: 0.5,
                    low: 0.25,
                    high: 0.75,
                    unscored: 0,
                }],
                samples: vec!["Sure thing!".into()],
            }),
        };
        let line = checkpoint.to_line();
        assert!(line.contains(r#""type":"checkpoint","name":"ckpt-12","step":12"#));
        assert!(line.contains(r#""validLoss":1.5"#));
        assert!(
            line.contains(
                r#""evaluation":[{"metric":"rougeL","score":0.5,"low":0.25,"high":0.75}]"#
            )
        );
        assert_eq!(TrainerEvent::from_line(&line).unwrap(), checkpoint);
    }

    #[test]
    fn phase_events_carry_the_result() {
        let line = r#"{"seq":1,"time":"t","type":"phase","phase":"Succeeded","result":{"modelId":"ft:a:b:ckpt-4","uri":"file:///x/final"}}"#;
        let event = TrainerEvent::from_line(line).unwrap();
        assert_eq!(
            event.body,
            EventBody::Phase {
                phase: JobPhase::Succeeded,
                message: None,
                result: Some(JobResult {
                    model_id: "ft:a:b:ckpt-4".into(),
                    uri: "file:///x/final".into(),
                    stopped_early: None,
                }),
            }
        );
        assert!(TrainerEvent::from_line(r#"{"seq":1,"time":"t","type":"bogus"}"#).is_err());
    }
}
