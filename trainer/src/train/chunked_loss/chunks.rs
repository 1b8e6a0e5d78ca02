//! The chunk-by-chunk arithmetic of the fused cross-entropy, on any backend: the
//! forward (each token's target log-probability and whether the argmax hit it) and
//! the backward (gradients of those log-probabilities for the hidden states and the
//! head), each holding one chunk's `[chunk, vocab]` logits at a time.

use burn::prelude::*;
use burn::tensor::IndexingUpdateOp;
use burn::tensor::activation::log_softmax;

/// What the forward gives per token.
pub struct Scored<B: Backend> {
    /// `log p(target)`, `[tokens]`.
    pub log_probs: Tensor<B, 1>,
    /// 1 where the logits' argmax is the target, else 0, `[tokens]`.
    pub hits: Tensor<B, 1>,
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
pub fn score<B: Backend>(
    hidden: Tensor<B, 2>,
    head: Tensor<B, 2>,
    targets: Tensor<B, 1, Int>,
    chunk: usize,
) -> Scored<B> {
    let [tokens, _] = hidden.dims();
    let (mut log_probs, mut hits) = (Vec::new(), Vec::new());
    for (start, len) in ranges(tokens, chunk) {
        let h = hidden.clone().narrow(0, start, len); // [c, hidden]
        let t = targets.clone().narrow(0, start, len).reshape([len, 1]); // [c, 1]
        let logits = h.matmul(head.clone()); // [c, vocab]
        // argmax takes the first of equal maxima, as the whole-logits path does.
        hits.push(
            logits
                .clone()
                .argmax(1)
                .equal(t.clone())
                .float()
                .reshape([len]),
        ); // [c]
        // The same log_softmax as the whole-logits path: each row's value is computed
        // exactly as there, only fewer rows at a time.
        log_probs.push(log_softmax(logits, 1).gather(1, t).reshape([len])); // [c]
    }
    if tokens == 0 {
        let empty = Tensor::zeros([0], &hidden.device());
        return Scored {
            log_probs: empty.clone(),
            hits: empty,
        };
    }
    Scored {
        log_probs: Tensor::cat(log_probs, 0),
        hits: Tensor::cat(hits, 0),
    }
}

/// Gradients of `Σ_i grad[i] · log p_i(target_i)`: for the hidden states `[tokens,
/// hidden]` when `for_hidden`, for the head `[hidden, vocab]` when `for_head`.
/// Per chunk, with `p = softmax(logits)` recomputed from `hidden` and `head`,
/// `d/d logits = grad · (onehot(target) − p)`.
pub fn gradients<B: Backend>(
    hidden: Tensor<B, 2>,
    head: Tensor<B, 2>,
    targets: Tensor<B, 1, Int>,
    grad: Tensor<B, 1>,
    chunk: usize,
    for_hidden: bool,
    for_head: bool,
) -> (Option<Tensor<B, 2>>, Option<Tensor<B, 2>>) {
    let [tokens, _] = hidden.dims();
    let head_t = head.clone().transpose(); // [vocab, hidden]
    let mut d_hidden = Vec::new();
    let mut d_head: Option<Tensor<B, 2>> = None;
    for (start, len) in ranges(tokens, chunk) {
        let h = hidden.clone().narrow(0, start, len); // [c, hidden]
        let t = targets.clone().narrow(0, start, len).reshape([len, 1]); // [c, 1]
        let g = grad.clone().narrow(0, start, len).reshape([len, 1]); // [c, 1]
        let logits = h.clone().matmul(head.clone()); // [c, vocab]
        let p = log_softmax(logits, 1).exp(); // [c, vocab]
        let d_logits = p
            .clone()
            .zeros_like()
            .scatter(1, t, g.clone(), IndexingUpdateOp::Add)
            - p * g; // [c, vocab]
        if for_head {
            let part = h.transpose().matmul(d_logits.clone()); // [hidden, vocab]
            d_head = Some(match d_head {
                Some(sum) => sum + part,
                None => part,
            });
        }
        if for_hidden {
            d_hidden.push(d_logits.matmul(head_t.clone())); // [c, hidden]
        }
    }
    let d_hidden = for_hidden.then(|| match d_hidden.is_empty() {
        true => hidden.zeros_like(),
        false => Tensor::cat(d_hidden, 0),
    });
    let d_head = match (for_head, d_head) {
        (true, None) => Some(head.zeros_like()),
        (_, sum) => sum,
    };
    (d_hidden, d_head)
}
