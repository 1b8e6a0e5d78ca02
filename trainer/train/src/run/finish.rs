//! The end of a run: `final/` (the last checkpoint's model), the loss chart, and
//! the succeeded phase with the result; or, stopped early, the best checkpoint as
//! the result ([`super::early_stop`]).

use anneal_crds::events::{EventBody, LogLevel};
use anneal_crds::finetunejob::{JobPhase, JobResult, TrainingType, fine_tuned_model_id};
use burn::tensor::backend::AutodiffBackend;

use super::early_stop::EarlyStop;
use super::start::Training;
use super::{Run, RunOutcome};
use crate::checkpoint::{CHECKPOINTS, FINAL, SampleAnswer};
use crate::loss_chart::{CHART_FILE, loss_chart_svg};
use crate::objective::Objective;
use crate::state::TrainerState;
use crate::{ResumeError, TrainError};

impl<B: AutodiffBackend, O: Objective<B>> Run<'_, B, O> {
    /// Writes `final/` (the last checkpoint's adapter), the loss chart and the result.
    pub(super) fn finish(self, mut training: Training<B>) -> Result<RunOutcome, TrainError> {
        let state = &training.state;
        let last = state
            .checkpoints
            .last()
            .cloned()
            .ok_or(ResumeError::NoCheckpoint)?;
        // The last step always checkpoints, so its answers are the final model's: no need
        // to generate them again.
        let samples = self
            .settings
            .checkpoints
            .sample_prompts
            .iter()
            .zip(&last.samples)
            .map(|(prompt, answer)| SampleAnswer {
                prompt: prompt.clone(),
                answer: answer.clone(),
            })
            .collect();
        self.store(&mut training, samples, Vec::new(), FINAL)?;
        let result = JobResult {
            model_id: fine_tuned_model_id(&self.base_model.name, &self.job.job_name, &last.name),
            uri: self.location.output.child(FINAL).uri().to_owned(),
            stopped_early: None,
        };
        let message = format!(
            "trained {} steps; final {} at {}",
            training.state.step,
            self.trained_kind(),
            result.uri
        );
        self.conclude(training.state, result, message)
    }

    /// Ends a run that stopped improving: the best checkpoint (already complete in
    /// storage, and never pruned) is the result; no `final/` is written from the
    /// later, worse model.
    pub(super) fn finish_early(
        mut self,
        training: Training<B>,
        stop: EarlyStop,
    ) -> Result<RunOutcome, TrainError> {
        self.events.emit(EventBody::Log {
            level: LogLevel::Info,
            message: stop.reason.clone(),
        });
        let folder = format!("{CHECKPOINTS}/{}", stop.best.name);
        let result = JobResult {
            model_id: fine_tuned_model_id(
                &self.base_model.name,
                &self.job.job_name,
                &stop.best.name,
            ),
            uri: self.location.output.child(&folder).uri().to_owned(),
            stopped_early: Some(stop.reason.clone()),
        };
        let message = format!(
            "{}; the result is the best {} at {}",
            stop.reason,
            self.trained_kind(),
            result.uri
        );
        self.conclude(training.state, result, message)
    }

    fn trained_kind(&self) -> &'static str {
        match self.settings.training {
            TrainingType::Lora => "adapter",
            TrainingType::Full => "model",
        }
    }

    /// The loss chart, then the succeeded phase with `result`.
    fn conclude(
        mut self,
        state: TrainerState,
        result: JobResult,
        message: String,
    ) -> Result<RunOutcome, TrainError> {
        let output = &self.location.output;
        let title = format!("{} ({})", self.job.job_name, self.job.run_id);
        let chart = loss_chart_svg(&state.log_history, &title)?;
        output.put(CHART_FILE, chart.into_bytes())?;
        self.events.emit(EventBody::Phase {
            phase: JobPhase::Succeeded,
            message: Some(message),
            result: Some(result.clone()),
        });
        self.events.sync(output)?;
        Ok(RunOutcome::Finished {
            result,
            state: Box::new(state),
        })
    }
}
