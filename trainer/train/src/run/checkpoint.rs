//! Checkpointing a run: at every checkpoint step, and once more when the run is
//! asked to stop, so that a resume continues where it stood.

use anneal_crds::events::{EventBody, LogLevel};
use burn::tensor::backend::AutodiffBackend;

use super::start::Training;
use super::{Deadline, Run, RunOutcome};
use crate::TrainError;
use crate::checkpoint::{
    CHECKPOINTS, CheckpointContents, SampleAnswer, checkpoint_name, checkpoint_status,
    prune_checkpoints, store_checkpoint,
};
use crate::checkpoint_evaluation::CheckpointScores;
use crate::event_log::EventLog;
use crate::objective::{Objective, Scores};
use crate::run::divergence::report_failure;
use crate::state::TrainerState;
use anneal_crds::best_checkpoint::best_checkpoint_name;
use anneal_crds::storage::Storage;

/// Says where a stopped run (chat or image) stands and what a resume continues
/// from, in the events and storage's copy of them.
pub(crate) fn report_stop(
    events: &mut EventLog,
    output: &Storage,
    state: &TrainerState,
    checkpoint: String,
) -> Result<RunOutcome, TrainError> {
    events.emit(EventBody::Log {
        level: LogLevel::Warn,
        message: format!(
            "stopped at step {}/{}; resume continues from {}",
            state.step,
            state.total_steps,
            state
                .checkpoints
                .last()
                .map_or("the start", |c| c.name.as_str())
        ),
    });
    events.sync(output)?;
    Ok(RunOutcome::Stopped {
        checkpoint,
        step: state.step,
    })
}

/// Says that a run (chat or image) ran past its deadline and where what it trained is
/// kept (an error event and the `Failed` phase, also in storage's copy of the events);
/// returns the failure that ends it.
pub(crate) fn report_deadline(
    events: &mut EventLog,
    output: &Storage,
    state: &TrainerState,
    deadline: Deadline,
) -> Result<TrainError, TrainError> {
    let kept = match state.checkpoints.last() {
        Some(last) => format!("the checkpoints are kept, the last is {}", last.name),
        None => "no step was taken, so there is no checkpoint".to_owned(),
    };
    let message = format!(
        "ran past spec.activeDeadlineSeconds ({} s) at step {}/{}; {kept}",
        deadline.seconds, state.step, state.total_steps
    );
    report_failure(events, output, message.clone());
    Ok(TrainError::DeadlineExceeded(message))
}

/// Prunes the checkpoints beyond `keep` (`checkpoints.keep`), sparing `spare`, with
/// a log event for each one removed.
pub(crate) fn prune_and_report(
    events: &mut EventLog,
    output: &Storage,
    keep: Option<u32>,
    spare: Option<&str>,
) -> Result<(), TrainError> {
    let Some(keep) = keep else {
        return Ok(());
    };
    for removed in prune_checkpoints(output, keep as usize, spare)? {
        events.emit(EventBody::Log {
            level: LogLevel::Info,
            message: format!("removed {removed} (checkpoints.keep is {keep})"),
        });
    }
    Ok(())
}

impl<B: AutodiffBackend, O: Objective<B>> Run<'_, B, O> {
    /// Stores a checkpoint at the current step with `samples` (the answers to the
    /// sample prompts, or none) and `scores` (of `checkpoints.evaluation`, where it
    /// ran), records it in the state with the best checkpoint so far, and prunes old
    /// ones.
    pub(super) fn checkpoint(
        &mut self,
        training: &mut Training<B>,
        validation: Option<Scores>,
        samples: Vec<SampleAnswer>,
        scores: Option<CheckpointScores>,
    ) -> Result<(), TrainError> {
        let output = &self.location.output;
        let state = &mut training.state;
        let evaluation = scores.as_ref().map_or(Vec::new(), |s| s.scores.clone());
        let status = checkpoint_status(
            output,
            state,
            validation.map(|v| v.loss),
            evaluation,
            &samples,
        );
        state.checkpoints.push(status.clone());
        state.best_checkpoint = best_checkpoint_name(&state.checkpoints);
        let files = match &scores {
            Some(scores) => {
                let title = format!(
                    "{} {}: checkpoints.evaluation",
                    self.job.job_name, status.name
                );
                scores.files(&title).into()
            }
            None => Vec::new(),
        };
        let folder = format!("{CHECKPOINTS}/{}", status.name);
        self.store(training, samples, files, &folder)?;
        if let (Some(scores), Some(evaluation)) = (&scores, self.checkpoint_evaluation) {
            self.events.emit(EventBody::Log {
                level: LogLevel::Info,
                message: scores.summary(&status.name, evaluation.samples.len()),
            });
        }
        self.events.emit(EventBody::Checkpoint(status));
        let best = training.state.best_checkpoint.as_deref();
        prune_and_report(
            &mut self.events,
            output,
            self.settings.checkpoints.keep,
            best,
        )?;
        self.events.sync(output)?;
        Ok(())
    }

    /// Writes the model, its optimizer and trainer state, `samples` and `files` to
    /// `relative` (a checkpoint's folder, or `final`) in the run's output.
    pub(super) fn store(
        &self,
        training: &mut Training<B>,
        samples: Vec<SampleAnswer>,
        files: Vec<(&'static str, String)>,
        relative: &str,
    ) -> Result<(), TrainError> {
        let contents = CheckpointContents {
            training: self.settings.training,
            base_model_dir: &self.base_model.dir,
            settings: self.lora,
            base_model_name: &self.base_model.name,
            samples,
            files,
        };
        store_checkpoint(
            &mut training.model,
            &training.optimizer,
            &training.state,
            &contents,
            &self.location.output,
            relative,
            &self.location.work_dir,
        )
    }

    /// Checkpoints where the run stands (unless that step already has one) and
    /// returns the failure that ends a run past its deadline, naming the checkpoint
    /// that keeps what it trained.
    pub(super) fn deadline_exceeded(
        mut self,
        mut training: Training<B>,
        deadline: Deadline,
    ) -> Result<TrainError, TrainError> {
        self.checkpoint_where_it_stands(&mut training)?;
        report_deadline(
            &mut self.events,
            &self.location.output,
            &training.state,
            deadline,
        )
    }

    /// Checkpoints where the run stands (unless that step already has one) and stops.
    pub(super) fn stop(mut self, mut training: Training<B>) -> Result<RunOutcome, TrainError> {
        self.checkpoint_where_it_stands(&mut training)?;
        let name = checkpoint_name(training.state.step);
        report_stop(
            &mut self.events,
            &self.location.output,
            &training.state,
            name,
        )
    }

    /// A checkpoint at the current step, unless it has one or no step was taken.
    /// Within the pod's grace period: the validation loss, but no sample answers and
    /// no `checkpoints.evaluation` (so this checkpoint does not compete for best).
    fn checkpoint_where_it_stands(&mut self, training: &mut Training<B>) -> Result<(), TrainError> {
        let state = &training.state;
        let name = checkpoint_name(state.step);
        if state.step > 0 && !state.checkpoints.iter().any(|c| c.name == name) {
            let validation = self.evaluate(&training.model);
            self.checkpoint(training, validation, Vec::new(), None)?;
        }
        Ok(())
    }
}
