//! The training loop of a run: SFT or DPO, LoRA or full, from step 0 or from the
//! newest complete checkpoint, with an event for every step, an evaluation, sample answers and a
//! checkpoint at every checkpoint step, and the final adapter, loss chart and
//! result at the end.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anneal_crds::ResolvedHyperparameters;
use anneal_crds::events::{EventBody, LogLevel};
use anneal_crds::finetunejob::{
    CheckpointsSpec, JobPhase, JobResult, Metrics, Progress, TrainingMethod, TrainingType,
    fine_tuned_model_id,
};
use burn::module::AutodiffModule;
use burn::tensor::DType;
use burn::tensor::backend::AutodiffBackend;

use super::TrainError;
use super::batches::epoch_batches;
use super::checkpoint::{
    CHECKPOINTS, CheckpointContents, FINAL, SampleAnswer, checkpoint_name, checkpoint_status,
    fetch_newest_checkpoint, prune_checkpoints, restore_training, store_checkpoint,
};
use super::data::TrainingData;
use super::event_log::{EventLog, EventSink};
use super::loss_chart::{CHART_FILE, loss_chart_svg};
use super::objective::{Dpo, Objective, Scores, Sft};
use super::optimizer::{SftOptimizer, adamw};
use super::samples::answer_sample_prompts;
use super::schedule::LearningRateSchedule;
use super::state::{LogEntry, RngState, STATE_FORMAT, TrainerState, step_seed};
use super::tokenized::DataItem;
use crate::chat::ModelTokenizer;
use crate::lora::{LoraSettings, attach};
use crate::model::{CausalLm, load_model};
use crate::storage::Storage;

