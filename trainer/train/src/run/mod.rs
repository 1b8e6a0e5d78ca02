//! The training loop of a run: SFT or DPO, LoRA or full, on the micro-batch the job
//! or the memory plan sets ([`crate::micro_batch`]), from step 0 or from the
//! newest complete checkpoint ([`start`]), one optimizer step after another with
//! an event for each ([`step`]), an evaluation, sample answers, the held-out chats
//! of `checkpoints.evaluation` and a checkpoint at every checkpoint step (and on a
//! stop request, the checkpoint alone: [`checkpoint`]), and the final
//! adapter, loss chart and result at the end ([`finish`]).

pub(crate) mod checkpoint;
mod continued;
pub(crate) mod divergence;
mod early_stop;
mod finish;
mod inputs;
mod out_of_memory;
pub(crate) mod start;
pub(crate) mod step;

use std::sync::atomic::Ordering;
use std::time::SystemTime;

use anneal_crds::finetunejob::{JobResult, TrainingMethod, TrainingType};
use burn::module::AutodiffModule;
use burn::tensor::DType;
use burn::tensor::backend::AutodiffBackend;

pub use divergence::Divergence;
use early_stop::early_stop;
pub use inputs::{
    BaseModel, Deadline, MixFile, RunData, RunIdentity, RunInputs, RunLocation, TrainingSettings,
};
pub use out_of_memory::{OutOfMemory, Retry};
use start::{Start, Training};
use step::Session;

use super::TrainError;
use super::checkpoint::{SampleAnswer, checkpoint_name};
use super::checkpoint_evaluation::{CheckpointEvaluation, CheckpointScores};
use super::data::TrainingData;
use super::data_parallel::Replicas;
use super::device_memory::device_memory;
use super::event_log::{EventLog, EventSink};
use super::micro_batch::{MicroBatch, choose_micro_batch};
use super::objective::{Dpo, Objective, Scores, Sft};
use super::samples::answer_sample_prompts;
use super::state::{DataOrder, TrainerState};
use anneal_model::backend::{LayerStorage, compute_dtype};
use anneal_model::chat::ModelTokenizer;
use anneal_model::llm::{CausalLm, load_model_placed};
use anneal_model::lora::LoraSettings;

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

/// Trains on backend `B` and reports to `sinks` as it goes. On several `devices`, a
/// model that fits one trains data-parallel (a copy on each, [`Replicas`]); a larger
/// one has its decoder layers split over them in consecutive runs (see
/// `anneal_model::llm::placement`), with batches, the loss and the embeddings on the
/// first. Fails before loading the model when not one sample fits the devices.
pub fn run_training<B: AutodiffBackend>(
    inputs: RunInputs,
    sinks: Vec<Box<dyn EventSink>>,
    devices: &[B::Device],
) -> Result<RunOutcome, TrainError> {
    let memory = device_memory::<B>(devices, inputs.memory);
    let micro_batch = choose_micro_batch(&inputs.settings, &inputs.base_model.dir, memory)?;
    // LoRA freezes the base: it stays in the backend's dtype (bf16 on CUDA). Full
    // training changes every weight: f32, the master copy, on every backend.
    let dtype = match inputs.settings.training {
        TrainingType::Lora => compute_dtype::<B>(),
        TrainingType::Full => DType::F32,
    };
    // A frozen base recomputed layer by layer widens one layer's weights at a time:
    // on the CPU it stays in the checkpoint's bf16 (`LayerStorage::Stored`). Without
    // recomputation every layer's backward would keep its widened copies, more than
    // the f32 base itself.
    let recomputed = inputs.settings.hyperparameters.gradient_checkpointing;
    let storage = match inputs.settings.training {
        TrainingType::Lora if recomputed => LayerStorage::Stored,
        _ => LayerStorage::Computed,
    };
    let model_devices = micro_batch.model_devices(devices);
    let dir = &inputs.base_model.dir;
    let (config, base) = load_model_placed::<B>(dir, model_devices, dtype, storage)?;
    let continued = inputs.base_model.adapter.is_some();
    let base = match &inputs.base_model.adapter {
        Some(dir) => continued::continue_adapter(
            base,
            dir,
            &(inputs.base_model.started_from.as_ref())
                .map_or("the checkpoint it starts from".to_owned(), |from| {
                    format!("FineTuneJob {}'s {}", from.fine_tune_job, from.checkpoint)
                }),
            inputs.settings.training,
            &LoraSettings::from(&inputs.settings.hyperparameters),
        )?,
        None => base,
    };
    let tokenizer = ModelTokenizer::from_model_dir(&inputs.base_model.dir, &config.architecture)?;
    tokenizer.check_vocabulary(config.vocab_size)?;
    let settings = &inputs.settings;
    match settings.method {
        TrainingMethod::Sft => {
            let sft = Sft::new(&settings.hyperparameters, settings.packing);
            run_objective(sft, &inputs, &micro_batch, base, &tokenizer, sinks, devices)
        }
        TrainingMethod::Dpo => {
            // The reference is the model the run starts from (with another job's
            // adapter, when it continues one): taken before a resume replaces it.
            let dpo = Dpo::new(
                &settings.hyperparameters,
                settings.training,
                continued,
                &base,
            );
            run_objective(dpo, &inputs, &micro_batch, base, &tokenizer, sinks, devices)
        }
    }
}

