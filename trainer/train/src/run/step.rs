//! One optimizer step of the loop: the step's batch from the epoch's order, split
//! into the run's micro-batches, the update at the scheduled learning rate with dropout seeded by the
//! step, the state and log entry it leaves, and its progress and metrics events.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::time::Instant;

use anneal_crds::ResolvedHyperparameters;
use anneal_crds::events::{EventBody, LogLevel};
use anneal_crds::finetunejob::{Metrics, Progress, TrainingType};
use burn::tensor::backend::AutodiffBackend;

use super::Run;
use super::divergence::non_finite_figure;
use super::out_of_memory::{self, OutOfMemory, Retry};
use super::start::Training;
use crate::TrainError;
use crate::batches::{epoch_batches, split_evenly};
use crate::data::TrainingData;
use crate::objective::{Objective, Scores, StepReport};
use crate::packing::pack_rows;
use crate::schedule::LearningRateSchedule;
use crate::state::{DataOrder, LogEntry, RngState, step_seed};
use crate::tokenized::DataItem;

/// The steps this process takes: their learning rates, the current epoch's
/// step batches, and their pace for the progress estimate.
pub(super) struct Session {
    schedule: LearningRateSchedule,
    seed: u64,
    /// `batchSize`: samples per step, which with the seed fixes the order.
    batch_size: usize,
    /// The epoch and its step batches (indices into the training data).
    batches: Option<(u64, Vec<Vec<usize>>)>,
    started: Instant,
    first_step: u64,
    /// Fault injection (`ANNEAL_FAULT_NAN_LOSS_AT_STEP=N`): step N (counted from 1)
    /// reports a NaN loss, as a diverging run would, so the stop and the resume after
    /// it can be exercised on purpose.
    nan_loss_at_step: Option<u64>,
    /// The micro-batch after a step ran out of memory and was taken again at half.
    micro_batch: Option<usize>,
    /// Fault injection (`ANNEAL_FAULT_OOM_ABOVE_MICRO_BATCH`, [`out_of_memory`]).
    oom_above_micro_batch: Option<usize>,
    /// `dataset.packing`: rows of at most this many input positions (`maxTokens`),
    /// and the micro-batch counts rows.
    packing: Option<usize>,
}

impl Session {
    /// A session whose first step has index `first_step`; `packing`: rows of at most
    /// that many positions.
    pub fn new(
        h: &ResolvedHyperparameters,
        total_steps: u64,
        first_step: u64,
        packing: Option<usize>,
    ) -> Self {
        Self {
            schedule: LearningRateSchedule::new(h.learning_rate, h.warmup_ratio, total_steps),
            seed: h.seed,
            batch_size: h.batch_size.max(1) as usize,
            batches: None,
            started: Instant::now(),
            first_step,
            nan_loss_at_step: std::env::var("ANNEAL_FAULT_NAN_LOSS_AT_STEP")
                .ok()
                .and_then(|step| step.parse().ok()),
            micro_batch: None,
            oom_above_micro_batch: out_of_memory::injected_limit(),
            packing,
        }
    }

    /// The micro-batch steps run at now.
    fn micro_batch_size(&self, order: &DataOrder) -> usize {
        self.micro_batch.unwrap_or(order.micro_batch_size)
    }