/// Everything a run needs, already fetched to this machine.
pub struct RunInputs {
    /// `metadata.name` of the FineTuneJob.
    pub job_name: String,
    pub run_id: String,
    /// `spec.baseModel.name`, written into the adapter config and the model id.
    pub base_model_name: String,
    pub model_dir: PathBuf,
    /// `spec.method`: what the run optimises.
    pub method: TrainingMethod,
    pub training: TrainingType,
    pub hyperparameters: ResolvedHyperparameters,
    pub validation_split: f64,
    pub checkpoints: CheckpointsSpec,
    /// (name for messages, contents)
    pub train_data: (String, Vec<u8>),
    pub validation_data: Option<(String, Vec<u8>)>,
    /// The run's location: `{output}/{namespace}/{job}/{run id}`.
    pub output: Storage,
    /// Local scratch space (staging checkpoints, the events file).
    pub work_dir: PathBuf,
    /// Continue from the newest complete checkpoint when there is one.
    pub resume: bool,
    /// Set (e.g. on SIGTERM) to checkpoint at the next step boundary and stop.
    pub stop: Arc<AtomicBool>,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum RunOutcome {
    Finished {
        result: JobResult,
        state: Box<TrainerState>,
    },
    /// Stopped on request after checkpointing; `--resume` continues it.
    Stopped { checkpoint: String, step: u64 },
}

/// Trains on backend `B` and reports to `sinks` as it goes.
pub fn run_training<B: AutodiffBackend>(
    inputs: RunInputs,
    sinks: Vec<Box<dyn EventSink>>,
    device: &B::Device,
) -> Result<RunOutcome, TrainError> {
    let (config, base) = load_model::<B>(&inputs.model_dir, device, DType::F32)?;
    let tokenizer = ModelTokenizer::from_model_dir(&inputs.model_dir, &config.architecture)?;
    match inputs.method {
        TrainingMethod::Sft => run_objective(Sft, inputs, base, &tokenizer, sinks, device),
        TrainingMethod::Dpo => {
            // The reference is the untrained model: taken before a resume replaces it.
            let dpo = Dpo::new(&inputs.hyperparameters, inputs.training, &base);
            run_objective(dpo, inputs, base, &tokenizer, sinks, device)
        }
    }
}

/// The run with `objective`, from the loaded base model.
fn run_objective<B: AutodiffBackend, O: Objective<B>>(
    objective: O,
    inputs: RunInputs,
    base: CausalLm<B>,
    tokenizer: &ModelTokenizer,
    sinks: Vec<Box<dyn EventSink>>,
    device: &B::Device,
) -> Result<RunOutcome, TrainError> {
    let h = inputs.hyperparameters.clone();
    let max_tokens = h.max_tokens as usize;
    let data = TrainingData::prepare(
        (&inputs.train_data.0, &inputs.train_data.1),
        inputs
            .validation_data
            .as_ref()
            .map(|(name, bytes)| (name.as_str(), bytes.as_slice())),
        inputs.validation_split,
        &h,
        |bytes| objective.read(bytes, tokenizer, max_tokens),
    )?;
    let order = data.order(&h);
    let total_steps = order.steps_per_epoch * u64::from(h.epochs);
    let settings = LoraSettings::from(&h);

    let resume_point = if inputs.resume {
        fetch_newest_checkpoint(&inputs.output, &inputs.work_dir)?
    } else {
        None
    };
    let (mut model, mut optimizer, mut state) = match &resume_point {
        Some(point) => {
            if let Some(why) = point.state.incompatibility(inputs.method, &h, &order) {
                return Err(TrainError::Resume(format!(
                    "cannot resume from {}: {why}",
                    point.name
                )));
            }
            let (model, optimizer) = restore_training(
                base,
                point,
                inputs.training,
                &settings,
                h.weight_decay,
                device,
            )?;
            (model, optimizer, point.state.clone())
        }
        None => {
            let state = TrainerState {
                format: STATE_FORMAT,
                job: inputs.job_name.clone(),
                run_id: inputs.run_id.clone(),
                base_model: inputs.base_model_name.clone(),
                method: inputs.method,
                step: 0,
                total_steps,
                epoch: 0.0,
                hyperparameters: h.clone(),
                data: order.clone(),
                rng: RngState::at(h.seed, 0),
                tokens_seen: 0,
                train_seconds: 0.0,
                log_history: Vec::new(),
                checkpoints: Vec::new(),
                best_checkpoint: None,
            };
            let model = match inputs.training {
                TrainingType::Lora => attach(base, &settings, device),
                // Every weight keeps its gradient: loaded parameters require one.
                TrainingType::Full => base,
            };
            (model, adamw(h.weight_decay), state)
        }
    };

    let previous_events = match &resume_point {
        Some(_) => inputs.output.get(super::event_log::EVENTS_FILE)?,
        None => None,
    };
    let mut events = EventLog::open(&inputs.work_dir, previous_events, sinks)
        .map_err(|e| TrainError::io(&inputs.work_dir, e))?;
    let start_message = match &resume_point {
        Some(point) => format!(
            "resumed from {} at step {}/{total_steps}",
            point.name, point.state.step
        ),
        None => format!(
            "training on {} samples ({} held out for validation), {} steps of {} samples",
            data.train.len(),
            data.validation.len(),
            total_steps,
            h.batch_size
        ),
    };
    events.emit(EventBody::Phase {
        phase: JobPhase::Running,
        message: Some(start_message),
        result: None,
    });
    if data.dropped_too_long + data.dropped_untrainable > 0 {
        events.emit(EventBody::Log {
            level: LogLevel::Warn,
            message: format!(
                "dropped {} samples longer than maxTokens {} and {} with no answer token to train on",
                data.dropped_too_long, h.max_tokens, data.dropped_untrainable
            ),
        });
    }

    if resume_point.is_none() {
        // The base model's validation loss and answers: what the checkpoints are compared with.
        if let Some(eval) = objective.evaluate(&model, &data.validation, order.micro_batch_size) {
            let mut metrics = Metrics::default();
            eval.write_valid(&mut metrics);
            events.emit(EventBody::Metrics {
                step: 0,
                epoch: 0.0,
                metrics,
            });
        }
        let before = answer_sample_prompts(
            &model.valid(),
            tokenizer,
            &inputs.checkpoints.sample_prompts,
        );
        for sample in before {
            events.emit(EventBody::Log {
                level: LogLevel::Info,
                message: format!("before training: {}", sample.answer),
            });
        }
    }

    let schedule = LearningRateSchedule::new(h.learning_rate, h.warmup_ratio, total_steps);
    let context = RunContext {
        objective: &objective,
        inputs: &inputs,
        tokenizer,
        settings: &settings,
        validation: &data.validation,
        eval_batch: order.micro_batch_size,
    };
    let session_start = Instant::now();
    let session_first_step = state.step;
    let mut batches: Option<(u64, Vec<Vec<usize>>)> = None;
    while state.step < total_steps {
        if inputs.stop.load(Ordering::SeqCst) {
            return stop_run(&context, &mut model, &optimizer, &mut state, &mut events);
        }
        let step = state.step;
        let epoch = step / order.steps_per_epoch;
        if batches.as_ref().is_none_or(|(e, _)| *e != epoch) {
            let micro = epoch_batches(&data.train, order.micro_batch_size, h.seed, epoch);
            batches = Some((epoch, micro));
        }
        let micro = &batches.as_ref().expect("set above").1;
        let first = (step % order.steps_per_epoch) as usize * order.gradient_accumulation;
        let last = (first + order.gradient_accumulation).min(micro.len());
        let step_items: Vec<Vec<&O::Item>> = micro[first..last]
            .iter()
            .map(|indices| indices.iter().map(|&i| &data.train[i]).collect())
            .collect();
        let tokens: usize = step_items.iter().flatten().map(|s| s.tokens()).sum();

        // Dropout draws depend only on (seed, step): a resumed run repeats them.
        B::seed(device, step_seed(h.seed, step));
        let learning_rate = schedule.at(step);
        let started = Instant::now();
        let (next, report) =
            objective.step(model, &mut optimizer, &step_items, learning_rate, device);
        model = next;
        let seconds = started.elapsed().as_secs_f64();
        state.step += 1;
        state.epoch = state.step as f64 / order.steps_per_epoch as f64;
        state.rng = RngState::at(h.seed, state.step);
        state.tokens_seen += tokens as u64;
        state.train_seconds += seconds;
        let mut entry = LogEntry {
            step: state.step,
            epoch: state.epoch,
            train_loss: report.scores.loss,
            train_token_accuracy: report.scores.token_accuracy,
            train_rewards: report.scores.preferences,
            learning_rate,
            grad_norm: report.grad_norm,
            tokens_per_second: tokens as f64 / seconds.max(1e-9),
            valid_loss: None,
            valid_token_accuracy: None,
            valid_rewards: None,
        };

        let checkpoint_due = state.step == total_steps
            || (inputs.checkpoints.every_epoch && state.step % order.steps_per_epoch == 0)
            || inputs
                .checkpoints
                .every_steps
                .is_some_and(|n| n > 0 && state.step % u64::from(n) == 0);
        let evaluation = if checkpoint_due {
            objective.evaluate(&model, &data.validation, order.micro_batch_size)
        } else {
            None
        };
        if let Some(eval) = &evaluation {
            entry.valid_loss = Some(eval.loss);
            entry.valid_token_accuracy = eval.token_accuracy;
            entry.valid_rewards = eval.preferences;
        }
        let done_this_session = (state.step - session_first_step) as f64;
        let per_step = session_start.elapsed().as_secs_f64() / done_this_session;
        events.emit(EventBody::Progress(Progress {
            epoch: state.epoch,
            step: state.step,
            total_steps,
            percent: (state.step * 100 / total_steps.max(1)) as u32,
            eta_seconds: Some((per_step * (total_steps - state.step) as f64).round() as u64),
        }));
        let mut metrics = Metrics {
            tokens_per_second: Some(entry.tokens_per_second),
            learning_rate: Some(learning_rate),
            ..Metrics::default()
        };
        report.scores.write_train(&mut metrics);
        if let Some(eval) = &evaluation {
            eval.write_valid(&mut metrics);
        }
        events.emit(EventBody::Metrics {
            step: state.step,
            epoch: state.epoch,
            metrics,
        });
        state.log_history.push(entry);
        if checkpoint_due {
            checkpoint(
                &context,
                &mut model,
                &optimizer,
                &mut state,
                &mut events,
                evaluation,
                true,
            )?;
        }
    }
    finish_run(&context, &mut model, &optimizer, &state, &mut events)
}

/// What the checkpoint and finish steps share.
struct RunContext<'a, O, T> {
    objective: &'a O,
    inputs: &'a RunInputs,
    tokenizer: &'a ModelTokenizer,
    settings: &'a LoraSettings,
    validation: &'a [T],
    eval_batch: usize,
}

