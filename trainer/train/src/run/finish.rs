//! The end of a run: `final/` (the last checkpoint's model), the loss chart, and
//! the succeeded phase with the result.

use anneal_crds::events::EventBody;
use anneal_crds::finetunejob::{JobPhase, JobResult, TrainingType, fine_tuned_model_id};
use burn::tensor::backend::AutodiffBackend;

use super::start::Training;
use super::{Run, RunOutcome};
use crate::checkpoint::{FINAL, SampleAnswer};
use crate::loss_chart::{CHART_FILE, loss_chart_svg};
use crate::objective::Objective;
use crate::{ResumeError, TrainError};

impl<B: AutodiffBackend, O: Objective<B>> Run<'_, B, O> {
    /// Writes `final/` (the last checkpoint's adapter), the loss chart and the result.
    pub(super) fn finish(mut self, mut training: Training<B>) -> Result<RunOutcome, TrainError> {
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
        self.store(&mut training, samples, FINAL)?;
        let output = &self.location.output;
        let state = training.state;
        let title = format!("{} ({})", self.job.job_name, self.job.run_id);
        let chart = loss_chart_svg(&state.log_history, &title)?;
        output.put(CHART_FILE, chart.into_bytes())?;
        let result = JobResult {
            model_id: fine_tuned_model_id(&self.base_model.name, &self.job.job_name, &last.name),
            uri: output.child(FINAL).uri().to_owned(),
        };
        self.events.emit(EventBody::Phase {
            phase: JobPhase::Succeeded,
            message: Some(format!(
                "trained {} steps; final {} at {}",
                state.step,
                match self.settings.training {
                    TrainingType::Lora => "adapter",
                    TrainingType::Full => "model",
                },
                result.uri
            )),
            result: Some(result.clone()),
        });
        self.events.sync(output)?;
        Ok(RunOutcome::Finished {
            result,
            state: Box::new(state),
        })
    }
}
