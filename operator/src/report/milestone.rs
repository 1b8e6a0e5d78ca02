//! Milestones: the moments of a training run worth a Kubernetes Event on the job
//! (`kubectl describe ftj` shows them), as opposed to the steady stream of progress
//! and metrics that only goes into the status.

use anneal_crds::finetunejob::{CheckpointStatus, JobResult};

/// Kubernetes keeps Event messages up to 1 KiB whole in `kubectl describe`.
const MESSAGE_BYTES_MAX: usize = 1024;

/// One Kubernetes Event to record on a FineTuneJob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Milestone {
    /// CamelCase, as Kubernetes Event reasons are.
    pub reason: String,
    pub message: String,
    /// Recorded as a `Warning` Event rather than `Normal`.
    pub warning: bool,
}

impl Milestone {
    pub const TRAINING_STARTED: &'static str = "TrainingStarted";
    pub const CHECKPOINT_SAVED: &'static str = "CheckpointSaved";
    pub const TRAINING_SUCCEEDED: &'static str = "TrainingSucceeded";
    pub const TRAINING_FAILED: &'static str = "TrainingFailed";
    pub const TRAINER_WARNING: &'static str = "TrainerWarning";
    pub const TRAINER_ERROR: &'static str = "TrainerError";

    fn new(reason: &str, message: String, warning: bool) -> Self {
        Self {
            reason: reason.to_owned(),
            message: bounded(message),
            warning,
        }
    }

    /// The trainer entered `Running` (a fresh start or a resume).
    pub fn training_started(trainer_message: Option<&str>) -> Self {
        let message = trainer_message.unwrap_or("the trainer is running");
        Self::new(Self::TRAINING_STARTED, message.to_owned(), false)
    }

    pub fn checkpoint_saved(checkpoint: &CheckpointStatus) -> Self {
        let loss = match checkpoint.valid_loss {
            Some(loss) => format!("validation loss {loss:.4}"),
            None => "no validation loss".to_owned(),
        };
        // The score `best` goes by, where the job evaluates its checkpoints.
        let score = checkpoint
            .evaluation
            .first()
            .map(|s| format!(", {} {:.4}", s.metric, s.score))
            .unwrap_or_default();
        let message = format!(
            "checkpoint {} saved at step {} (epoch {:.2}), {loss}{score}",
            checkpoint.name, checkpoint.step, checkpoint.epoch
        );
        Self::new(Self::CHECKPOINT_SAVED, message, false)
    }

    pub fn training_succeeded(result: Option<&JobResult>, trainer_message: Option<&str>) -> Self {
        let message = match (result, trainer_message) {
            (Some(result), _) => format!("training succeeded: model {}", result.model_id),
            (None, Some(message)) => format!("training succeeded: {message}"),
            (None, None) => "training succeeded".to_owned(),
        };
        Self::new(Self::TRAINING_SUCCEEDED, message, false)
    }

    pub fn training_failed(trainer_message: Option<&str>) -> Self {
        let message = match trainer_message {
            Some(message) => format!("training failed: {message}"),
            None => "training failed".to_owned(),
        };
        Self::new(Self::TRAINING_FAILED, message, true)
    }

    pub fn trainer_warning(message: &str) -> Self {
        Self::new(Self::TRAINER_WARNING, message.to_owned(), true)
    }

    pub fn trainer_error(message: &str) -> Self {
        Self::new(Self::TRAINER_ERROR, message.to_owned(), true)
    }
}

/// Cuts a message to the Event limit on a character boundary, marking the cut.
fn bounded(mut message: String) -> String {
    if message.len() <= MESSAGE_BYTES_MAX {
        return message;
    }
    let marker = "...";
    let mut end = MESSAGE_BYTES_MAX - marker.len();
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    message.truncate(end);
    message.push_str(marker);
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        let milestone = Milestone::trainer_warning(&"é".repeat(1000));
        assert!(milestone.message.len() <= MESSAGE_BYTES_MAX);
        assert!(milestone.message.ends_with("é..."));
        assert!(milestone.warning);
    }

    #[test]
    fn checkpoint_messages_name_the_loss() {
        let checkpoint = CheckpointStatus {
            name: "ckpt-12".into(),
            step: 12,
            epoch: 1.5,
            uri: "s3://b/ckpt-12".into(),
            valid_loss: Some(1.25),
            evaluation: Vec::new(),
            samples: vec![],
        };
        assert_eq!(
            Milestone::checkpoint_saved(&checkpoint).message,
            "checkpoint ckpt-12 saved at step 12 (epoch 1.50), validation loss 1.2500"
        );
        let evaluated = CheckpointStatus {
            evaluation: vec![anneal_crds::modelevaluation::MetricScore {
                metric: "regex /^Good/".into(),
                score: 0.75,
                low: 0.5,
                high: 1.0,
                unscored: 0,
            }],
            ..checkpoint
        };
        assert_eq!(
            Milestone::checkpoint_saved(&evaluated).message,
            "checkpoint ckpt-12 saved at step 12 (epoch 1.50), validation loss 1.2500, regex /^Good/ 0.7500"
        );
    }
}