/// Stores a checkpoint at the current step (answering the sample prompts when
/// `with_samples`), records it in `state`, and prunes old ones.
fn checkpoint<B: AutodiffBackend, O, T>(
    context: &RunContext<'_, O, T>,
    model: &mut CausalLm<B>,
    optimizer: &SftOptimizer<B>,
    state: &mut TrainerState,
    events: &mut EventLog,
    evaluation: Option<Scores>,
    with_samples: bool,
) -> Result<(), TrainError> {
    let inputs = context.inputs;
    let samples = if with_samples {
        answer_sample_prompts(
            &model.valid(),
            context.tokenizer,
            &inputs.checkpoints.sample_prompts,
        )
    } else {
        Vec::new()
    };
    let status = checkpoint_status(&inputs.output, state, evaluation.map(|e| e.loss), &samples);
    state.checkpoints.push(status.clone());
    let best = state
        .checkpoints
        .iter()
        .filter_map(|c| c.valid_loss.map(|loss| (loss, &c.name)))
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, name)| name.clone());
    state.best_checkpoint = best;
    let contents = CheckpointContents {
        training: inputs.training,
        base_model_dir: &inputs.model_dir,
        settings: context.settings,
        base_model_name: &inputs.base_model_name,
        samples,
    };
    let relative = format!("{CHECKPOINTS}/{}", status.name);
    store_checkpoint(
        model,
        optimizer,
        state,
        &contents,
        &inputs.output,
        &relative,
        &inputs.work_dir,
    )?;
    events.emit(EventBody::Checkpoint(status));
    if let Some(keep) = inputs.checkpoints.keep {
        for removed in prune_checkpoints(
            &inputs.output,
            keep as usize,
            state.best_checkpoint.as_deref(),
        )? {
            events.emit(EventBody::Log {
                level: LogLevel::Info,
                message: format!("removed {removed} (checkpoints.keep is {keep})"),
            });
        }
    }
    events.sync(&inputs.output)?;
    Ok(())
}

