//! The memory plan: how many bytes one training step of a job needs on each device
//! (base weights, trainable state, activations with per-layer recomputation, a chunk
//! of logits, a margin), the largest micro-batch that fits and the gradient
//! accumulation that reaches `batchSize`, or, when nothing fits, what would. Pure
//! arithmetic on a model's shape, shared by `trainer plan`, the trainer's micro-batch
//! choice and the operator's Validating phase.
//!
//! - [`model_shape`]: parameter counts of a Qwen2 / Llama shape;
//! - [`hf_config`] and [`known_models`]: a shape from `config.json` or from the
//!   built-in table of the names users write;
//! - [`inputs`]: what a plan is computed from, and how a job's spec gives it;
//! - [`footprint`]: the byte formula of every part (bounds, for GPUs);
//! - [`cpu_peak`]: the CPU backend's peak as measured;
//! - [`plan`]: the peak, the micro-batch choice and [`DoesNotFit`];
//! - [`render`]: the plan as a table; [`fit_table`]: what fits where, for the docs;
//! - [`scratch`]: the trainer pod's scratch disk.

pub mod byte_size;
pub mod cpu_peak;
pub mod fit_table;
pub mod footprint;
pub mod hf_config;
pub mod inputs;
pub mod known_models;
pub mod model_shape;
pub mod plan;
pub mod render;
pub mod scratch;

#[cfg(test)]
mod tests;

pub use byte_size::{ByteSize, ByteSizeError, GIB};
pub use hf_config::HfConfigError;
pub use inputs::{
    DEFAULT_GPU_MEMORY, DeviceKind, DeviceMemory, PlanInputs, TrainedWeights, WeightDtype,
};
pub use known_models::{KNOWN_MODELS, known_shape};
pub use model_shape::ModelShape;
pub use plan::{DoesNotFit, MemoryPlan, plan};
pub use scratch::{ScratchPlan, scratch_plan};

use crate::finetunejob::FineTuneJobSpec;

/// The plan of a job's spec for a model of `shape` on `device`.
pub fn plan_for_job(
    spec: &FineTuneJobSpec,
    shape: ModelShape,
    device: DeviceMemory,
) -> Result<MemoryPlan, DoesNotFit> {
    plan(&PlanInputs::for_job(spec, shape, device))
}
