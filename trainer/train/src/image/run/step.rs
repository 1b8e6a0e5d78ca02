//! One step of an image run: the step's batch from the epoch's order, its latents
//! drawn from the cached distributions and its noise and noise levels from the run's
//! seed and the step number, dropout seeded by the step, the update at the scheduled
//! learning rate, and the state, log entry and events it leaves. A loss or gradient
//! norm that is not finite ends the run, as in a chat run.

use std::time::Instant;

use crate::run::step::progress_at;
use anneal_crds::events::EventBody;
use anneal_crds::finetunejob::{Metrics, Progress};
use anneal_image::flow_matching::{FlowBatch, shifted_sigmas};
use anneal_image::training_examples::{EncodedExample, draw_model_latents};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use super::ImageRun;
use super::start::ImageTraining;
use crate::TrainError;
use crate::backward::LayerActivations;
use crate::image::order::epoch_batches;
use crate::image::step::{StepDraws, image_step};
use crate::objective::MAX_GRAD_NORM;
use crate::run::Divergence;
use crate::run::divergence::likely_cause;
use crate::state::{LogEntry, RngState, step_seed};

/// This process's pace, for the time-left estimate.
pub(super) struct Pace {
    started: Instant,
    first_step: u64,
}

impl Pace {
    pub fn new(first_step: u64) -> Self {
        Self {
            started: Instant::now(),
            first_step,
        }
    }

    fn progress(&self, entry: &LogEntry, total_steps: u64) -> Progress {
        progress_at(entry, total_steps, self.started, self.first_step)
    }
}

impl<'a, B: AutodiffBackend> ImageRun<'a, B> {
    /// Takes the next optimizer step and emits its progress and metrics.
    pub(super) fn step(
        &mut self,
        training: ImageTraining<B>,
        pace: &mut Pace,
    ) -> Result<ImageTraining<B>, TrainError> {
        let ImageTraining {
            model,
            mut optimizer,
            mut state,
        } = training;
        let h = &self.inputs.settings.hyperparameters;
        let step = state.step;
        let learning_rate = self.schedule.at(step);
        let started = Instant::now();
        let examples = self.step_examples(step);
        let (batch, draws, tokens) = self.flow_batch(&examples, step);
        let sigmas = shifted_sigmas(
            &self.prepared.pipeline.scheduler,
            &draws.levels,
            tokens / examples.len(),
        );
        // Dropout draws depend only on (seed, step): a resumed run repeats them.
        B::seed(self.device, step_seed(h.seed, step));
        let (model, report) = image_step(
            model,
            &mut optimizer,
            &batch,
            draws.noise_tensor(self.device),
            &sigmas,
            LayerActivations::from_checkpointing(h.gradient_checkpointing),
            learning_rate,
            MAX_GRAD_NORM,
        );
        let seconds = started.elapsed().as_secs_f64();
        let figures = [
            ("training loss", report.loss),
            ("gradient norm", report.grad_norm),
        ];
        if let Some((what, value)) = figures.into_iter().find(|(_, v)| !v.is_finite()) {
            let divergence = Divergence {
                step: step + 1,
                what,
                value,
                last_checkpoint: state.checkpoints.last().map(|c| c.name.clone()),
                likely_cause: likely_cause(&state, step + 1, learning_rate),
            };
            self.fail_run(divergence.to_string());
            return Err(TrainError::Diverged(Box::new(divergence)));
        }

        state.step += 1;
        state.epoch = state.step as f64 / self.order.steps_per_epoch as f64;
        state.rng = RngState::at(h.seed, state.step);
        state.tokens_seen += tokens as u64;
        state.train_seconds += seconds;
        let entry = LogEntry {
            step: state.step,
            epoch: state.epoch,
            train_loss: report.loss,
            train_token_accuracy: None,
            train_rewards: None,
            learning_rate,
            grad_norm: report.grad_norm,
            tokens_per_second: tokens as f64 / seconds.max(1e-9),
            valid_loss: None,
            valid_token_accuracy: None,
            valid_rewards: None,
        };
        self.events
            .emit(EventBody::Progress(pace.progress(&entry, self.total_steps)));
        self.events.emit(EventBody::Metrics {
            step: entry.step,
            epoch: entry.epoch,
            metrics: Metrics {
                train_loss: Some(entry.train_loss),
                tokens_per_second: Some(entry.tokens_per_second),
                learning_rate: Some(learning_rate),
                ..Metrics::default()
            },
        });
        state.log_history.push(entry);
        Ok(ImageTraining {
            model,
            optimizer,
            state,
        })
    }

    /// The examples of step `step`: its batch of the epoch's order (one bucket).
    fn step_examples(&mut self, step: u64) -> Vec<&'a EncodedExample> {
        let h = &self.inputs.settings.hyperparameters;
        let epoch = step / self.order.steps_per_epoch;
        if self.epoch_batches.as_ref().is_none_or(|(e, _)| *e != epoch) {
            let buckets: Vec<_> = self.prepared.examples.iter().map(|e| e.bucket).collect();
            let batches = epoch_batches(
                &buckets,
                h.repeats,
                h.batch_size.max(1) as usize,
                h.seed,
                epoch,
            );
            self.epoch_batches = Some((epoch, batches));
        }
        let batches = &self.epoch_batches.as_ref().expect("set above").1;
        let batch = &batches[(step % self.order.steps_per_epoch) as usize];
        let prepared: &'a super::Prepared<B> = self.prepared;
        batch.iter().map(|&i| &prepared.examples[i]).collect()
    }

    /// The step's batch (latents drawn, text states stacked), its draws, and the
    /// image tokens it trains on (latent patches of 2x2, over the batch).
    fn flow_batch(
        &self,
        examples: &[&EncodedExample],
        step: u64,
    ) -> (FlowBatch<B>, StepDraws, usize) {
        let device = self.device;
        let pipeline = &self.prepared.pipeline;
        let [channels, height, width] = examples[0].latent_mean.shape[..] else {
            unreachable!("latents are [channels, h, w]")
        };
        let shape = [examples.len(), channels, height, width];
        let draws = StepDraws::for_step(self.inputs.settings.hyperparameters.seed, step, shape);
        let latents =
            draw_model_latents(&pipeline.vae, examples, draws.latent_tensor(device), device);
        let context = Tensor::stack::<3>(
            examples
                .iter()
                .map(|e| Tensor::<B, 2>::from_data(e.context.clone(), device))
                .collect(),
            0,
        ); // [b, text tokens, joint_attention_dim]
        let pooled = Tensor::stack::<2>(
            examples
                .iter()
                .map(|e| Tensor::<B, 1>::from_data(e.pooled.clone(), device))
                .collect(),
            0,
        ); // [b, pooled_projection_dim]
        let tokens = examples.len() * (height / 2) * (width / 2);
        (
            FlowBatch {
                latents,
                context,
                pooled,
            },
            draws,
            tokens,
        )
    }
}