    /// The micro-batches of step `step`, each a list of rows of samples: its batch of
    /// the epoch's order, split evenly into micro-batches of at most
    /// `order.micro_batch_size` rows, a row one sample, or with packing the batch's
    /// samples packed into rows first ([`pack_rows`]).
    fn micro_batches<'d, T: DataItem>(
        &mut self,
        data: &'d TrainingData<T>,
        order: &DataOrder,
        step: u64,
    ) -> Vec<Vec<Vec<&'d T>>> {
        let train = &data.train;
        let epoch = step / order.steps_per_epoch;
        if self.batches.as_ref().is_none_or(|(e, _)| *e != epoch) {
            let pool = data.epoch_pool(self.seed, epoch);
            let batches = epoch_batches(train, pool, self.batch_size, self.seed, epoch);
            self.batches = Some((epoch, batches));
        }
        let batches = &self.batches.as_ref().expect("set above").1;
        let batch = &batches[(step % order.steps_per_epoch) as usize];
        let rows: Vec<Vec<usize>> = match self.packing {
            None => batch.iter().map(|&i| vec![i]).collect(),
            Some(capacity) => pack_rows(train, batch, capacity),
        };
        (split_evenly(&rows, self.micro_batch_size(order)).into_iter())
            .map(|rows| {
                (rows.iter())
                    .map(|row| row.iter().map(|&i| &train[i]).collect())
                    .collect()
            })
            .collect()
    }

    /// Where the run stands after the step `entry` logs, with the time left at
    /// this session's pace.
    fn progress(&self, entry: &LogEntry, total_steps: u64) -> Progress {
        progress_at(entry, total_steps, self.started, self.first_step)
    }
}

/// Where a run (chat or image) stands after the step `entry` logs, with the time
/// left at the pace of the steps since `first_step`, which started at `started`.
pub(crate) fn progress_at(
    entry: &LogEntry,
    total_steps: u64,
    started: Instant,
    first_step: u64,
) -> Progress {
    let done_this_session = (entry.step - first_step).max(1) as f64;
    let per_step = started.elapsed().as_secs_f64() / done_this_session;
    Progress {
        epoch: entry.epoch,
        step: entry.step,
        total_steps,
        percent: (entry.step * 100 / total_steps.max(1)) as u32,
        eta_seconds: Some((per_step * (total_steps - entry.step) as f64).round() as u64),
    }
}

