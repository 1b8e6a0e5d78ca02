//! Gradient clipping by the global norm over every trained parameter, as
//! `torch.nn.utils.clip_grad_norm_` does; every objective's step clips before AdamW.
//!
//! The norm stays on the device until the step is over: each gradient's sum of
//! squares is added into one scalar tensor there, the clipping factor
//! `min(1, max / (norm + 1e-6))` is computed and applied there, and the norm is
//! returned as a tensor for the step's one read-back ([`crate::readback`]). (Read per
//! tensor, the host would wait on the device once per trained tensor: 196 times a
//! step for LoRA on every projection of a 28-layer 7B model.)

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

/// Adds up the squares of every gradient a parameter of the model has: the adapter's
/// in LoRA training (the frozen base has none), every weight's in full training.
struct GradSquares<'a, B: AutodiffBackend> {
    grads: &'a GradientsParams,
    /// `[1]`, on the device of the first gradient seen.
    sum: Option<Tensor<B::InnerBackend, 1>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for GradSquares<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
            let square_sum = g.powf_scalar(2.0).sum(); // [1], on the parameter's device
            self.sum = Some(match self.sum.take() {
                None => square_sum,
                Some(sum) => {
                    let device = sum.device();
                    sum + square_sum.to_device(&device)
                }
            });
        }
    }
}

/// Multiplies every gradient by `factor` `[1]`.
struct GradScale<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    factor: Tensor<B::InnerBackend, 1>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for GradScale<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            let factor = self.factor.clone().to_device(&g.device()).reshape([1; D]);
            self.grads.register(param.id, g * factor);
        }
    }
}

/// Scales every gradient by `max / norm` when their joint L2 norm exceeds `max`;
/// returns the norm before clipping, `[1]` on the device (`None` when nothing has a
/// gradient).
pub(crate) fn clip_global_norm<B: AutodiffBackend, M: Module<B>>(
    model: &M,
    grads: &mut GradientsParams,
    max_norm: f64,
) -> Option<Tensor<B::InnerBackend, 1>> {
    let mut squares = GradSquares::<B> { grads, sum: None };
    model.visit(&mut squares);
    let sum = squares.sum?;
    let norm = sum.sqrt(); // [1]
    if max_norm > 0.0 {
        // Below the bound the factor is exactly 1, and multiplying by it changes nothing.
        let factor = norm
            .clone()
            .add_scalar(1e-6)
            .recip()
            .mul_scalar(max_norm)
            .clamp_max(1.0);
        model.visit(&mut GradScale::<B> { grads, factor });
    }
    Some(norm)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use burn::tensor::DType;

    use super::*;
    use crate::train_backend::CpuTrainBackend;
    use anneal_model::llm::{CausalLm, load_model};

    type A = CpuTrainBackend;

    /// Every gradient of `model` in `grads`, as host values.
    struct Values<'a> {
        grads: &'a GradientsParams,
        out: Vec<Vec<f32>>,
    }

    impl ModuleVisitor<A> for Values<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<A, D>>) {
            if let Some(g) = self
                .grads
                .get::<anneal_model::backend::CpuBackend, D>(param.id)
            {
                self.out.push(g.into_data().to_vec::<f32>().unwrap());
            }
        }
    }

    fn values(model: &CausalLm<A>, grads: &GradientsParams) -> Vec<Vec<f32>> {
        let mut visitor = Values {
            grads,
            out: Vec::new(),
        };
        model.visit(&mut visitor);
        visitor.out
    }

    fn host_norm(values: &[Vec<f32>]) -> f64 {
        let squares: f64 = values.iter().flatten().map(|v| f64::from(*v).powi(2)).sum();
        squares.sqrt()
    }

    /// The tiny model trained in full, and the gradients of its logits' sum of squares.
    fn model_and_grads() -> (CausalLm<A>, GradientsParams) {
        let dir =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/reference/qwen2-tiny");
        let device = Default::default();
        let (_, model) = load_model::<A>(&dir, &device, DType::F32).unwrap();
        let ids =
            Tensor::<A, 1, Int>::from_data(TensorData::new(vec![1i64, 5, 9, 30], [4]), &device)
                .reshape([1, 4]);
        let loss = model.forward(ids).powf_scalar(2.0).mean();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        (model, grads)
    }

    #[test]
    fn above_the_bound_every_gradient_shrinks_to_the_bound() {
        let (model, mut grads) = model_and_grads();
        let before = values(&model, &grads);
        let norm = host_norm(&before);
        assert!(before.len() > 10 && norm > 0.0);
        let reported = clip_global_norm(&model, &mut grads, norm / 4.0).unwrap();
        let reported = f64::from(reported.into_scalar());
        assert!(
            (reported - norm).abs() / norm < 1e-5,
            "{reported} vs {norm}"
        );
        let after = values(&model, &grads);
        let clipped = host_norm(&after);
        assert!((clipped - norm / 4.0).abs() / clipped < 1e-5, "{clipped}");
        // One factor for all: every gradient keeps its direction.
        let ratio = f64::from(after[0][0]) / f64::from(before[0][0]);
        assert!((ratio - 0.25).abs() < 1e-5, "{ratio}");
    }

    #[test]
    fn below_the_bound_or_without_one_nothing_changes() {
        for max in [0.0, 1e9] {
            let (model, mut grads) = model_and_grads();
            let before = values(&model, &grads);
            clip_global_norm(&model, &mut grads, max);
            assert_eq!(values(&model, &grads), before, "max {max}");
        }
    }
}
