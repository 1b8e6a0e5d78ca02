//! The chunk-by-chunk arithmetic of the fused cross-entropy, on any backend: the
//! forward (each token's target log-probability and whether the argmax hit it) and
//! the backward (gradients of those log-probabilities for the hidden states and the
//! head), each holding one chunk's `[chunk, vocab]` logits at a time. Every step on
//! a chunk-sized tensor consumes it, so a backend that updates unshared tensors in
//! place (Flex does) keeps about one chunk-sized buffer alive, not one per step.
//!
//! Mixed precision: the products with the head run in the head's dtype (bf16 on
//! CUDA), the logits and everything after them (softmax, log-probabilities, their
//! gradient) in f32; the gradients come back in their inputs' dtypes.

use burn::prelude::*;
use burn::tensor::{DType, IndexingUpdateOp};

use anneal_model::cpu_kernels;
use anneal_model::llm::precision::cast;

/// What the forward gives per token, `[tokens]` each.
pub struct Scored<B: Backend> {
    /// `log p(target)`.
    pub log_probs: Tensor<B, 1>,
    /// 1 where the logits' argmax is the target, else 0.
    pub hits: Tensor<B, 1>,
    /// Each row's softmax normalizer, which the backward reuses.
    pub normalizer: Normalizer<B>,
    /// When asked for: each token's `d log p(target) / d hidden`, `[tokens, hidden]`
    /// f32, made while the chunk's softmax is at hand (see [`score`]).
    pub hidden_gradient: Option<Tensor<B, 2>>,
}

/// `log_softmax(x) = (x − max) − log_sum`, per token `[tokens]`, as burn computes it.
#[derive(Clone, Debug)]
pub struct Normalizer<B: Backend> {
    pub max: Tensor<B, 1>,
    pub log_sum: Tensor<B, 1>,
}

/// The token ranges of the chunks: `chunk` tokens each, the last one shorter when
/// `chunk` does not divide `tokens`.
fn ranges(tokens: usize, chunk: usize) -> impl Iterator<Item = (usize, usize)> {
    let chunk = chunk.max(1);
    (0..tokens)
        .step_by(chunk)
        .map(move |start| (start, chunk.min(tokens - start)))
}

/// `hidden` `[tokens, hidden]`, `head` `[hidden, vocab]`, `targets` `[tokens]`.
/// On a backend with gradients this records a graph per chunk (which keeps every
/// chunk's logits); the tracked op runs it on the inner backend instead.
///
/// With `hidden_gradient`, each token's `d log p(target) / d hidden = head[:, t] −
/// Σ_v p_v · head[:, v]` is made from the chunk's softmax while it is at hand, so a
/// backward pass needs no second product with the head: it only scales these rows
/// by the upstream gradient ([`super::tracked`]). That product is a sixth of a 0.5B
/// model's training arithmetic at Qwen's vocabulary.
pub fn score<B: Backend>(
    hidden: Tensor<B, 2>,
    head: Tensor<B, 2>,
    targets: Tensor<B, 1, Int>,
    chunk: usize,
    hidden_gradient: bool,
) -> Scored<B> {
    let [tokens, width] = hidden.dims();
    let product = head.dtype();
    let head_t = head.clone().transpose(); // [vocab, hidden]
    let (mut log_probs, mut hits, mut max, mut log_sum) = (vec![], vec![], vec![], vec![]);
    let mut gradients = vec![];
    for (start, len) in ranges(tokens, chunk) {
        let h = cast(hidden.clone().narrow(0, start, len), product); // [c, hidden]
        let t = targets.clone().narrow(0, start, len); // [c]
        let t_column = t.clone().reshape([len, 1]); // [c, 1]
        let logits = cast(h.matmul(head.clone()), DType::F32); // [c, vocab], f32
        // argmax takes the first of equal maxima, as the whole-logits path does.
        hits.push(logits.clone().argmax(1).equal(t_column.clone()).float()); // [c, 1]
        // burn's log_softmax, `(x − m) − log Σ exp(x − m)`, but only the target's
        // entry of `x − m` is kept.
        let m = logits.clone().max_dim(1); // [c, 1]
        let picked = logits.clone().gather(1, t_column) - m.clone(); // [c, 1]
        let exps = cpu_kernels::exp(logits - m.clone()); // [c, vocab]
        let sum = exps.clone().sum_dim(1); // [c, 1]
        let s = sum.clone().log(); // [c, 1]
        if hidden_gradient {
            let p = exps / sum; // [c, vocab], in place of the exponentials
            let expected = cast(cast(p, product).matmul(head_t.clone()), DType::F32); // [c, hidden]
            let target_rows = cast(head_t.clone().select(0, t), DType::F32); // [c, hidden]
            gradients.push(target_rows - expected);
        }
        log_probs.push(picked - s.clone());
        max.push(m);
        log_sum.push(s);
    }
    let join = |parts: Vec<Tensor<B, 2>>| match parts.is_empty() {
        true => Tensor::zeros([0], &hidden.device()),
        false => Tensor::cat(parts, 0).reshape([tokens]),
    };
    let hidden_gradient = hidden_gradient.then(|| match gradients.is_empty() {
        true => Tensor::zeros([0, width], &hidden.device()),
        false => Tensor::cat(gradients, 0),
    });
    Scored {
        log_probs: join(log_probs),
        hits: join(hits),
        normalizer: Normalizer {
            max: join(max),
            log_sum: join(log_sum),
        },
        hidden_gradient,
    }
}

