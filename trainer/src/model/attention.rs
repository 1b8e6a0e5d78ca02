//! Grouped-query self-attention with a KV cache, as Qwen2 and Llama compute it.

use burn::prelude::*;
use burn::tensor::activation::softmax;

use super::projection::Projection;
use super::rope::Rope;

/// Keys and values of the positions seen so far, per layer: `[batch, kv_heads, seq, head_dim]`,
/// stored after RoPE and before the heads are repeated, so a cache is `kv_heads / heads` the size.
#[derive(Clone, Debug)]
pub struct LayerCache<B: Backend> {
    pub keys: Tensor<B, 4>,
    pub values: Tensor<B, 4>,
}

#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    pub q_proj: Projection<B>,
    pub k_proj: Projection<B>,
    pub v_proj: Projection<B>,
    pub o_proj: Projection<B>,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
}

impl<B: Backend> Attention<B> {
    /// `x`: `[batch, seq, hidden]` at positions `start..start + seq`, where `start` is the
    /// cache's length. Returns `[batch, seq, hidden]` and the cache extended by `seq`.
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        cos: &Tensor<B, 2>,
        sin: &Tensor<B, 2>,
        cache: Option<LayerCache<B>>,
    ) -> (Tensor<B, 3>, LayerCache<B>) {
        let [batch, seq, _] = x.dims();
        let (h, kv, d) = (self.num_heads, self.num_kv_heads, self.head_dim);

        let heads = |t: Tensor<B, 3>, n: usize| t.reshape([batch, seq, n, d]).swap_dims(1, 2);
        let q = heads(self.q_proj.forward(x.clone()), h); // [b, h, s, d]
        let k = heads(self.k_proj.forward(x.clone()), kv); // [b, kv, s, d]
        let v = heads(self.v_proj.forward(x), kv);
        let q = Rope::apply(q, cos, sin);
        let k = Rope::apply(k, cos, sin);

        let (keys, values) = match cache {
            Some(cache) => (
                Tensor::cat(vec![cache.keys, k], 2),
                Tensor::cat(vec![cache.values, v], 2),
            ),
            None => (k, v),
        };
        let total = keys.dims()[2];
        let start = total - seq;

        let k_all = repeat_kv(keys.clone(), h / kv); // [b, h, t, d]
        let v_all = repeat_kv(values.clone(), h / kv);
        let scores = q.matmul(k_all.swap_dims(2, 3)) / (d as f64).sqrt(); // [b, h, s, t]
        let mask =
            causal_mask::<B>(seq, total, start, &scores.device()).expand([batch, h, seq, total]);
        let scores = scores.mask_fill(mask, f32::NEG_INFINITY);
        let weights = softmax(scores, 3);
        let out = weights.matmul(v_all); // [b, h, s, d]
        let out = out.swap_dims(1, 2).reshape([batch, seq, h * d]);
        (self.o_proj.forward(out), LayerCache { keys, values })
    }
}

/// Each key/value head serves `groups` query heads in a row, as transformers'
/// `repeat_kv` lays them out.
fn repeat_kv<B: Backend>(x: Tensor<B, 4>, groups: usize) -> Tensor<B, 4> {
    if groups == 1 {
        return x;
    }
    let [b, kv, t, d] = x.dims();
    x.unsqueeze_dim::<5>(2) // [b, kv, 1, t, d]
        .expand([b, kv, groups, t, d])
        .reshape([b, kv * groups, t, d])
}

/// True where query `i` (at absolute position `start + i`) must not see key `j`.
fn causal_mask<B: Backend>(
    seq: usize,
    total: usize,
    start: usize,
    device: &B::Device,
) -> Tensor<B, 4, Bool> {
    let rows =
        Tensor::<B, 1, Int>::arange(start as i64..(start + seq) as i64, device).reshape([seq, 1]);
    let cols = Tensor::<B, 1, Int>::arange(0..total as i64, device).reshape([1, total]);
    cols.greater(rows).unsqueeze::<4>() // [1, 1, seq, total]
}
