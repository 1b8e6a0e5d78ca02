//! Grouped-query self-attention with a KV cache, as Qwen2 and Llama compute it.

use burn::prelude::*;
use burn::tensor::DType;

use super::precision::cast;
use super::projection::Projection;
use super::rope::RopeTables;
use super::softmax::row_softmax;

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
    /// cache's length; `rope` and `blocks` are [`Rope::tables`](super::rope::Rope::tables)
    /// and [`query_blocks`] for those positions. Returns `[batch, seq, hidden]` and the
    /// cache extended by `seq`.
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        rope: &RopeTables<B>,
        blocks: &[QueryBlock<B>],
        cache: Option<LayerCache<B>>,
    ) -> (Tensor<B, 3>, LayerCache<B>) {
        let [batch, seq, _] = x.dims();
        let (h, kv, d) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let groups = h / kv;

        // RoPE on [batch, seq, heads, dim], the projections' own layout, before the heads
        // move forward: the rotation then runs on contiguous memory. The query tables
        // carry the softmax scale 1/sqrt(head_dim) (see `Rope::tables`).
        // The rotation runs in f32 and hands back the compute dtype (see `HeadTables::apply`).
        let q = rope
            .q
            .apply(self.q_proj.forward(x.clone()).reshape([batch, seq, h, d]));
        let k = rope
            .k
            .apply(self.k_proj.forward(x.clone()).reshape([batch, seq, kv, d]));
        let v = self.v_proj.forward(x).reshape([batch, seq, kv, d]);
        let (k, v) = (k.swap_dims(1, 2), v.swap_dims(1, 2)); // [b, kv, s, d]
        let dtype = v.dtype();

        let (keys, values) = match cache {
            Some(cache) => (
                Tensor::cat(vec![cache.keys, k], 2),
                Tensor::cat(vec![cache.values, v], 2),
            ),
            None => (k, v),
        };

        // Each key/value head serves `groups` query heads in a row (transformers'
        // `repeat_kv` layout): queries as [b, kv, groups, s, d] against keys and values
        // broadcast over the groups, so the repeated keys and values are never copied.
        let q = q
            .reshape([batch, seq, kv, groups, d])
            .permute([0, 2, 3, 1, 4]);
        let k_t = keys.clone().swap_dims(2, 3).unsqueeze_dim::<5>(2); // [b, kv, 1, d, t]
        let v_all = values.clone().unsqueeze_dim::<5>(2); // [b, kv, 1, t, d]
        let outs: Vec<Tensor<B, 5>> = blocks
            .iter()
            .map(|block| {
                let (rows, seen) = (block.rows.len(), block.keys);
                let q = q.clone().narrow(3, block.rows.start, rows);
                // The products in the compute dtype, the masking and softmax in f32: a
                // bf16 softmax loses the small weights that sum to most of a long row.
                let scores = q.matmul(k_t.clone().narrow(4, 0, seen)); // [b, kv, groups, rows, seen]
                let scores = cast(scores, DType::F32);
                let scores = match &block.bias {
                    // One bias row per head's [rows, seen] block: the backend's fast broadcast.
                    Some(bias) => (scores.reshape([batch * h, rows * seen]) + bias.clone())
                        .reshape([batch * h * rows, seen]),
                    None => scores.reshape([batch * h * rows, seen]),
                };
                let weights =
                    cast(row_softmax(scores), dtype).reshape([batch, kv, groups, rows, seen]);
                weights.matmul(v_all.clone().narrow(3, 0, seen)) // [b, kv, groups, rows, d]
            })
            .collect();
        let out = Tensor::cat(outs, 3) // [b, kv, groups, s, d]
            .reshape([batch, h, seq, d])
            .swap_dims(1, 2)
            .reshape([batch, seq, h * d]);
        (self.o_proj.forward(out), LayerCache { keys, values })
    }
}

/// Queries attend in blocks of rows, each block to the keys up to its last row only, so
/// most of the masked upper triangle of the scores is never computed, stored or
/// differentiated: with `n` blocks of a sequence the work is `(n + 1) / 2n` of the full
/// square. Blocks have at least `MIN_BLOCK_ROWS` rows and there are at most `MAX_BLOCKS`,
/// which bounds the operations a layer adds to the graph.
const MIN_BLOCK_ROWS: usize = 64;
const MAX_BLOCKS: usize = 8;