/// Gradients of `Σ_i grad[i] · log p_i(target_i)`: for the hidden states `[tokens,
/// hidden]` when `for_hidden`, for the head `[hidden, vocab]` when `for_head`. Per
/// chunk, with `p = softmax(logits)` recomputed from `hidden`, `head` and the
/// forward's normalizer, `d/d logits = grad · (onehot(target) − p)`; the one-hot part
/// is a row of the head per token, so it never takes a `[chunk, vocab]` tensor.
#[allow(clippy::too_many_arguments)]
pub fn gradients<B: Backend>(
    hidden: Tensor<B, 2>,
    head: Tensor<B, 2>,
    targets: Tensor<B, 1, Int>,
    normalizer: Normalizer<B>,
    grad: Tensor<B, 1>,
    chunk: usize,
    for_hidden: bool,
    for_head: bool,
) -> (Option<Tensor<B, 2>>, Option<Tensor<B, 2>>) {
    let [tokens, width] = hidden.dims();
    let [_, vocab] = head.dims();
    let (hidden_dtype, product) = (hidden.dtype(), head.dtype());
    let head_t = head.clone().transpose(); // [vocab, hidden]
    let mut d_hidden = Vec::new();
    let mut d_head: Option<Tensor<B, 2>> = None;
    for (start, len) in ranges(tokens, chunk) {
        let h = hidden.clone().narrow(0, start, len); // [c, hidden]
        let t = targets.clone().narrow(0, start, len); // [c]
        let column = |v: &Tensor<B, 1>| v.clone().narrow(0, start, len).reshape([len, 1]); // [c, 1]
        let g = column(&grad); // f32
        let logits = cast(cast(h.clone(), product).matmul(head.clone()), DType::F32); // [c, vocab]
        let p = cpu_kernels::exp((logits - column(&normalizer.max)) - column(&normalizer.log_sum)); // [c, vocab]
        let minus_gp = p * g.clone().neg(); // [c, vocab]: the −p part of d/d logits
        if for_head {
            // In f32 (the head is trained only in full training, where it is f32).
            let h = cast(h.clone(), DType::F32);
            // h^T · (g · onehot(t)): token i's g_i·h_i lands in the head's column t_i.
            let onehot_part = Tensor::<B, 2>::zeros([vocab, width], &h.device()).select_assign(
                0,
                t.clone(),
                h.clone() * g.clone(),
                IndexingUpdateOp::Add,
            ); // [vocab, hidden]
            let part = h.transpose().matmul(minus_gp.clone()) + onehot_part.transpose(); // [hidden, vocab]
            d_head = Some(match d_head {
                Some(sum) => sum + part,
                None => part,
            });
        }
        if for_hidden {
            // (g · onehot(t)) · head^T is token i's head column t_i, times g_i.
            let onehot_part = cast(head_t.clone().select(0, t), DType::F32) * g; // [c, hidden]
            // The product in the head's dtype, as in the forward.
            let minus_gp_head = cast(cast(minus_gp, product).matmul(head_t.clone()), DType::F32);
            d_hidden.push(minus_gp_head + onehot_part); // [c, hidden], f32
        }
    }
    let d_hidden = for_hidden.then(|| match d_hidden.is_empty() {
        true => hidden.zeros_like(),
        false => cast(Tensor::cat(d_hidden, 0), hidden_dtype),
    });
    let d_head = match (for_head, d_head) {
        (true, None) => Some(head.zeros_like()),
        (_, sum) => sum.map(|d| cast(d, product)),
    };
    (d_hidden, d_head)
}
