//! Joint attention: text and image tokens attend to each other in one sequence
//! (text first). In a double-stream block each stream has its own q/k/v and output
//! weights; in a single-stream block one set serves the joined sequence. Queries and
//! keys are RMS-normalized per head before the rotary embedding.

use burn::nn::RmsNorm;
use burn::prelude::*;

use anneal_model::llm::precision::rms_norm;

use super::linear::Linear2;
use super::rope::RopeTables;
use crate::blocked_attention::attend_in_blocks;

/// The q/k/v projections and per-head norms of one stream.
#[derive(Module, Debug)]
pub struct QkvStream<B: Backend> {
    pub to_q: Linear2<B>,
    pub to_k: Linear2<B>,
    pub to_v: Linear2<B>,
    pub norm_q: RmsNorm<B>,
    pub norm_k: RmsNorm<B>,
}

/// Queries, keys and values `[batch, seq, heads, head_dim]`, normalized, before RoPE.
pub struct Qkv<B: Backend> {
    pub q: Tensor<B, 4>,
    pub k: Tensor<B, 4>,
    pub v: Tensor<B, 4>,
}

impl<B: Backend> QkvStream<B> {
    /// `x`: `[batch, seq, dim]`.
    pub fn forward(&self, x: Tensor<B, 3>, heads: usize) -> Qkv<B> {
        let [batch, seq, dim] = x.dims();
        let split = |t: Tensor<B, 3>| t.reshape([batch, seq, heads, dim / heads]);
        Qkv {
            q: rms_norm(&self.norm_q, split(self.to_q.forward(x.clone()))),
            k: rms_norm(&self.norm_k, split(self.to_k.forward(x.clone()))),
            v: split(self.to_v.forward(x)),
        }
    }
}

impl<B: Backend> Qkv<B> {
    /// Text then image along the sequence.
    pub fn join(text: Self, image: Self) -> Self {
        Self {
            q: Tensor::cat(vec![text.q, image.q], 1),
            k: Tensor::cat(vec![text.k, image.k], 1),
            v: Tensor::cat(vec![text.v, image.v], 1),
        }
    }

    /// Scaled dot-product attention of every token to every token, after the rotary
    /// embedding: `[batch, seq, heads * head_dim]`.
    pub fn attend(self, rope: &RopeTables<B>) -> Tensor<B, 3> {
        let [batch, seq, heads, dim] = self.q.dims();
        let scale = 1.0 / (dim as f64).sqrt();
        let q = rope.apply(self.q).swap_dims(1, 2) * scale; // [b, h, s, d]
        let k_t = rope.apply(self.k).swap_dims(1, 2).swap_dims(2, 3); // [b, h, d, s]
        let v = self.v.swap_dims(1, 2); // [b, h, s, d]
        attend_in_blocks(q, k_t, v, SCORES_BUDGET)
            .swap_dims(1, 2)
            .reshape([batch, seq, heads * dim])
    }
}

/// One block's f32 scores at most: at 1024x1024 (4,608 tokens with T5's 512)
/// FLUX.1's 24 heads would hold 1.9 GiB of scores per image at once.
const SCORES_BUDGET: usize = 256 << 20;
