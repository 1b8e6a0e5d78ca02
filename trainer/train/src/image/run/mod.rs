//! The run of an image job (`task: text-to-image`): the folder encoded once
//! ([`prepare`]), a fresh adapter or the newest checkpoint's ([`start`]), one
//! flow-matching step after another with an event for each ([`step`]), a checkpoint
//! with the adapter in diffusers' format and a sample image per prompt at every
//! epoch ([`checkpoint`]), and at the end `final/`, the loss chart and a contact
//! sheet of every epoch's samples ([`finish`]). Events, `trainer_state.json`, the
//! optimizer state, the schedule and the stop request work as in a chat run.

mod checkpoint;
mod finish;
pub(crate) mod prepare;
mod start;
mod step;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anneal_crds::events::EventBody;
use anneal_crds::finetunejob::JobPhase;
use burn::tensor::backend::AutodiffBackend;

pub use checkpoint::SampleImage;
use prepare::Prepared;
pub use prepare::{TrainingImages, default_resolution};
use start::ImageTraining;
use step::Pace;

use crate::TrainError;
use crate::event_log::{EventLog, EventSink};
use crate::run::divergence::report_failure;
use crate::run::start::{find_resume_point, open_event_log};
use crate::run::{BaseModel, Deadline, RunIdentity, RunLocation, RunOutcome, TrainingSettings};
use crate::schedule::LearningRateSchedule;
use crate::state::DataOrder;

/// Everything an image run needs, already on this machine.
pub struct ImageRunInputs {
    pub job: RunIdentity,
    /// The FLUX pipeline folder.
    pub base_model: BaseModel,
    pub settings: TrainingSettings,
    /// The image folder, read and checked.
    pub images: TrainingImages,
    pub location: RunLocation,
    /// Continue from the newest complete checkpoint when there is one.
    pub resume: bool,
    /// Set (e.g. on SIGTERM) to checkpoint at the next step boundary and stop.
    pub stop: Arc<AtomicBool>,
    /// `spec.activeDeadlineSeconds`, as in a chat run.
    pub deadline: Option<Deadline>,
}

/// Trains an image job's adapter on backend `B`'s `device`, reporting to `sinks`.
pub fn run_image_training<B: AutodiffBackend>(
    inputs: ImageRunInputs,
    sinks: Vec<Box<dyn EventSink>>,
    device: &B::Device,
) -> Result<RunOutcome, TrainError> {
    let prepared = Prepared::<B>::load(&inputs, device)?;
    let h = &inputs.settings.hyperparameters;
    let order = prepared.order(h);
    let total_steps = order.steps_per_epoch * u64::from(h.epochs);
    let point = find_resume_point(inputs.resume, &inputs.location, &inputs.settings, &order)?;
    let events = open_event_log(&inputs.location, point.is_some(), sinks)?;
    let mut training = ImageTraining::start(&prepared, &inputs, point.as_ref(), &order)?;
    let mut run = ImageRun {
        inputs: &inputs,
        prepared: &prepared,
        order: &order,
        total_steps,
        events,
        device,
        schedule: LearningRateSchedule::new(h.learning_rate, h.warmup_ratio, total_steps),
        epoch_batches: None,
    };
    run.announce(point.as_ref().map(|p| (p.name.as_str(), p.state.step)));
    if point.is_none() {
        run.base_samples(&training.model)?;
    }
    let mut pace = Pace::new(training.state.step);
    while training.state.step < total_steps {
        if inputs.stop.load(Ordering::SeqCst) {
            return run.stop(training);
        }
        if let Some(deadline) = inputs.deadline
            && deadline.passed(std::time::SystemTime::now())
        {
            return Err(run.deadline_exceeded(training, deadline)?);
        }
        training = run.step(training, &mut pace)?;
        if run.checkpoint_due(training.state.step) {
            run.checkpoint(&mut training, true)?;
        }
    }
    run.finish(training)
}

/// What an image run's steps, checkpoints and end share.
struct ImageRun<'a, B: AutodiffBackend> {
    inputs: &'a ImageRunInputs,
    prepared: &'a Prepared<B>,
    order: &'a DataOrder,
    total_steps: u64,
    events: EventLog,
    device: &'a B::Device,
    schedule: LearningRateSchedule,
    /// The current epoch's batches (indices into the examples).
    epoch_batches: Option<(u64, Vec<Vec<usize>>)>,
}

impl<B: AutodiffBackend> ImageRun<'_, B> {
    /// The running phase (what the run trains on, or where it resumed) and the notes
    /// on the folder.
    fn announce(&mut self, resumed: Option<(&str, u64)>) {
        let h = &self.inputs.settings.hyperparameters;
        let message = match resumed {
            Some((name, step)) => {
                format!("resumed from {name} at step {step}/{}", self.total_steps)
            }
            None => format!(
                "training on {}, each seen {} times per epoch: {} steps of {} images at resolution {}",
                self.prepared.describe(&self.inputs.images.name),
                h.repeats,
                self.total_steps,
                h.batch_size,
                self.prepared.resolution
            ),
        };
        self.events.emit(EventBody::Phase {
            phase: JobPhase::Running,
            message: Some(message),
            result: None,
        });
        for (level, message) in &self.prepared.notes {
            self.events.emit(EventBody::Log {
                level: *level,
                message: message.clone(),
            });
        }
    }

    /// Whether the run checkpoints after step `step` (counted from 1): at the end,
    /// and every epoch or every N steps as the job asks.
    fn checkpoint_due(&self, step: u64) -> bool {
        let checkpoints = &self.inputs.settings.checkpoints;
        step == self.total_steps
            || (checkpoints.every_epoch && step.is_multiple_of(self.order.steps_per_epoch))
            || checkpoints
                .every_steps
                .is_some_and(|n| n > 0 && step.is_multiple_of(u64::from(n)))
    }

    /// Says why the run ends here: an error event and the `Failed` phase, also in
    /// storage's copy of the events.
    fn fail_run(&mut self, message: String) {
        report_failure(&mut self.events, &self.inputs.location.output, message);
    }
}
