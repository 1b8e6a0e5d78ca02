//! The micro-batch a run trains with: the job's own when it sets
//! `gradientAccumulation` (`batchSize / gradientAccumulation`: an explicit choice
//! wins), else the memory plan's largest that fits the device the trainer runs on;
//! and the line that says which. Either way a step still sees `batchSize` samples in
//! the same order ([`crate::batches`]): only how many run at once changes. With
//! several devices the plan also says how they are used: data-parallel replicas when
//! the model fits one ([`crate::data_parallel`]), else its layers placed across them.

use std::fmt;
use std::path::Path;

use anneal_crds::memory_plan::{ByteSize, DeviceMemory, DoesNotFit, ModelShape, PlanInputs, plan};

use crate::TrainError;
use crate::device_memory::FoundMemory;
use crate::run::TrainingSettings;

/// How many samples run at once, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct MicroBatch {
    pub size: usize,
    /// Micro-batches in a full step on each replica: `ceil(batchSize / size)` on one.
    pub accumulation: usize,
    /// Devices training data-parallel, each with a copy of the model; 1 when the run
    /// has one device or its layers are placed across several.
    pub replicas: usize,
    pub source: MicroBatchSource,
}

/// Why a run uses its micro-batch.
#[derive(Clone, Debug, PartialEq)]
pub enum MicroBatchSource {
    /// The job sets `gradientAccumulation`.
    GradientAccumulation,
    /// The memory plan: its `peak` on `memory`'s device.
    Plan { peak: ByteSize, memory: FoundMemory },
    /// The device's memory is unknown (the CPU backend off Linux, no `--cpu-memory`).
    UnknownMemory,
}

impl MicroBatch {
    /// `size` samples at once on each of `replicas`, as many times as a step of
    /// `batch` needs.
    fn new(batch: usize, size: usize, replicas: usize, source: MicroBatchSource) -> Self {
        let size = size.clamp(1, batch.max(1));
        let replicas = replicas.max(1);
        MicroBatch {
            size,
            accumulation: batch.max(1).div_ceil(size).div_ceil(replicas),
            replicas,
            source,
        }
    }

    /// The devices the model loads on, of the run's `devices`: the first alone when
    /// it trains data-parallel (copied to the others once the run starts), else all
    /// of them, its layers placed across them.
    pub fn model_devices<'d, D>(&self, devices: &'d [D]) -> &'d [D] {
        match self.replicas {
            1 => devices,
            _ => &devices[..1],
        }
    }
}

/// The micro-batch of a run with `settings` on a device with `memory` (`None`:
/// unknown): the job's own, else the plan's for the model in `model_dir`, whose
/// `config.json` gives the shape. Fails with the plan's [`DoesNotFit`] when not one
/// sample fits, before any weight is loaded.
pub fn choose_micro_batch(
    settings: &TrainingSettings,
    model_dir: &Path,
    memory: Option<FoundMemory>,
) -> Result<MicroBatch, TrainError> {
    let batch = settings.hyperparameters.batch_size as usize;
    let set = settings.set_micro_batch.map(|size| size as usize);
    let several = memory.is_some_and(|memory| memory.device.devices > 1);
    if let Some(size) = set
        && !several
    {
        let source = MicroBatchSource::GradientAccumulation;
        return Ok(MicroBatch::new(batch, size, 1, source));
    }
    let Some(memory) = memory else {
        return Ok(MicroBatch::new(
            batch,
            batch,
            1,
            MicroBatchSource::UnknownMemory,
        ));
    };
    let path = model_dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
    let shape = ModelShape::from_config_json(&text)
        .map_err(|source| TrainError::ModelShape { path, source })?;
    let inputs = PlanInputs::for_training(
        settings.method,
        settings.training,
        &settings.hyperparameters,
        shape,
        memory.device,
    );
    let plan = planned(&inputs, memory)?;
    // On several devices the plan still says how they are used; the job's own
    // micro-batch, when it sets one, runs on each.
    Ok(match set {
        Some(size) => MicroBatch::new(
            batch,
            size,
            plan.replicas,
            MicroBatchSource::GradientAccumulation,
        ),
        None => plan,
    })
}

/// The plan's micro-batch for `inputs`.
fn planned(inputs: &PlanInputs, memory: FoundMemory) -> Result<MicroBatch, TrainError> {
    let plan = plan(inputs).map_err(|does_not_fit: DoesNotFit| TrainError::DoesNotFit {
        from: memory.from,
        does_not_fit,
    })?;
    let source = MicroBatchSource::Plan {
        peak: plan.peak,
        memory,
    };
    Ok(MicroBatch::new(
        inputs.batch_size as usize,
        plan.micro_batch as usize,
        plan.replicas as usize,
        source,
    ))
}

impl fmt::Display for MicroBatch {
    /// `micro-batch 4 x 2 accumulation (plan: 71.2 GiB of 80 GiB GPU, memory from
    /// --gpu-memory)`, `micro-batch 4 x 2 accumulation (set by gradientAccumulation)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "micro-batch {} x {} accumulation",
            self.size, self.accumulation
        )?;
        if self.replicas > 1 {
            write!(f, " on each of {} devices, data-parallel", self.replicas)?;
        }
        write!(f, " (")?;
        match &self.source {
            MicroBatchSource::GradientAccumulation => write!(f, "set by gradientAccumulation)"),
            MicroBatchSource::Plan { peak, memory } => {
                let DeviceMemory {
                    kind, per_device, ..
                } = memory.device;
                write!(
                    f,
                    "plan: {peak} of {per_device} {}, memory from {})",
                    kind.noun(),
                    memory.from
                )
            }
            MicroBatchSource::UnknownMemory => {
                write!(f, "the whole batch: the device's memory is unknown)")
            }
        }
    }
}

#[cfg(test)]
mod tests;
