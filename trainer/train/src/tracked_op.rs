//! Records one of the training crate's own autodiff ops in burn's graph: the op's
//! parents are its inputs' nodes, and it keeps its state for the backward pass only
//! when some input is tracked (the first pass of a recomputed layer tracks none).

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::ops::{Backward, OpsKind};
use burn::prelude::*;

/// A float tensor primitive of `Autodiff<I, C>`: the inner primitive and its node.
pub type TrackedFloat<I, C> = burn::tensor::ops::FloatTensor<Autodiff<I, C>>;

/// `out`, computed on the inner backend from `inputs`, as the output of `op`; `state`
/// is made only when the backward pass will need it.
pub fn record<I, C, O, const N: usize>(
    op: O,
    inputs: [&TrackedFloat<I, C>; N],
    state: impl FnOnce() -> O::State,
    out: I::FloatTensorPrimitive,
) -> TrackedFloat<I, C>
where
    I: Backend,
    C: CheckpointStrategy,
    O: Backward<I, N>,
{
    let parents = inputs.map(|input| input.node.clone());
    match op.prepare::<C>(parents).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish(state(), out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}
