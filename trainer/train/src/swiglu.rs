//! The MLP's `silu(gate) · up` as one op of burn's autodiff graph, registered with
//! anneal-model's `swiglu` for the training backends. It keeps only `gate` and `up`
//! for the backward pass, where burn's graph of `gate · sigmoid(gate) · up` keeps the
//! sigmoid and `silu(gate)` too: two `[tokens, ffn]` tensors fewer per layer, the
//! widest activations a layer has. The backward recomputes the sigmoid:
//!
//! ```text
//! s = σ(g)    d_up = dy · g·s    d_gate = dy · up · s·(1 + g·(1 − s))
//! ```

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
struct SwiGluOp;

impl<I: Backend> Backward<I, 2> for SwiGluOp {
    /// `gate` and `up`, `[b, s, ffn]`.
    type State = (Tensor<I, 3>, Tensor<I, 3>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<I>(&ops.node);
        let grad = Tensor::<I, 3>::from_primitive(TensorPrimitive::Float(grad));
        let [gate_node, up_node] = ops.parents;
        let (gate, up) = ops.state;
        // Both gradients in one pass (on the CPU): computing one alone saves little.
        let (d_gate, d_up) = cpu_kernels::swiglu_backward(gate, up, grad);
        if let Some(node) = up_node {
            grads.register::<I>(node.id, d_up.into_primitive().tensor());
        }
        if let Some(node) = gate_node {
            grads.register::<I>(node.id, d_gate.into_primitive().tensor());
        }
    }
}

/// `silu(gate) · up` on `Autodiff<I, C>`, keeping only its inputs for the backward
/// pass. Forward and backward are one fused pass each on the CPU
/// (`anneal_model::cpu_kernels`), burn's ops on other backends.
pub fn tracked_swiglu<I: Backend, C: CheckpointStrategy>(
    gate: Tensor<Autodiff<I, C>, 3>,
    up: Tensor<Autodiff<I, C>, 3>,
) -> Tensor<Autodiff<I, C>, 3> {
    let (gate, up) = (gate.into_primitive().tensor(), up.into_primitive().tensor());
    let gate_in = Tensor::<I, 3>::from_primitive(TensorPrimitive::Float(gate.primitive.clone()));
    let up_in = Tensor::<I, 3>::from_primitive(TensorPrimitive::Float(up.primitive.clone()));
    let out = cpu_kernels::swiglu(gate_in.clone(), up_in.clone())
        .into_primitive()
        .tensor();
    let out = record::<I, C, _, 2>(SwiGluOp, [&gate, &up], || (gate_in, up_in), out);
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use anneal_model::backend::CpuBackend;
    use burn::tensor::Distribution;
    use burn::tensor::activation::silu;

    type A = Autodiff<CpuBackend>;

    /// Values and both gradients match burn's graph of `silu(gate) · up`.
    #[test]
    fn values_and_gradients_are_burns() {
        let _rng = crate::backend_rng_lock();
        let device = Default::default();
        A::seed(&device, 9);
        let normal = Distribution::Normal(0.0, 2.0);
        let gate = Tensor::<A, 3>::random([2, 5, 24], normal, &device);
        let up = Tensor::<A, 3>::random([2, 5, 24], normal, &device);
        let weights = Tensor::<A, 3>::random([2, 5, 24], normal, &device);
        let run = |tracked: bool| {
            let (g, u) = (gate.clone().require_grad(), up.clone().require_grad());
            let y = match tracked {
                true => tracked_swiglu(g.clone(), u.clone()),
                false => silu(g.clone()) * u.clone(),
            };
            let grads = (y.clone() * weights.clone()).sum().backward();
            let values = |t: Tensor<CpuBackend, 3>| t.into_data().to_vec::<f32>().unwrap();
            [
                values(y.inner()),
                values(g.grad(&grads).unwrap()),
                values(u.grad(&grads).unwrap()),
            ]
        };
        let (ours, burns) = (run(true), run(false));
        for (name, (a, b)) in ["y", "d_gate", "d_up"].iter().zip(ours.iter().zip(&burns)) {
            crate::assert_matches_burn(name, a, b, 1e-6);
        }
    }
}
