//! Training that fails loudly: a step whose loss or gradient norm is not a finite
//! number, or an evaluation whose loss is not, ends the run there. The update that
//! step made is already in the weights in memory, which are dropped; nothing after
//! the last complete checkpoint is written, so no adapter with NaN in it is ever
//! saved, marked complete or served.

use anneal_crds::events::{EventBody, LogLevel};
use anneal_crds::finetunejob::JobPhase;
use burn::tensor::backend::AutodiffBackend;

use super::Run;
use crate::TrainError;
use crate::event_log::EventLog;
use crate::objective::{Objective, Scores, StepReport};
use crate::state::TrainerState;
use anneal_crds::storage::Storage;

/// Why and where a run diverged, and what is left of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Divergence {
    /// The step (counted from 1) whose figures were not finite.
    pub step: u64,
    /// `training loss`, `gradient norm` or `validation loss`.
    pub what: &'static str,
    pub value: f64,
    /// The newest complete checkpoint, which a resume continues from.
    pub last_checkpoint: Option<String>,
    pub likely_cause: String,
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "training diverged at step {}: the {} is {}; ",
            self.step, self.what, self.value
        )?;
        match &self.last_checkpoint {
            Some(name) => write!(f, "the last good checkpoint is {name} (kept)")?,
            None => write!(f, "no checkpoint was written before it")?,
        }
        write!(f, "; likely cause: {}", self.likely_cause)
    }
}

/// The first figure of step `step` that is not finite, if any: the training loss,
/// the gradient norm, then the validation loss of the evaluation after it.
pub(super) fn non_finite_figure(
    report: &StepReport,
    evaluation: Option<&Scores>,
) -> Option<(&'static str, f64)> {
    [
        ("training loss", Some(report.scores.loss)),
        ("gradient norm", Some(report.grad_norm)),
        ("validation loss", evaluation.map(|e| e.loss)),
    ]
    .into_iter()
    .find_map(|(what, value)| value.filter(|v| !v.is_finite()).map(|v| (what, v)))
}

/// What most likely made a run diverge at `step`: a base model that gives no finite
/// output when the very first step of a fresh run fails, else too large a step.
pub(crate) fn likely_cause(state: &TrainerState, step: u64, learning_rate: f64) -> String {
    let finite_before = state
        .log_history
        .iter()
        .any(|entry| entry.train_loss.is_finite());
    if step == 1 || !finite_before {
        "the base model gives no finite output from the first step: check its weights and \
         config.json (rms_norm_eps, rope_theta), or the dataset's first batch"
            .to_owned()
    } else {
        format!(
            "the learning rate ({learning_rate:e} at this step) is too high for this model and data: \
             lower hyperparameters.learningRate, or raise warmupRatio"
        )
    }
}

impl<B: AutodiffBackend, O: Objective<B>> Run<'_, B, O> {
    /// Ends the run at `step` because `what` is `value`: an error event and the
    /// `Failed` phase go to the event stream and its storage copy, and the error says
    /// which checkpoint is the last good one.
    pub(super) fn diverged(
        &mut self,
        state: &TrainerState,
        step: u64,
        (what, value): (&'static str, f64),
        learning_rate: f64,
    ) -> TrainError {
        let divergence = Divergence {
            step,
            what,
            value,
            last_checkpoint: state.checkpoints.last().map(|c| c.name.clone()),
            likely_cause: likely_cause(state, step, learning_rate),
        };
        self.fail_run(divergence.to_string());
        TrainError::Diverged(Box::new(divergence))
    }

    /// Says why the run ends here: an error event and the `Failed` phase go to the
    /// event stream and its storage copy.
    pub(super) fn fail_run(&mut self, message: String) {
        report_failure(&mut self.events, &self.location.output, message);
    }
}

/// An error event and the `Failed` phase with `message`, also in `output`'s copy of
/// the events (chat and image runs alike).
pub(crate) fn report_failure(events: &mut EventLog, output: &Storage, message: String) {
    events.emit(EventBody::Log {
        level: LogLevel::Error,
        message: message.clone(),
    });
    events.emit(EventBody::Phase {
        phase: JobPhase::Failed,
        message: Some(message),
        result: None,
    });
    // The events that say why are worth a retry of the write; the failure is the
    // error either way.
    if let Err(error) = events.sync(output) {
        eprintln!("warning: events.jsonl not updated: {error}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(loss: f64, grad_norm: f64) -> StepReport {
        StepReport {
            scores: Scores {
                loss,
                token_accuracy: None,
                preferences: None,
            },
            grad_norm,
        }
    }

    #[test]
    fn the_first_non_finite_figure_is_named() {
        assert_eq!(non_finite_figure(&report(1.5, 0.3), None), None);
        let nan = non_finite_figure(&report(f64::NAN, 0.3), None).unwrap();
        assert_eq!(nan.0, "training loss");
        assert!(nan.1.is_nan());
        assert_eq!(
            non_finite_figure(&report(1.5, f64::INFINITY), None),
            Some(("gradient norm", f64::INFINITY))
        );
        let evaluation = Scores {
            loss: f64::NEG_INFINITY,
            token_accuracy: None,
            preferences: None,
        };
        assert_eq!(
            non_finite_figure(&report(1.5, 0.3), Some(&evaluation)),
            Some(("validation loss", f64::NEG_INFINITY))
        );
    }

    #[test]
    fn the_message_names_the_step_the_checkpoint_and_the_cause() {
        let divergence = Divergence {
            step: 12,
            what: "gradient norm",
            value: f64::INFINITY,
            last_checkpoint: Some("checkpoint-10".to_owned()),
            likely_cause: "the learning rate (2e-3 at this step) is too high".to_owned(),
        };
        assert_eq!(
            divergence.to_string(),
            "training diverged at step 12: the gradient norm is inf; the last good checkpoint is \
             checkpoint-10 (kept); likely cause: the learning rate (2e-3 at this step) is too high"
        );
    }
}
