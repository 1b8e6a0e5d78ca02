//! One optimizer step of LoRA SFT: forward and backward over the step's
//! micro-batches (gradient accumulation), the gradient clipped by its global norm,
//! then AdamW on whatever has gradients: the adapter in LoRA training (the frozen
//! base has no gradient and so no optimizer state), every weight in full training.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, AdamWConfig, GradientsAccumulator, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use super::loss::{Batch, masked_nll};
use crate::model::CausalLm;

pub type SftOptimizer<B> = OptimizerAdaptor<AdamW, CausalLm<B>, B>;

/// AdamW as PyTorch defaults it (eps 1e-8), with the job's weight decay.
pub fn adamw<B: AutodiffBackend>(weight_decay: f64) -> SftOptimizer<B> {
    AdamWConfig::new()
        .with_epsilon(1e-8)
        .with_weight_decay(weight_decay as f32)
        .init()
}

/// What one step saw.
#[derive(Clone, Debug, PartialEq)]
pub struct StepStats {
    /// Mean loss per trained token.
    pub loss: f64,
    /// Share of trained tokens predicted right.
    pub accuracy: f64,
    pub trained_tokens: usize,
    /// Positions the forward pass computed, padding included.
    pub positions: usize,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
}

/// Runs one step over `micro_batches` and returns the updated model.
pub fn sft_step<B: AutodiffBackend>(
    mut model: CausalLm<B>,
    optimizer: &mut SftOptimizer<B>,
    micro_batches: &[Batch<B>],
    learning_rate: f64,
    max_grad_norm: f64,
) -> (CausalLm<B>, StepStats) {
    let total_tokens: usize = micro_batches.iter().map(|b| b.trained_tokens).sum();
    let mut accumulator = GradientsAccumulator::<CausalLm<B>>::new();
    let (mut nll_sum, mut correct_sum) = (0.0, 0.0);
    for batch in micro_batches {
        let logits = model.forward(batch.inputs.clone());
        let (nll, correct) = masked_nll(logits, batch);
        nll_sum += f64::from(nll.clone().into_scalar().elem::<f32>());
        correct_sum += f64::from(correct.into_scalar().elem::<f32>());
        // Each micro-batch's share of the step's mean, so the accumulated gradient is
        // the gradient of the mean over every trained token of the step.
        let loss = nll / total_tokens.max(1) as f64;
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        accumulator.accumulate(&model, grads);
    }
    let mut grads = accumulator.grads();
    let grad_norm = clip_global_norm::<B>(&model, &mut grads, max_grad_norm);
    model = optimizer.step(learning_rate, model, grads);
    let stats = StepStats {
        loss: nll_sum / total_tokens.max(1) as f64,
        accuracy: correct_sum / total_tokens.max(1) as f64,
        trained_tokens: total_tokens,
        positions: micro_batches.iter().map(|b| b.positions).sum(),
        grad_norm,
    };
    (model, stats)
}

/// Sums the squares of every gradient a parameter of the model has: the adapter's
/// in LoRA training (the frozen base has none), every weight's in full training.
struct GradSquares<'a> {
    grads: &'a GradientsParams,
    sum: f64,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for GradSquares<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
            self.sum += f64::from(g.powf_scalar(2.0).sum().into_scalar().elem::<f32>());
        }
    }
}

/// Multiplies every gradient by `factor`.
struct GradScale<'a> {
    grads: &'a mut GradientsParams,
    factor: f64,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for GradScale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            self.grads.register(param.id, g * self.factor);
        }
    }
}

/// Scales every gradient by `max / norm` when their joint L2 norm exceeds `max` (as
/// `torch.nn.utils.clip_grad_norm_` does); returns the norm before clipping.
pub(crate) fn clip_global_norm<B: AutodiffBackend>(
    model: &CausalLm<B>,
    grads: &mut GradientsParams,
    max_norm: f64,
) -> f64 {
    let mut squares = GradSquares { grads, sum: 0.0 };
    model.visit(&mut squares);
    let norm = squares.sum.sqrt();
    if max_norm > 0.0 && norm > max_norm {
        let factor = max_norm / (norm + 1e-6);
        model.visit(&mut GradScale { grads, factor });
    }
    norm
}
