//! The attention softmax over each row of a `[rows, keys]` score matrix.
//!
//! burn's `softmax` is exp, sum and divide, so under autodiff the graph keeps the
//! exponentials and the result until the backward pass. The softmax's gradient needs
//! only its output, `y · (g − Σ g·y)`, so the training crate registers a tracked op
//! that saves `y` alone ([`register_row_softmax`], through [`super::tracked_ops`]);
//! every other backend, and inference, takes burn's.

use burn::prelude::*;

use super::tracked_ops::{register, registered};

/// A softmax over dim 1 of `[rows, keys]` for one backend.
pub type RowSoftmax<B> = fn(Tensor<B, 2>) -> Tensor<B, 2>;

/// Makes [`row_softmax`] on backend `B` call `op` (the last registration wins).
pub fn register_row_softmax<B: Backend>(op: RowSoftmax<B>) {
    register(op);
}

/// The softmax of each row of `scores` `[rows, keys]`: the registered op for `B`,
/// else [`crate::cpu_kernels::softmax_rows`] (one fused pass on the CPU, burn's
/// elsewhere).
pub fn row_softmax<B: Backend>(scores: Tensor<B, 2>) -> Tensor<B, 2> {
    match registered::<RowSoftmax<B>>() {
        Some(op) => op(scores),
        None => crate::cpu_kernels::softmax_rows(scores),
    }
}
