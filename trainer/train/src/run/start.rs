//! How a run begins: from step 0 with a fresh adapter (or the base weights in
//! full training) and a fresh optimizer, or from the newest complete checkpoint's
//! model, optimizer moments, state and events; then the events that open it.

use anneal_crds::events::{EventBody, LogLevel};
use anneal_crds::finetunejob::{JobPhase, Metrics, StartedFrom, TrainingType};
use burn::tensor::backend::AutodiffBackend;

use super::{Run, RunIdentity, RunInputs, RunLocation, TrainingSettings};
use crate::checkpoint::{ResumePoint, fetch_newest_checkpoint, restore_training};
use crate::event_log::{EVENTS_FILE, EventLog, EventSink};
use crate::micro_batch::MicroBatch;
use crate::objective::Objective;
use crate::optimizer::{SftOptimizer, adamw};
use crate::state::{DataOrder, DatasetNames, RngState, STATE_FORMAT, TrainerState};
use crate::{ResumeError, TrainError};
use anneal_model::llm::CausalLm;
use anneal_model::lora::{LoraSettings, attach};

use crate::checkpoint::with_dropout;
use crate::data::MixedSet;

/// The model being trained, its optimizer, and where the run stands.
pub(super) struct Training<B: AutodiffBackend> {
    pub model: CausalLm<B>,
    pub optimizer: SftOptimizer<B>,
    pub state: TrainerState,
}

/// Where a run starts.
pub(super) enum Start {
    Fresh,
    Resume(Box<ResumePoint>),
}

impl Start {
    /// The newest complete checkpoint when the run is to resume and has one; an
    /// error when that checkpoint cannot continue a run with this job and `order`.
    pub fn find(inputs: &RunInputs, order: &DataOrder) -> Result<Self, TrainError> {
        let point = find_resume_point(inputs.resume, &inputs.location, &inputs.settings, order)?;
        Ok(point.map_or(Start::Fresh, |point| Start::Resume(Box::new(point))))
    }

    /// The model, optimizer and state the first step of this session trains on.
    pub fn training<B: AutodiffBackend>(
        &self,
        base: CausalLm<B>,
        inputs: &RunInputs,
        order: &DataOrder,
        lora: &LoraSettings,
        devices: &[B::Device],
    ) -> Result<Training<B>, TrainError> {
        let settings = &inputs.settings;
        let h = &settings.hyperparameters;
        let Start::Resume(point) = self else {
            let model = match settings.training {
                // Another job's adapter, loaded onto the base: trained further.
                TrainingType::Lora if inputs.base_model.adapter.is_some() => {
                    with_dropout(base, lora.dropout)
                }
                TrainingType::Lora => attach(base, lora),
                // Every weight keeps its gradient: loaded parameters require one.
                TrainingType::Full => base,
            };
            return Ok(Training {
                model,
                optimizer: adamw(h.weight_decay),
                state: first_state(inputs, order),
            });
        };
        let (model, optimizer) = restore_training(
            base,
            point,
            settings.training,
            lora,
            h.weight_decay,
            devices,
        )?;
        // The same order, perhaps split into other micro-batches on this device: the
        // next checkpoint says how this session ran.
        let mut state = point.state.clone();
        state.data = order.clone();
        Ok(Training {
            model,
            optimizer,
            state,
        })
    }

    /// The event stream, continuing the events the checkpoint's run had stored.
    pub fn open_events(
        &self,
        location: &RunLocation,
        sinks: Vec<Box<dyn EventSink>>,
    ) -> Result<EventLog, TrainError> {
        open_event_log(location, matches!(self, Start::Resume(_)), sinks)
    }
}

/// With `resume`, the newest complete checkpoint in the run's output, if any; an
/// error when it cannot continue a run with these settings and `order` (chat and
/// image runs alike).
pub(crate) fn find_resume_point(
    resume: bool,
    location: &RunLocation,
    settings: &TrainingSettings,
    order: &DataOrder,
) -> Result<Option<ResumePoint>, TrainError> {
    if !resume {
        return Ok(None);
    }
    let Some(point) = fetch_newest_checkpoint(&location.output, &location.work_dir)? else {
        return Ok(None);
    };
    if let Some(why) =
        point
            .state
            .incompatibility(settings.method, &settings.hyperparameters, order)
    {
        return Err(ResumeError::Incompatible {
            checkpoint: point.name,
            why,
        }
        .into());
    }
    Ok(Some(point))
}

/// The run's event stream; a resumed run continues the events its output stores.
pub(crate) fn open_event_log(
    location: &RunLocation,
    resumed: bool,
    sinks: Vec<Box<dyn EventSink>>,
) -> Result<EventLog, TrainError> {
    let previous = match resumed {
        true => location.output.get(EVENTS_FILE)?,
        false => None,
    };
    EventLog::open(&location.work_dir, previous, sinks)
        .map_err(|e| TrainError::io(&location.work_dir, e))
}

/// The state of a run at step 0.
fn first_state(inputs: &RunInputs, order: &DataOrder) -> TrainerState {
    let datasets = DatasetNames::of(
        &inputs.data.train.0,
        inputs
            .data
            .validation
            .as_ref()
            .map(|(name, _)| name.as_str()),
    );
    let mut state = state_at_start(
        &inputs.job,
        &inputs.base_model.name,
        &inputs.settings,
        order,
        datasets,
    );
    state.started_from = inputs.base_model.started_from.clone();
    state
}

