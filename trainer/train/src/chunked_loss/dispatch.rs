//! Picks the tracked op when the backend is one of the trainer's autodiff backends.
//! The model and objective code is generic over `B: Backend`, and burn offers no
//! way to ask a generic backend for its autodiff graph; the trainer's backends are
//! a known few (`backend.rs`), so the op is chosen by type, as `projection.rs`
//! chooses its dropout. Any other backend takes the plain chunked arithmetic: right
//! on every backend, and without a graph (inference) it is already one chunk at a time.

use std::any::{Any, TypeId};

use burn::backend::Autodiff;
use burn::prelude::*;

use super::chunks::{self, Scored};
use super::tracked;
use anneal_model::backend::CpuBackend;

/// `hidden` `[tokens, hidden]`, `head` `[hidden, vocab]`, `targets` `[tokens]`.
pub fn score<B: Backend>(
    hidden: Tensor<B, 2>,
    head: Tensor<B, 2>,
    targets: Tensor<B, 1, Int>,
    chunk: usize,
) -> Scored<B> {
    if same::<B, Autodiff<CpuBackend>>() {
        return tracked_on::<B, CpuBackend>(hidden, head, targets, chunk);
    }
    #[cfg(feature = "cuda")]
    if same::<B, Autodiff<anneal_model::backend::CudaBackend>>() {
        return tracked_on::<B, anneal_model::backend::CudaBackend>(hidden, head, targets, chunk);
    }
    chunks::score(hidden, head, targets, chunk, false)
}

/// Whether `T` and `U` are one type.
pub(super) fn same<T: 'static, U: 'static>() -> bool {
    TypeId::of::<T>() == TypeId::of::<U>()
}

/// Runs the tracked op with `B` known (by [`same`]) to be `Autodiff<I>`.
fn tracked_on<B: Backend, I: Backend>(
    hidden: Tensor<B, 2>,
    head: Tensor<B, 2>,
    targets: Tensor<B, 1, Int>,
    chunk: usize,
) -> Scored<B> {
    let scored = tracked::score::<I, _>(
        cast::<_, Tensor<Autodiff<I>, 2>>(hidden),
        cast(head),
        cast(targets),
        chunk,
    );
    Scored {
        log_probs: cast(scored.log_probs),
        hits: cast(scored.hits),
        normalizer: cast(scored.normalizer),
        hidden_gradient: None,
    }
}

/// `value` as `U`, which it is: callers have checked the types are the same.
fn cast<T: 'static, U: 'static>(value: T) -> U {
    *(Box::new(value) as Box<dyn Any>)
        .downcast::<U>()
        .expect("the types were checked to be the same")
}
