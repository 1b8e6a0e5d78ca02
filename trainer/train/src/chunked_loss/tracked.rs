//! The fused cross-entropy as one op of burn's autodiff graph. The forward runs the
//! chunked arithmetic on the inner backend, so no graph keeps any logits. With a
//! frozen head (LoRA) the forward also makes each token's gradient for the hidden
//! states while its chunk's softmax is at hand, `[tokens, hidden]`, and the backward
//! only scales it; with a trained head (full training) the op saves its inputs
//! (hidden states, head, targets) and its backward recomputes each chunk's softmax
//! to make both gradients.

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::prelude::*;
use burn::tensor::TensorPrimitive;

use super::chunks::{self, Normalizer, Scored};
use anneal_model::llm::precision::cast;

/// The op, with the chunk size its backward recomputes with.
#[derive(Debug)]
struct TargetLogProbs {
    chunk: usize,
}

/// What the backward pass works from, on the inner backend.
#[derive(Clone, Debug)]
enum Saved<I: Backend> {
    /// Each token's `d log p(target) / d hidden` `[tokens, hidden]` f32, and the
    /// hidden states' dtype.
    HiddenGradient(Tensor<I, 2>, burn::tensor::DType),
    /// The forward's inputs, hidden `[tokens, hidden]`, head `[hidden, vocab]`, targets
    /// `[tokens]`, and its softmax normalizer `[tokens]`.
    Inputs(Tensor<I, 2>, Tensor<I, 2>, Tensor<I, 1, Int>, Normalizer<I>),
}

impl<I: Backend> Backward<I, 2> for TargetLogProbs {
    type State = Saved<I>;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [hidden_node, head_node] = ops.parents;
        let grad =
            Tensor::<I, 1>::from_primitive(TensorPrimitive::Float(grads.consume::<I>(&ops.node))); // [tokens]
        let (hidden, head, targets, normalizer) = match ops.state {
            Saved::HiddenGradient(per_token, dtype) => {
                if let Some(node) = hidden_node {
                    let [tokens, _] = per_token.dims();
                    let d = cast(per_token * grad.reshape([tokens, 1]), dtype); // [tokens, hidden]
                    grads.register::<I>(node.id, d.into_primitive().tensor());
                }
                return;
            }
            Saved::Inputs(hidden, head, targets, normalizer) => (hidden, head, targets, normalizer),
        };
        let (d_hidden, d_head) = chunks::gradients(
            hidden,
            head,
            targets,
            normalizer,
            grad,
            self.chunk,
            hidden_node.is_some(),
            head_node.is_some(),
        );
        if let (Some(node), Some(d)) = (hidden_node, d_hidden) {
            grads.register::<I>(node.id, d.into_primitive().tensor());
        }
        if let (Some(node), Some(d)) = (head_node, d_head) {
            grads.register::<I>(node.id, d.into_primitive().tensor());
        }
    }
}

/// [`chunks::score`] on `Autodiff<I, C>` as one tracked op: `log_probs` carries the
/// gradient, `hits` none.
pub fn score<I: Backend, C: CheckpointStrategy>(
    hidden: Tensor<Autodiff<I, C>, 2>,
    head: Tensor<Autodiff<I, C>, 2>,
    targets: Tensor<Autodiff<I, C>, 1, Int>,
    chunk: usize,
) -> Scored<Autodiff<I, C>> {
    let hidden = hidden.into_primitive().tensor();
    let head = head.into_primitive().tensor();
    let inner =
        |t: I::FloatTensorPrimitive| Tensor::<I, 2>::from_primitive(TensorPrimitive::Float(t));
    let (hidden_in, head_in) = (
        inner(hidden.primitive.clone()),
        inner(head.primitive.clone()),
    );
    let targets = targets.inner();
    let op = TargetLogProbs { chunk };
    let head_trained = head.is_tracked();
    let prepared = op
        .prepare::<C>([hidden.node.clone(), head.node.clone()])
        .compute_bound()
        .stateful();
    // The hidden states' gradient made in the forward, when a backward pass will
    // want it and the head's will not.
    let hidden_gradient = matches!(prepared, OpsKind::Tracked(_)) && !head_trained;
    let mut scored = chunks::score(
        hidden_in.clone(),
        head_in.clone(),
        targets.clone(),
        chunk,
        hidden_gradient,
    );
    let log_probs = scored.log_probs.into_primitive().tensor();
    let log_probs = match prepared {
        OpsKind::Tracked(prep) => {
            let saved = match scored.hidden_gradient.take() {
                Some(per_token) => Saved::HiddenGradient(per_token, hidden_in.dtype()),
                None => Saved::Inputs(hidden_in, head_in, targets, scored.normalizer.clone()),
            };
            prep.finish(saved, log_probs)
        }
        OpsKind::UnTracked(prep) => prep.finish(log_probs),
    };
    let normalizer = Normalizer {
        max: Tensor::from_inner(scored.normalizer.max),
        log_sum: Tensor::from_inner(scored.normalizer.log_sum),
    };
    Scored {
        log_probs: Tensor::from_primitive(TensorPrimitive::Float(log_probs)),
        hits: Tensor::from_inner(scored.hits),
        normalizer,
        hidden_gradient: None,
    }
}