/// One block of queries: rows `rows` of a forward pass's queries see keys `0..keys`;
/// `bias` (0 where a query may see a key, -inf where not; `[1, rows.len() * keys]`) hides
/// each row's later keys, and is `None` for a single row, which sees all of them.
#[derive(Clone, Debug)]
pub struct QueryBlock<B: Backend> {
    pub rows: std::ops::Range<usize>,
    pub keys: usize,
    pub bias: Option<Tensor<B, 2>>,
}

/// The blocks for `seq` queries at positions `start..start + seq` (keys `0..start + seq`):
/// built once per forward pass and shared by every layer.
pub fn query_blocks<B: Backend>(
    seq: usize,
    start: usize,
    device: &B::Device,
) -> Vec<QueryBlock<B>> {
    let block_rows = seq.div_ceil(MAX_BLOCKS).max(MIN_BLOCK_ROWS);
    (0..seq)
        .step_by(block_rows)
        .map(|first| {
            let rows = first..(first + block_rows).min(seq);
            let keys = start + rows.end;
            let bias =
                (rows.len() > 1).then(|| causal_bias(start + first, rows.len(), keys, device));
            QueryBlock { rows, keys, bias }
        })
        .collect()
}

/// `[1, rows * keys]`: 0 where query row `i` (at position `first + i`) may see key
/// `j`, −∞ where `j` is later. Built on the device from two index ranges: at 4,096
/// tokens the blocks hold 64 MB, which the host would otherwise fill and upload every
/// forward pass.
fn causal_bias<B: Backend>(
    first: usize,
    rows: usize,
    keys: usize,
    device: &B::Device,
) -> Tensor<B, 2> {
    let positions = Tensor::<B, 1, Int>::arange(first as i64..(first + rows) as i64, device);
    let key_positions = Tensor::<B, 1, Int>::arange(0..keys as i64, device);
    let later = key_positions
        .reshape([1, keys])
        .greater(positions.reshape([rows, 1])); // [rows, keys]
    Tensor::<B, 2>::zeros([rows, keys], device)
        .mask_fill(later, f32::NEG_INFINITY)
        .reshape([1, rows * keys])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::CpuBackend;

    fn blocks(seq: usize, start: usize) -> Vec<(std::ops::Range<usize>, usize, Option<Vec<f32>>)> {
        query_blocks::<CpuBackend>(seq, start, &Default::default())
            .into_iter()
            .map(|b| {
                let bias = b.bias.map(|t| t.into_data().to_vec::<f32>().unwrap());
                (b.rows, b.keys, bias)
            })
            .collect()
    }

    #[test]
    fn each_query_sees_the_keys_up_to_its_own_position() {
        let inf = f32::NEG_INFINITY;
        assert_eq!(
            blocks(3, 0),
            vec![(
                0..3,
                3,
                Some(vec![0.0, inf, inf, 0.0, 0.0, inf, 0.0, 0.0, 0.0])
            )]
        );
        // Two new queries at positions 2 and 3 after two cached keys.
        assert_eq!(
            blocks(2, 2),
            vec![(0..2, 4, Some(vec![0.0, 0.0, 0.0, inf, 0.0, 0.0, 0.0, 0.0]))]
        );
        // One new token sees everything: no bias at all.
        assert_eq!(blocks(1, 4), vec![(0..1, 5, None)]);
    }

    #[test]
    fn long_sequences_split_into_blocks_that_see_only_earlier_keys() {
        let split = blocks(200, 0);
        let shapes: Vec<_> = split.iter().map(|(r, k, _)| (r.clone(), *k)).collect();
        assert_eq!(
            shapes,
            vec![
                (0..64, 64),
                (64..128, 128),
                (128..192, 192),
                (192..200, 200)
            ]
        );
        // Row 0 of the second block (position 64) sees keys 0..=64 and no further.
        let bias = split[1].2.as_ref().unwrap();
        assert!(bias[..65].iter().all(|v| *v == 0.0));
        assert!(bias[65..128].iter().all(|v| *v == f32::NEG_INFINITY));
        // At most MAX_BLOCKS blocks however long the sequence.
        assert_eq!(blocks(4096, 0).len(), MAX_BLOCKS);
    }
}
