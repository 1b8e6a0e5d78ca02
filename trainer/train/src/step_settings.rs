//! How one optimizer step runs, the same for SFT's and DPO's steps.

use crate::backward::LayerActivations;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepSettings {
    /// The step's learning rate, from the schedule.
    pub learning_rate: f64,
    /// Gradients are clipped to this global norm.
    pub max_grad_norm: f64,
    /// Kept or recomputed in the backward pass (`gradientCheckpointing`).
    pub activations: LayerActivations,
}
