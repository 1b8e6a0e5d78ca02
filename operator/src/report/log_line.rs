//! Trainer events as the lines of a training log, `TIME LEVEL text`, which is what
//! `GET .../logs` serves: log events as they are, and metrics, checkpoints and phases
//! written out the way a training script prints them.

use anneal_crds::events::{EventBody, LogLevel, TrainerEvent};
use anneal_crds::finetunejob::{CheckpointStatus, JobPhase, Metrics};

/// Sample answers are cut to this many characters in the log; status holds them whole.
const SAMPLE_CHARS_MAX: usize = 300;

/// The log lines for one event (none for progress events: the metrics event of the
/// same step says it all). `total_steps` is the run's length when known, from the
/// latest progress event.
pub fn render_event(event: &TrainerEvent, total_steps: Option<u64>) -> Vec<String> {
    let stamp = |level: &str, text: &str| format!("{} {level} {text}", event.time);
    match &event.body {
        EventBody::Log { level, message } => {
            let level = match level {
                LogLevel::Info => "INFO",
                LogLevel::Warn => "WARN",
                LogLevel::Error => "ERROR",
            };
            // One line each, so that every buffered line starts with its time and level.
            message.lines().map(|line| stamp(level, line)).collect()
        }
        EventBody::Progress(_) => Vec::new(),
        EventBody::Metrics {
            step,
            epoch,
            metrics,
        } => vec![stamp(
            "INFO",
            &metrics_text(*step, *epoch, metrics, total_steps),
        )],
        EventBody::Checkpoint(checkpoint) => checkpoint_lines(checkpoint)
            .iter()
            .map(|text| stamp("INFO", text))
            .collect(),
        EventBody::Phase {
            phase,
            message,
            result,
        } => {
            let level = if *phase == JobPhase::Failed {
                "ERROR"
            } else {
                "INFO"
            };
            let mut text = format!("phase {phase:?}");
            if let Some(message) = message {
                text.push_str(": ");
                text.push_str(&one_line(message));
            }
            if let Some(result) = result {
                text.push_str(&format!(" (model {})", result.model_id));
            }
            vec![stamp(level, &text)]
        }
    }
}

/// `step 12/81 epoch 1.50 loss 1.2500 valid_loss 1.3000 accuracy 0.512 lr 1.0e-4 900 tok/s`,
/// with only the numbers the event carries.
fn metrics_text(step: u64, epoch: f64, metrics: &Metrics, total_steps: Option<u64>) -> String {
    let mut text = match total_steps {
        Some(total) => format!("step {step}/{total}"),
        None => format!("step {step}"),
    };
    text.push_str(&format!(" epoch {epoch:.2}"));
    if let Some(loss) = metrics.train_loss {
        text.push_str(&format!(" loss {loss:.4}"));
    }
    if let Some(loss) = metrics.valid_loss {
        text.push_str(&format!(" valid_loss {loss:.4}"));
    }
    if let Some(accuracy) = metrics.token_accuracy {
        text.push_str(&format!(" accuracy {accuracy:.3}"));
    }
    let dpo = [
        ("reward_margin", metrics.reward_margin),
        ("reward_accuracy", metrics.reward_accuracy),
        ("valid_reward_margin", metrics.valid_reward_margin),
        ("valid_reward_accuracy", metrics.valid_reward_accuracy),
    ];
    for (name, value) in dpo {
        if let Some(value) = value {
            text.push_str(&format!(" {name} {value:.3}"));
        }
    }
    if let Some(rate) = metrics.learning_rate {
        text.push_str(&format!(" lr {rate:.1e}"));
    }
    if let Some(speed) = metrics.tokens_per_second {
        text.push_str(&format!(" {speed:.0} tok/s"));
    }
    text
}

fn checkpoint_lines(checkpoint: &CheckpointStatus) -> Vec<String> {
    let loss = checkpoint
        .valid_loss
        .map(|loss| format!(" valid_loss {loss:.4}"))
        .unwrap_or_default();
    let scores: String = (checkpoint.evaluation.iter())
        .map(|s| format!(" {} {:.4} [{:.4}, {:.4}]", s.metric, s.score, s.low, s.high))
        .collect();
    let mut lines = vec![format!(
        "checkpoint {} step {} epoch {:.2}{loss}{scores} -> {}",
        checkpoint.name, checkpoint.step, checkpoint.epoch, checkpoint.uri
    )];
    for (index, sample) in checkpoint.samples.iter().enumerate() {
        lines.push(format!("  sample {}: {}", index + 1, one_line(sample)));
    }
    lines
}

