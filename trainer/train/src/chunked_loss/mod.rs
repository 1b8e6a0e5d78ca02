//! Fused, chunked cross-entropy: each token's log-probability of its target (and
//! whether the argmax hit it) from the final hidden states and the head, computed
//! [`chunk_tokens`] tokens at a time, so the `[tokens, vocab]` logits (152k wide for
//! Qwen2.5) and their gradient are never whole in memory. Under autodiff it is one op
//! whose backward recomputes each chunk's softmax ([`tracked`]); SFT's loss and
//! accuracy, DPO's sequence log-probs and both validations use it.

mod chunks;
mod dispatch;
mod tracked;

#[cfg(test)]
mod tests;

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

use crate::tensor_batch::Batch;
use anneal_model::llm::CausalLm;

/// Tokens per chunk for `model`'s vocabulary: the memory plan's
/// ([`anneal_crds::memory_plan::footprint::logits_chunk_tokens`]), so one chunk's f32
/// logits are at most 128 MiB (220 tokens at Qwen2.5's vocabulary).
pub fn chunk_tokens<B: Backend>(model: &CausalLm<B>) -> usize {
    let vocab = model.embed_tokens.weight.dims()[0] as u64;
    anneal_crds::memory_plan::footprint::logits_chunk_tokens(vocab) as usize
}

/// Per position of a batch, `[rows, len]`, padding and prompt included: callers
/// weight them with `batch.weights`.
pub struct TargetScores<B: Backend> {
    /// `log p(target)`, with gradient.
    pub log_probs: Tensor<B, 2>,
    /// 1 where the logits' argmax is the target, else 0; no gradient.
    pub hits: Tensor<B, 2>,
}

impl<B: Backend> TargetScores<B> {
    /// From hidden states after the final norm `[rows, len, hidden]` and the head
    /// `[hidden, vocab]`, `chunk` tokens at a time.
    pub fn from_hidden(
        hidden: Tensor<B, 3>,
        head: Tensor<B, 2>,
        targets: Tensor<B, 2, Int>,
        chunk: usize,
    ) -> Self {
        let [rows, len, width] = hidden.dims();
        let scored = dispatch::score(
            hidden.reshape([rows * len, width]),
            head,
            targets.reshape([rows * len]),
            chunk,
        );
        Self {
            log_probs: scored.log_probs.reshape([rows, len]),
            hits: scored.hits.reshape([rows, len]),
        }
    }

    /// From whole logits `[rows, len, vocab]`: the unfused path, kept as the
    /// reference the fused one is tested against.
    pub fn from_logits(logits: Tensor<B, 3>, targets: Tensor<B, 2, Int>) -> Self {
        let [rows, len, _] = logits.dims();
        let targets = targets.reshape([rows, len, 1]);
        let hits = logits.clone().argmax(2).equal(targets.clone()).float(); // [rows, len, 1]
        let log_probs = log_softmax(logits, 2).gather(2, targets); // [rows, len, 1]
        Self {
            log_probs: log_probs.reshape([rows, len]),
            hits: hits.reshape([rows, len]),
        }
    }
}

/// `model`'s scores of `batch`'s targets: the forward pass to the final norm, then
/// the fused head and cross-entropy.
pub fn batch_scores<B: Backend>(model: &CausalLm<B>, batch: &Batch<B>) -> TargetScores<B> {
    let (hidden, _) = model.forward_hidden(batch.inputs.clone(), None); // [rows, len, hidden]
    hidden_scores(model, batch, hidden)
}

/// `model`'s scores of `batch`'s targets from the hidden states after the final norm,
/// `[rows, len, hidden]`: the fused head and cross-entropy alone, where a training
/// step's backward pass starts ([`crate::backward`]).
pub fn hidden_scores<B: Backend>(
    model: &CausalLm<B>,
    batch: &Batch<B>,
    hidden: Tensor<B, 3>,
) -> TargetScores<B> {
    let chunk = chunk_tokens(model);
    TargetScores::from_hidden(hidden, model.head(), batch.targets.clone(), chunk)
}