/// The state of a run (chat or image) before its first step.
pub(crate) fn state_at_start(
    job: &RunIdentity,
    base_model: &str,
    settings: &TrainingSettings,
    order: &DataOrder,
    datasets: DatasetNames,
) -> TrainerState {
    let h = &settings.hyperparameters;
    TrainerState {
        format: STATE_FORMAT,
        job: job.job_name.clone(),
        run_id: job.run_id.clone(),
        base_model: base_model.to_owned(),
        method: settings.method,
        step: 0,
        total_steps: order.steps_per_epoch * u64::from(h.epochs),
        epoch: 0.0,
        hyperparameters: h.clone(),
        data: order.clone(),
        rng: RngState::at(h.seed, 0),
        tokens_seen: 0,
        train_seconds: 0.0,
        log_history: Vec::new(),
        checkpoints: Vec::new(),
        best_checkpoint: None,
        datasets: Some(datasets),
        started_from: None,
    }
}

impl<B: AutodiffBackend, O: Objective<B>> Run<'_, B, O> {
    /// The running phase (what the run trains on, or where it resumed), the
    /// micro-batch it runs and why, and the samples the data left out.
    pub(super) fn announce(&mut self, start: &Start, micro_batch: &MicroBatch) {
        let total_steps = self.total_steps;
        let message = match start {
            Start::Resume(point) => format!(
                "resumed from {} at step {}/{total_steps}",
                point.name, point.state.step
            ),
            Start::Fresh => format!(
                "training on {} samples ({} held out for validation), {} steps of {} samples{}",
                self.data.main_samples(),
                self.data.validation.len(),
                total_steps,
                self.settings.hyperparameters.batch_size,
                started_from_note(self.base_model.started_from.as_ref()),
            ),
        };
        self.events.emit(EventBody::Phase {
            phase: JobPhase::Running,
            message: Some(message),
            result: None,
        });
        let message = match self.settings.packed_row() {
            // The micro-batch counts rows, each several chats.
            Some(row) => format!("{micro_batch}; chats packed into rows of {row} tokens"),
            None => micro_batch.to_string(),
        };
        self.events.emit(EventBody::Log {
            level: LogLevel::Info,
            message,
        });
        let data = self.data;
        for set in &data.mixed {
            let epoch = data.main_samples() + data.mixed.iter().map(|m| m.per_epoch).sum::<usize>();
            self.events.emit(EventBody::Log {
                level: LogLevel::Info,
                message: mixed_share(set, data.main_samples(), epoch),
            });
        }
        if data.dropped_too_long + data.dropped_untrainable > 0 {
            self.events.emit(EventBody::Log {
                level: LogLevel::Warn,
                message: format!(
                    "dropped {} samples longer than maxTokens {} and {} with no answer token to train on",
                    data.dropped_too_long,
                    self.settings.hyperparameters.max_tokens,
                    data.dropped_untrainable
                ),
            });
        }
    }

    /// Where the decoder layers are, when they are placed on several devices.
    pub(super) fn report_placement(&mut self, model: &CausalLm<B>) {
        if !model.is_placed() {
            return;
        }
        let mut starts = vec![0];
        starts.extend(&model.stage_starts);
        starts.push(model.layers.len());
        let runs: Vec<String> = starts
            .windows(2)
            .map(|run| {
                let layers = match run[1] - run[0] {
                    1 => format!("layer {}", run[0]),
                    _ => format!("layers {}-{}", run[0], run[1] - 1),
                };
                format!("{layers} on {:?}", model.layers[run[0]].device())
            })
            .collect();
        self.events.emit(EventBody::Log {
            level: LogLevel::Info,
            message: format!(
                "decoder layers placed across {} devices: {}",
                runs.len(),
                runs.join(", ")
            ),
        });
    }

    /// The untrained model's validation scores and answers: what the checkpoints
    /// are compared with.
    pub(super) fn report_base_model(&mut self, model: &CausalLm<B>) {
        if let Some(eval) = self.evaluate(model) {
            let mut metrics = Metrics::default();
            eval.write_valid(&mut metrics);
            self.events.emit(EventBody::Metrics {
                step: 0,
                epoch: 0.0,
                metrics,
            });
        }
        for sample in self.answer_sample_prompts(model) {
            self.events.emit(EventBody::Log {
                level: LogLevel::Info,
                message: format!("before training: {}", sample.answer),
            });
        }
    }
}

/// `, from FineTuneJob sft's ckpt-81 (its adapter trained further)`, or nothing.
fn started_from_note(started_from: Option<&StartedFrom>) -> String {
    let Some(from) = started_from else {
        return String::new();
    };
    let how = match from.training {
        TrainingType::Lora => "its adapter trained further",
        TrainingType::Full => "its weights as the base",
    };
    format!(
        ", from FineTuneJob {}'s {} ({how})",
        from.fine_tune_job, from.checkpoint
    )
}

/// `dataset.mix: 12 samples of general.jsonl (of 40) in every epoch, 20% of its 60`.
fn mixed_share(set: &MixedSet, main: usize, epoch: usize) -> String {
    let share = 100.0 * set.per_epoch as f64 / epoch.max(1) as f64;
    format!(
        "dataset.mix: {} samples of {} (of {}) in every epoch beside the training data's {main}: {share:.0}% of the epoch's {epoch}",
        set.per_epoch, set.name, set.len
    )
}
