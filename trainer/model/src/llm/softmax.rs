//! The attention softmax over each row of a `[rows, keys]` score matrix.
//!
//! burn's `softmax` is exp, sum and divide, so under autodiff the graph keeps the
//! exponentials and the result until the backward pass. The softmax's gradient needs
//! only its output, `y · (g − Σ g·y)`, so the training crate registers a tracked op
//! that saves `y` alone ([`register_row_softmax`], through [`super::tracked_ops`]);
//! every other backend, and inference, takes burn's.

use burn::prelude::*;

use crate::cpu_kernels::causal_softmax_rows;

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

/// The softmax of `scores` `[n, rows, keys]`, `n` blocks of `rows` queries whose own
/// positions are the last `rows` keys, each row over the keys up to its own position:
/// `triangle` (`[rows, rows]`, 0 on and below the diagonal, −∞ above) masks the
/// block's own square. Returns `[n * rows, keys]`. On the CPU the fused kernel skips
/// the mask and the hidden keys; a registered op (training's autodiff graph) or
/// another backend gets the masked scores.
pub fn causal_row_softmax<B: Backend>(
    scores: Tensor<B, 3>,
    triangle: &Tensor<B, 2>,
) -> Tensor<B, 2> {
    let [n, rows, keys] = scores.dims();
    let flat = |scores: Tensor<B, 3>| scores.reshape([n * rows, keys]);
    let scores = match registered::<RowSoftmax<B>>() {
        Some(_) => scores,
        None => match causal_softmax_rows(flat(scores), rows) {
            Ok(probabilities) => return probabilities,
            Err(scores) => scores.reshape([n, rows, keys]),
        },
    };
    let past = keys - rows;
    let own = scores.clone().narrow(2, past, rows) + triangle.clone().unsqueeze::<3>();
    let masked = match past {
        0 => own,
        _ => Tensor::cat(vec![scores.narrow(2, 0, past), own], 2),
    };
    row_softmax(flat(masked))
}