/// Newlines flattened and length bounded, so one thing stays one log line.
fn one_line(text: &str) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(SAMPLE_CHARS_MAX) {
        Some((cut, _)) => format!("{}...", &flat[..cut]),
        None => flat,
    }
}

#[cfg(test)]
mod tests {
    use anneal_crds::finetunejob::{JobResult, Progress};

    use super::*;

    fn at(body: EventBody) -> TrainerEvent {
        TrainerEvent {
            seq: 1,
            time: "2026-11-23T06:00:00Z".into(),
            body,
        }
    }

    #[test]
    fn events_read_like_a_training_log() {
        let metrics = at(EventBody::Metrics {
            step: 12,
            epoch: 1.5,
            metrics: Metrics {
                train_loss: Some(1.25),
                tokens_per_second: Some(900.4),
                learning_rate: Some(1e-4),
                ..Metrics::default()
            },
        });
        assert_eq!(
            render_event(&metrics, Some(81)),
            ["2026-11-23T06:00:00Z INFO step 12/81 epoch 1.50 loss 1.2500 lr 1.0e-4 900 tok/s"]
        );

        let dpo = at(EventBody::Metrics {
            step: 4,
            epoch: 0.5,
            metrics: Metrics {
                train_loss: Some(0.5),
                reward_margin: Some(0.25),
                reward_accuracy: Some(0.75),
                valid_reward_accuracy: Some(1.0),
                ..Metrics::default()
            },
        });
        assert_eq!(
            render_event(&dpo, None),
            [
                "2026-11-23T06:00:00Z INFO step 4 epoch 0.50 loss 0.5000 reward_margin 0.250 reward_accuracy 0.750 valid_reward_accuracy 1.000"
            ]
        );

        let log = at(EventBody::Log {
            level: LogLevel::Warn,
            message: "two\nlines".into(),
        });
        assert_eq!(
            render_event(&log, None),
            [
                "2026-11-23T06:00:00Z WARN two",
                "2026-11-23T06:00:00Z WARN lines"
            ]
        );

        let checkpoint = at(EventBody::Checkpoint(CheckpointStatus {
            name: "ckpt-12".into(),
            step: 12,
            epoch: 1.5,
            uri: "s3://b/ckpt-12".into(),
            valid_loss: Some(1.3),
            evaluation: vec![anneal_crds::modelevaluation::MetricScore {
                metric: "rougeL".into(),
                score: 0.5,
                low: 0.25,
                high: 0.75,
                unscored: 0,
            }],
            samples: vec!["Hello\nthere".into()],
        }));
        assert_eq!(
            render_event(&checkpoint, None),
            [
                "2026-11-23T06:00:00Z INFO checkpoint ckpt-12 step 12 epoch 1.50 valid_loss 1.3000 rougeL 0.5000 [0.2500, 0.7500] -> s3://b/ckpt-12",
                "2026-11-23T06:00:00Z INFO   sample 1: Hello there",
            ]
        );

        let success = at(EventBody::Phase {
            phase: JobPhase::Succeeded,
            message: Some("trained 81 steps".into()),
            result: Some(JobResult {
                model_id: "ft:a:b:ckpt-81".into(),
                uri: "s3://b/final".into(),
                stopped_early: None,
            }),
        });
        assert_eq!(
            render_event(&success, None),
            ["2026-11-23T06:00:00Z INFO phase Succeeded: trained 81 steps (model ft:a:b:ckpt-81)"]
        );

        let progress = at(EventBody::Progress(Progress::default()));
        assert!(render_event(&progress, Some(3)).is_empty());
    }

    #[test]
    fn long_samples_are_cut() {
        let line = one_line(&"x".repeat(SAMPLE_CHARS_MAX + 10));
        assert_eq!(line.len(), SAMPLE_CHARS_MAX + 3);
    }
}
