//! Gradient clipping by the global norm over every trained parameter, as
//! `torch.nn.utils.clip_grad_norm_` does; every objective's step clips before AdamW.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use anneal_model::llm::CausalLm;

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

/// Scales every gradient by `max / norm` when their joint L2 norm exceeds `max`;
/// returns the norm before clipping.
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
