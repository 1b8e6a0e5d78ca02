//! A micro-batch's backward pass, with each decoder layer's activations either kept
//! from the forward pass or recomputed layer by layer
//! ([`anneal_model::llm::recompute`]), as `hyperparameters.gradientCheckpointing`
//! says. SFT's and DPO's steps differ only in the loss they put after the final norm,
//! so both go through [`accumulate_backward`].

use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use std::sync::Once;

use burn::backend::Autodiff;

use crate::blocked_attention::tracked_blocked_attention;
use crate::row_softmax::tracked_row_softmax;
use crate::swiglu::tracked_swiglu;
use crate::tensor_batch::Batch;
use anneal_model::backend::CpuBackend;
use anneal_model::llm::CausalLm;
use anneal_model::llm::blocked_attention::register_blocked_attention;
use anneal_model::llm::mlp::register_swiglu;
use anneal_model::llm::recompute::backward_recomputed;
use anneal_model::llm::softmax::register_row_softmax;

/// Where the backward pass gets each decoder layer's activations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerActivations {
    /// Kept from the forward pass: every layer's at once, the fastest.
    Kept,
    /// Recomputed in the backward pass from each layer's kept input, one layer's
    /// alive at a time (gradient checkpointing): about a third more compute.
    Recomputed,
}

impl LayerActivations {
    /// From `hyperparameters.gradientCheckpointing`.
    pub fn from_checkpointing(gradient_checkpointing: bool) -> Self {
        match gradient_checkpointing {
            true => LayerActivations::Recomputed,
            false => LayerActivations::Kept,
        }
    }
}

/// Registers the training crate's tracked ops with anneal-model, once per process:
/// attention keeps only its queries, keys and values for the backward pass, the MLP's
/// `silu(gate) · up` only `gate` and `up`, and a softmax elsewhere only its output.
/// Every training step calls it first.
pub fn register_training_ops() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        register_for::<CpuBackend>();
        #[cfg(feature = "cuda")]
        register_for::<anneal_model::backend::CudaBackend>();
    });
}

/// The tracked ops on `Autodiff<I>`, the trainer's autodiff backend over `I`.
fn register_for<I: Backend>() {
    register_blocked_attention::<Autodiff<I>>(tracked_blocked_attention::<I, _>);
    register_swiglu::<Autodiff<I>>(tracked_swiglu::<I, _>);
    register_row_softmax::<Autodiff<I>>(tracked_row_softmax::<I, _>);
}

/// Runs `model` on `batch`'s inputs `[rows, len]` (laid out as the batch says: one
/// sequence a row, or packed), differentiates `loss_of(hidden)` and adds every trained
/// parameter's gradient to `accumulator`. `loss_of` gets the hidden states after the
/// final norm, `[rows, len, hidden]`, and returns the scalar to differentiate and
/// what the caller reads back after the backward pass.
pub fn accumulate_backward<B: AutodiffBackend, T>(
    model: &CausalLm<B>,
    batch: &Batch<B>,
    activations: LayerActivations,
    accumulator: &mut GradientsAccumulator<CausalLm<B>>,
    loss_of: impl FnOnce(Tensor<B, 3>) -> (Tensor<B, 1>, T),
) -> T {
    register_training_ops();
    let inputs = batch.inputs.clone();
    match activations {
        LayerActivations::Recomputed => {
            backward_recomputed(model, inputs, batch.layout(), accumulator, loss_of)
        }
        LayerActivations::Kept => {
            let (hidden, _) = model.forward_laid_out(inputs, None, batch.layout()); // [rows, len, hidden]
            let (loss, output) = loss_of(hidden);
            let grads = GradientsParams::from_grads(loss.backward(), model);
            accumulator.accumulate(model, grads);
            output
        }
    }
}
