//! Grouped-query self-attention with a KV cache, as Qwen2 and Llama compute it.

use burn::prelude::*;

use super::projection::Projection;
use super::rope::RopeTables;

use super::blocked_attention::blocked_attention;
pub use super::blocked_attention::{QueryBlock, query_blocks};
use super::packing::AttentionTables;

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
    /// cache's length; `rope` and `tables` are [`Rope::tables`](super::rope::Rope::tables)
    /// and the [`AttentionTables`] for those positions (for packed rows, without a
    /// cache). Returns `[batch, seq, hidden]` and the cache extended by `seq`.
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        rope: &RopeTables<B>,
        tables: &AttentionTables<B>,
        cache: Option<LayerCache<B>>,
    ) -> (Tensor<B, 3>, LayerCache<B>) {
        let [rows, len, _] = x.dims();
        let (h, kv, d) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let groups = h / kv;

        // RoPE on [batch, seq, heads, dim], the projections' own layout, before the heads
        // move forward: the rotation then runs on contiguous memory. The query tables
        // carry the softmax scale 1/sqrt(head_dim) (see `Rope::tables`).
        // The rotation runs in f32 and hands back the compute dtype (see `HeadTables::apply`).
        let q = rope
            .q
            .apply(self.q_proj.forward(x.clone()).reshape([rows, len, h, d]));
        let k = rope
            .k
            .apply(self.k_proj.forward(x.clone()).reshape([rows, len, kv, d]));
        let v = self.v_proj.forward(x).reshape([rows, len, kv, d]);
        // Packed rows attend as one row per sample (see `packing`).
        let (q, k, v) = match &tables.unpacking {
            Some(apart) => (
                apart.samples_apart(q),
                apart.samples_apart(k),
                apart.samples_apart(v),
            ),
            None => (q, k, v),
        };
        let [batch, seq, _, _] = q.dims();
        let (k, v) = (k.swap_dims(1, 2), v.swap_dims(1, 2)); // [b, kv, s, d]

        let (keys, values) = match cache {
            Some(cache) => (
                Tensor::cat(vec![cache.keys, k], 2),
                Tensor::cat(vec![cache.values, v], 2),
            ),
            None => (k, v),
        };

        // Queries as [b, kv, groups, s, d]: each key/value head serves `groups` query
        // heads in a row (see `blocked_attention::attend_blocks`).
        let q = q
            .reshape([batch, seq, kv, groups, d])
            .permute([0, 2, 3, 1, 4]);
        let out = blocked_attention(q, keys.clone(), values.clone(), &tables.blocks) // [b, kv, groups, s, d]
            .reshape([batch, h, seq, d])
            .swap_dims(1, 2)
            .reshape([batch, seq, h * d]);
        let out = match &tables.unpacking {
            Some(apart) => apart.back_in_rows(out, rows, len),
            None => out,
        };
        (self.o_proj.forward(out), LayerCache { keys, values })
    }
}