/// The run with `objective` in micro-batches of `micro_batch`, from the loaded base model.
fn run_objective<B: AutodiffBackend, O: Objective<B>>(
    mut objective: O,
    inputs: &RunInputs,
    micro_batch: &MicroBatch,
    base: CausalLm<B>,
    tokenizer: &ModelTokenizer,
    sinks: Vec<Box<dyn EventSink>>,
    devices: &[B::Device],
) -> Result<RunOutcome, TrainError> {
    let device = &devices[0];
    let h = &inputs.settings.hyperparameters;
    let max_tokens = h.max_tokens as usize;
    let data = TrainingData::prepare(&inputs.data, h.seed, |reader| {
        objective.read(reader, tokenizer, max_tokens)
    })?;
    let order = data.order(h, micro_batch.size);
    let total_steps = order.steps_per_epoch * u64::from(h.epochs);
    let lora = LoraSettings::from(h);

    let start = Start::find(inputs, &order)?;
    let model_devices = micro_batch.model_devices(devices);
    let mut training = start.training(base, inputs, &order, &lora, model_devices)?;
    let replicas = Replicas::new(&training.model, &devices[..micro_batch.replicas]);
    objective.replicate(&training.model, &replicas);
    let mut run = Run {
        objective: &objective,
        data: &data,
        order: &order,
        total_steps,
        job: &inputs.job,
        base_model: &inputs.base_model,
        settings: &inputs.settings,
        location: &inputs.location,
        tokenizer,
        lora: &lora,
        events: start.open_events(&inputs.location, sinks)?,
        checkpoint_evaluation: inputs.data.evaluation.as_ref(),
        device,
        replicas,
        micro_batch_line: micro_batch.to_string(),
    };
    run.announce(&start, micro_batch);
    run.report_placement(&training.model);
    if matches!(start, Start::Fresh) {
        run.report_base_model(&training.model);
    }

    let packing = inputs.settings.packed_row();
    let mut session = Session::new(h, total_steps, training.state.step, packing);
    while training.state.step < total_steps {
        if inputs.stop.load(Ordering::SeqCst) {
            return run.stop(training);
        }
        if let Some(deadline) = inputs.deadline
            && deadline.passed(SystemTime::now())
        {
            return Err(run.deadline_exceeded(training, deadline)?);
        }
        let checkpoint_due = run.checkpoint_due(training.state.step + 1);
        let validation;
        (training, validation) = run.step(training, &mut session, checkpoint_due)?;
        if checkpoint_due {
            let samples = run.answer_sample_prompts(&training.model);
            let scores = run.evaluate_checkpoint(&training)?;
            run.checkpoint(&mut training, validation, samples, scores)?;
            let early = (inputs.settings.checkpoints.early_stopping)
                .and_then(|spec| early_stop(&training.state.checkpoints, &spec));
            if let Some(stop) = early
                && training.state.step < total_steps
            {
                return run.finish_early(training, stop);
            }
        }
    }
    run.finish(training)
}

/// What a run's steps, checkpoints and end share once it has started: the
/// objective and its data, the job's settings, where to write, and the event
/// stream.
struct Run<'a, B: AutodiffBackend, O: Objective<B>> {
    objective: &'a O,
    data: &'a TrainingData<O::Item>,
    order: &'a DataOrder,
    total_steps: u64,
    job: &'a RunIdentity,
    base_model: &'a BaseModel,
    settings: &'a TrainingSettings,
    location: &'a RunLocation,
    tokenizer: &'a ModelTokenizer,
    lora: &'a LoraSettings,
    events: EventLog,
    /// `checkpoints.evaluation`, read and checked before the first step.
    checkpoint_evaluation: Option<&'a CheckpointEvaluation>,
    device: &'a B::Device,
    /// Where the step's micro-batches run: the model's device, or with data
    /// parallelism a copy of the model on each device.
    replicas: Replicas<B>,
    /// The micro-batch the run started with and why (the plan's prediction), for an
    /// out-of-memory failure's message.
    micro_batch_line: String,
}

impl<B: AutodiffBackend, O: Objective<B>> Run<'_, B, O> {
    /// Scores the training model on the validation set; `None` when it is empty.
    fn evaluate(&self, model: &CausalLm<B>) -> Option<Scores> {
        self.objective
            .evaluate(model, &self.data.validation, self.order.micro_batch_size)
    }

    /// The scores of `checkpoints.evaluation` for the checkpoint about to be written
    /// at the current step; `None` when the job has none.
    fn evaluate_checkpoint(
        &self,
        training: &Training<B>,
    ) -> Result<Option<CheckpointScores>, TrainError> {
        let Some(evaluation) = self.checkpoint_evaluation else {
            return Ok(None);
        };
        let name = checkpoint_name(training.state.step);
        Ok(Some(evaluation.run(
            &training.model.valid(),
            self.tokenizer,
            &name,
        )?))
    }

    /// The model's answers to the job's sample prompts.
    fn answer_sample_prompts(&self, model: &CausalLm<B>) -> Vec<SampleAnswer> {
        answer_sample_prompts(
            &model.valid(),
            self.tokenizer,
            &self.settings.checkpoints.sample_prompts,
        )
    }
}
