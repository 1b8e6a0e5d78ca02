//! The SwiGLU feed-forward block: `down(silu(gate(x)) * up(x))`.

use burn::prelude::*;

use super::projection::Projection;
use super::tracked_ops::{register, registered};

#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    pub gate_proj: Projection<B>,
    pub up_proj: Projection<B>,
    pub down_proj: Projection<B>,
}

impl<B: Backend> Mlp<B> {
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let gate = self.gate_proj.forward(x.clone()); // [b, s, ffn]
        let up = self.up_proj.forward(x); // [b, s, ffn]
        self.down_proj.forward(swiglu(gate, up))
    }
}

/// `silu(gate) · up` for one backend.
pub type SwiGlu<B> = fn(Tensor<B, 3>, Tensor<B, 3>) -> Tensor<B, 3>;

/// Makes [`swiglu`] on backend `B` call `op` (the last registration wins). The
/// training crate registers one whose backward keeps only `gate` and `up`, where
/// burn's graph keeps the sigmoid, `silu(gate)` and `up` besides `gate`: half the
/// MLP's `[tokens, ffn]` activations, the widest a layer has.
pub fn register_swiglu<B: Backend>(op: SwiGlu<B>) {
    register(op);
}

/// `silu(gate) · up`, `[b, s, ffn]` each: the registered op for `B`, else
/// [`crate::cpu_kernels::swiglu`] (one fused pass on the CPU, burn's elsewhere).
pub fn swiglu<B: Backend>(gate: Tensor<B, 3>, up: Tensor<B, 3>) -> Tensor<B, 3> {
    match registered::<SwiGlu<B>>() {
        Some(op) => op(gate, up),
        None => crate::cpu_kernels::swiglu(gate, up),
    }
}
