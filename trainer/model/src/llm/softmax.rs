//! The attention softmax over each row of a `[rows, keys]` score matrix.
//!
//! burn's `softmax` is exp, sum and divide, so under autodiff the graph keeps the
//! exponentials and the result until the backward pass: two score-sized f32 tensors
//! per layer, the largest activations a long sequence has (at 4,096 tokens, 1 GiB
//! each for one sequence through one layer of a 28-head model). The softmax's
//! gradient needs only its output, `y · (g − Σ g·y)`, so a tracked op that saves `y`
//! alone (which the next matmul keeps anyway) halves that. This crate builds without
//! burn's autodiff, so the training crate registers such an op for its backends
//! ([`register_row_softmax`]); every other backend, and inference, takes burn's.

use std::any::{Any, TypeId};
use std::sync::RwLock;

use burn::prelude::*;
use burn::tensor::activation::softmax;

/// A softmax over dim 1 of `[rows, keys]` for one backend.
pub type RowSoftmax<B> = fn(Tensor<B, 2>) -> Tensor<B, 2>;

/// The registered ops: the backend's type, and its [`RowSoftmax`] boxed.
type Registry = Vec<(TypeId, Box<dyn Any + Send + Sync>)>;

static REGISTERED: RwLock<Registry> = RwLock::new(Vec::new());

/// Makes [`row_softmax`] on backend `B` call `op` (the last registration wins).
pub fn register_row_softmax<B: Backend>(op: RowSoftmax<B>) {
    let mut registered = REGISTERED.write().unwrap_or_else(|p| p.into_inner());
    registered.retain(|(backend, _)| *backend != TypeId::of::<B>());
    registered.push((TypeId::of::<B>(), Box::new(op)));
}

/// The softmax of each row of `scores` `[rows, keys]`: the registered op for `B`,
/// else burn's.
pub fn row_softmax<B: Backend>(scores: Tensor<B, 2>) -> Tensor<B, 2> {
    let op = {
        let registered = REGISTERED.read().unwrap_or_else(|p| p.into_inner());
        registered
            .iter()
            .find(|(backend, _)| *backend == TypeId::of::<B>())
            .and_then(|(_, op)| op.downcast_ref::<RowSoftmax<B>>().copied())
    };
    match op {
        Some(op) => op(scores),
        None => softmax(scores, 1),
    }
}