impl<B: AutodiffBackend, O: Objective<B>> Run<'_, B, O> {
    /// Whether the run checkpoints after step `step` (counted from 1): at the end,
    /// and every epoch or every N steps as the job asks.
    pub(super) fn checkpoint_due(&self, step: u64) -> bool {
        let checkpoints = &self.settings.checkpoints;
        step == self.total_steps
            || (checkpoints.every_epoch && step.is_multiple_of(self.order.steps_per_epoch))
            || checkpoints
                .every_steps
                .is_some_and(|n| n > 0 && step.is_multiple_of(u64::from(n)))
    }

    /// Takes the next optimizer step and emits its progress and metrics; when a
    /// checkpoint follows (`checkpoint_due`), evaluates first and returns the scores.
    /// A loss or gradient norm that is not finite ends the run ([`super::divergence`]).
    pub(super) fn step(
        &mut self,
        mut training: Training<B>,
        session: &mut Session,
        checkpoint_due: bool,
    ) -> Result<(Training<B>, Option<Scores>), TrainError> {
        let step = training.state.step;
        let learning_rate = session.schedule.at(step);
        let started = Instant::now();
        let (trained, mut report, tokens) = self.update(training, session, learning_rate)?;
        training = trained;
        let seconds = started.elapsed().as_secs_f64();
        if session.nan_loss_at_step == Some(step + 1) {
            report.scores.loss = f64::NAN;
        }
        if let Some(figure) = non_finite_figure(&report, None) {
            return Err(self.diverged(&training.state, step + 1, figure, learning_rate));
        }
        let state = &mut training.state;
        state.step += 1;
        state.epoch = state.step as f64 / self.order.steps_per_epoch as f64;
        state.rng = RngState::at(session.seed, state.step);
        state.tokens_seen += tokens as u64;
        state.train_seconds += seconds;

        let evaluation = if checkpoint_due {
            self.evaluate(&training.model)
        } else {
            None
        };
        if let Some(figure) = non_finite_figure(&report, evaluation.as_ref()) {
            return Err(self.diverged(&training.state, step + 1, figure, learning_rate));
        }
        let entry = LogEntry {
            step: state.step,
            epoch: state.epoch,
            train_loss: report.scores.loss,
            train_token_accuracy: report.scores.token_accuracy,
            train_rewards: report.scores.preferences,
            learning_rate,
            grad_norm: report.grad_norm,
            tokens_per_second: tokens as f64 / seconds.max(1e-9),
            valid_loss: evaluation.map(|e| e.loss),
            valid_token_accuracy: evaluation.and_then(|e| e.token_accuracy),
            valid_rewards: evaluation.and_then(|e| e.preferences),
        };
        self.log_step(session, &entry, &report.scores, evaluation);
        state.log_history.push(entry);
        Ok((training, evaluation))
    }

    /// The forward and backward passes and the optimizer update of the current step,
    /// with the number of tokens it trained on. A step that runs out of device memory
    /// is taken again once at half the micro-batch ([`out_of_memory`]).
    fn update(
        &mut self,
        training: Training<B>,
        session: &mut Session,
        learning_rate: f64,
    ) -> Result<(Training<B>, StepReport, usize), TrainError> {
        let Training {
            mut model,
            mut optimizer,
            state,
        } = training;
        let step = state.step;
        let lora = self.settings.training == TrainingType::Lora;
        let mut first_failure: Option<(usize, String)> = None;
        loop {
            let micro_batch = session.micro_batch_size(self.order);
            let items = session.micro_batches(self.data, self.order, step);
            let tokens: usize = items.iter().flatten().flatten().map(|s| s.tokens()).sum();
            // Dropout draws depend only on (seed, step): a resumed run repeats them.
            B::seed(self.device, step_seed(session.seed, step));
            // Handles, not copies: the frozen base is shared, only LoRA's state is kept.
            let backup = lora.then(|| (model.clone(), optimizer.clone()));
            let injected = session.oom_above_micro_batch;
            let (objective, replicas) = (self.objective, &mut self.replicas);
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                out_of_memory::inject(injected, micro_batch);
                objective.step(model, &mut optimizer, &items, learning_rate, replicas)
            }));
            let payload = match outcome {
                Ok((trained, report)) => {
                    let training = Training {
                        model: trained,
                        optimizer,
                        state,
                    };
                    return Ok((training, report, tokens));
                }
                Err(payload) => payload,
            };
            let text = out_of_memory::panic_text(payload.as_ref());
            // Any panic of the retry ends the run as out of memory: the allocator's
            // failure may have left the device unusable (a poisoned lock, a lost stream).
            if first_failure.is_none() && !out_of_memory::is_out_of_memory(&text) {
                resume_unwind(payload);
            }
            let detail = out_of_memory::first_line(&text);
            let retry = match (&backup, &first_failure, out_of_memory::half(micro_batch)) {
                (Some(_), None, Some(half)) => Ok(half),
                (None, _, _) => Err(Retry::FullTraining),
                (_, Some(_), _) => Err(Retry::FailedAt(micro_batch)),
                (_, _, None) => Err(Retry::NothingToHalve),
            };
            match retry {
                Ok(half) => {
                    (model, optimizer) = backup.expect("kept for a LoRA run");
                    // The failed step may have reached the replicas' update.
                    self.replicas.sync(&model);
                    self.events.emit(EventBody::Log {
                        level: LogLevel::Warn,
                        message: format!(
                            "out of memory at step {} with micro-batch {micro_batch} ({detail}); \
                             taking the step again at micro-batch {half}, and the rest of the run with it",
                            step + 1
                        ),
                    });
                    session.micro_batch = Some(half);
                    first_failure = Some((micro_batch, detail));
                }
                Err(retry) => {
                    let (micro_batch, detail) = first_failure.unwrap_or((micro_batch, detail));
                    let oom = OutOfMemory {
                        step: step + 1,
                        micro_batch,
                        retry,
                        plan: self.micro_batch_line.clone(),
                        detail,
                    };
                    self.fail_run(oom.to_string());
                    return Err(TrainError::OutOfMemory(Box::new(oom)));
                }
            }
        }
    }

    /// The progress and metrics events of the step `entry` logs.
    fn log_step(
        &mut self,
        session: &Session,
        entry: &LogEntry,
        scores: &Scores,
        evaluation: Option<Scores>,
    ) {
        let progress = session.progress(entry, self.total_steps);
        self.events.emit(EventBody::Progress(progress));
        let mut metrics = Metrics {
            tokens_per_second: Some(entry.tokens_per_second),
            learning_rate: Some(entry.learning_rate),
            ..Metrics::default()
        };
        scores.write_train(&mut metrics);
        if let Some(eval) = &evaluation {
            eval.write_valid(&mut metrics);
        }
        self.events.emit(EventBody::Metrics {
            step: entry.step,
            epoch: entry.epoch,
            metrics,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anneal_crds::hyperparameters::HyperparametersSpec;

    use crate::tokenized::TokenizedSample;

    /// The dataset lines of each micro-batch of each step of two epochs of 19 samples
    /// in steps of 4, at `micro_batch`.
    fn steps(samples: &[TokenizedSample], micro_batch: usize) -> Vec<Vec<Vec<u64>>> {
        let h = HyperparametersSpec {
            batch_size: Some(4),
            seed: Some(7),
            ..HyperparametersSpec::default()
        }
        .resolve();
        let order = DataOrder {
            seed: 7,
            train_samples: samples.len(),
            mixed_per_epoch: Vec::new(),
            validation_samples: 0,
            dropped_too_long: 0,
            micro_batch_size: micro_batch,
            gradient_accumulation: 4usize.div_ceil(micro_batch),
            steps_per_epoch: 5,
            validation_lines: Vec::new(),
        };
        let data = TrainingData {
            train: samples.to_vec(),
            validation: Vec::new(),
            mixed: Vec::new(),
            dropped_too_long: 0,
            dropped_untrainable: 0,
        };
        let mut session = Session::new(&h, 10, 0, None);
        (0..10)
            .map(|step| {
                let micro = session.micro_batches(&data, &order, step);
                micro
                    .iter()
                    .map(|m| m.iter().flatten().map(|s| s.line).collect())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn a_step_sees_the_same_samples_whatever_the_micro_batch() {
        let samples: Vec<_> = (0..19)
            .map(|i| TokenizedSample::of_len(i, 1 + (i as usize * 37) % 50))
            .collect();
        let (ones, fours) = (steps(&samples, 1), steps(&samples, 4));
        for (step, (one, four)) in ones.iter().zip(&fours).enumerate() {
            assert_eq!(one.concat(), four.concat(), "step {step}");
            assert!(one.iter().all(|m| m.len() == 1), "step {step}: {one:?}");
            assert_eq!(
                four.len(),
                1,
                "step {step}: one micro-batch of the whole step"
            );
        }
        // One step of each epoch has the 3 samples left over.
        for epoch in fours.chunks(5) {
            let mut sizes: Vec<usize> = epoch.iter().map(|s| s[0].len()).collect();
            sizes.sort();
            assert_eq!(sizes, [3, 4, 4, 4, 4]);
        }
        // The second epoch is another order of the same samples.
        let epoch = |steps: &[Vec<Vec<u64>>]| -> Vec<u64> { steps.concat().concat() };
        let (mut first, mut second) = (epoch(&fours[..5]), epoch(&fours[5..]));
        assert_ne!(first, second);
        first.sort();
        second.sort();
        assert_eq!(first, (0..19).collect::<Vec<u64>>());
        assert_eq!(first, second);
        // Micro-batch 3 splits a step of 4 as 2 + 2, and the short one of 3 whole.
        let threes = steps(&samples, 3);
        for (three, four) in threes.iter().zip(&fours) {
            let sizes: Vec<usize> = three.iter().map(Vec::len).collect();
            let expected: &[usize] = if four[0].len() == 4 { &[2, 2] } else { &[3] };
            assert_eq!(sizes, expected);
            assert_eq!(three.concat(), four.concat());
        }
    }
}