/// Checkpoints where the run stands (unless that step already has one) and stops.
fn stop_run<B: AutodiffBackend, O: Objective<B>>(
    context: &RunContext<'_, O, O::Item>,
    model: &mut CausalLm<B>,
    optimizer: &SftOptimizer<B>,
    state: &mut TrainerState,
    events: &mut EventLog,
) -> Result<RunOutcome, TrainError> {
    let name = checkpoint_name(state.step);
    let already = state.checkpoints.iter().any(|c| c.name == name);
    if state.step > 0 && !already {
        let evaluation = context
            .objective
            .evaluate(model, context.validation, context.eval_batch);
        checkpoint(context, model, optimizer, state, events, evaluation, false)?;
    }
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
    events.sync(&context.inputs.output)?;
    Ok(RunOutcome::Stopped {
        checkpoint: name,
        step: state.step,
    })
}

/// Writes `final/` (the last checkpoint's adapter), the loss chart and the result.
fn finish_run<B: AutodiffBackend, O, T>(
    context: &RunContext<'_, O, T>,
    model: &mut CausalLm<B>,
    optimizer: &SftOptimizer<B>,
    state: &TrainerState,
    events: &mut EventLog,
) -> Result<RunOutcome, TrainError> {
    let inputs = context.inputs;
    let last = state
        .checkpoints
        .last()
        .cloned()
        .ok_or_else(|| TrainError::Resume("the run ended without a checkpoint".into()))?;
    // The last step always checkpoints, so its answers are the final model's: no need
    // to generate them again.
    let samples = inputs
        .checkpoints
        .sample_prompts
        .iter()
        .zip(&last.samples)
        .map(|(prompt, answer)| SampleAnswer {
            prompt: prompt.clone(),
            answer: answer.clone(),
        })
        .collect();
    let contents = CheckpointContents {
        training: inputs.training,
        base_model_dir: &inputs.model_dir,
        settings: context.settings,
        base_model_name: &inputs.base_model_name,
        samples,
    };
    store_checkpoint(
        model,
        optimizer,
        state,
        &contents,
        &inputs.output,
        FINAL,
        &inputs.work_dir,
    )?;
    let title = format!("{} ({})", inputs.job_name, inputs.run_id);
    let chart = loss_chart_svg(&state.log_history, &title).map_err(TrainError::Chart)?;
    inputs.output.put(CHART_FILE, chart.into_bytes())?;
    let result = JobResult {
        model_id: fine_tuned_model_id(&inputs.base_model_name, &inputs.job_name, &last.name),
        uri: inputs.output.child(FINAL).uri().to_owned(),
    };
    events.emit(EventBody::Phase {
        phase: JobPhase::Succeeded,
        message: Some(format!(
            "trained {} steps; final {} at {}",
            state.step,
            match inputs.training {
                TrainingType::Lora => "adapter",
                TrainingType::Full => "model",
            },
            result.uri
        )),
        result: Some(result.clone()),
    });
    events.sync(&inputs.output)?;
    Ok(RunOutcome::Finished {
        result,
        state: Box::new(state.clone()),
    })
}
