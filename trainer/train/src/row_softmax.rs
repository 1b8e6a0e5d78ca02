//! The attention softmax as one op of burn's autodiff graph, registered with
//! anneal-model's `row_softmax` for the training backends: its backward needs only
//! its output, `dx = y · (g − Σ_row g·y)`, so the graph keeps one score-sized tensor
//! per layer instead of burn's decomposed exp, sum and divide keeping two (see
//! `anneal_model::llm::softmax`). The forward is the kernel inference runs
//! (`anneal_model::cpu_kernels::softmax_rows`: one fused pass on the CPU, burn's
//! softmax elsewhere).

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};

use crate::tracked_op::record;
use anneal_model::cpu_kernels;
use burn::prelude::*;
use burn::tensor::TensorPrimitive;

#[derive(Debug)]
struct RowSoftmaxOp;

impl<I: Backend> Backward<I, 1> for RowSoftmaxOp {
    /// The output `[rows, keys]`.
    type State = Tensor<I, 2>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [parent] = ops.parents;
        let grad =
            Tensor::<I, 2>::from_primitive(TensorPrimitive::Float(grads.consume::<I>(&ops.node)));
        let Some(node) = parent else {
            return;
        };
        let y = ops.state;
        let row_dot = (grad.clone() * y.clone()).sum_dim(1); // [rows, 1]
        let dx = y * (grad - row_dot); // [rows, keys]
        grads.register::<I>(node.id, dx.into_primitive().tensor());
    }
}

/// The softmax of each row of `scores` `[rows, keys]` on `Autodiff<I, C>`, saving only
/// its output for the backward pass.
pub fn tracked_row_softmax<I: Backend, C: CheckpointStrategy>(
    scores: Tensor<Autodiff<I, C>, 2>,
) -> Tensor<Autodiff<I, C>, 2> {
    let scores = scores.into_primitive().tensor();
    let inner = Tensor::<I, 2>::from_primitive(TensorPrimitive::Float(scores.primitive.clone()));
    let y = cpu_kernels::softmax_rows(inner);
    let out = y.clone().into_primitive().tensor();
    let out = record::<I, C, _, 1>(RowSoftmaxOp, [&scores], || y, out);
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use anneal_model::backend::CpuBackend;
    use burn::tensor::Distribution;
    use burn::tensor::activation::softmax;

    type A = Autodiff<CpuBackend>;

    /// The op's output and its input gradient are burn's (whose backward runs through
    /// exp, sum and divide) to 1e-6, for a loss that weighs every output differently.
    #[test]
    fn values_and_gradients_are_burns() {
        let _rng = crate::backend_rng_lock();
        let device = Default::default();
        A::seed(&device, 5);
        let scores = Tensor::<A, 2>::random([6, 40], Distribution::Normal(0.0, 3.0), &device);
        let weights = Tensor::<A, 2>::random([6, 40], Distribution::Normal(0.0, 1.0), &device);
        let run = |tracked: bool| {
            let x = scores.clone().detach().require_grad();
            let y = match tracked {
                true => tracked_row_softmax(x.clone()),
                false => softmax(x.clone(), 1),
            };
            let grads = (y.clone() * weights.clone()).sum().backward();
            let dx = x.grad(&grads).unwrap().into_data().to_vec::<f32>().unwrap();
            (y.into_data().to_vec::<f32>().unwrap(), dx)
        };
        let ((ours, our_dx), (burns, burn_dx)) = (run(true), run(false));
        let close = |a: &f32, b: &f32| (a - b).abs() <= 1e-6 * b.abs().max(1e-6);
        assert!(ours.iter().zip(&burns).all(|(a, b)| close(a, b)));
        crate::assert_matches_burn("dx", &our_dx, &burn_dx, 1e-6);
    }
}
