//! The core of causal attention: queries in blocks of rows, each block against the
//! keys up to its last row only, so most of the masked upper triangle of the scores
//! is never computed, stored or differentiated.
//!
//! Under autodiff, burn would keep every block's softmax output until the backward
//! pass: `[heads, T, T/2]` f32 per layer, the one activation that grows with the
//! square of the length. The training crate registers a tracked op instead
//! ([`register_blocked_attention`]) that keeps only q, k and v and recomputes each
//! block's scores in its backward pass, one block at a time, as FlashAttention's
//! backward does: attention's memory grows linearly with the length. Inference and
//! every backend without a registration run [`attend_blocks`].

use burn::prelude::*;
use burn::tensor::DType;

use super::precision::cast;
use super::softmax::row_softmax;
use super::tracked_ops::{register, registered};

/// One block of queries: rows `rows` of a forward pass's queries see keys `0..keys`;
/// `bias` (0 where a query may see a key, -inf where not; `[1, rows.len() * keys]`) hides
/// each row's later keys, and is `None` for a single row, which sees all of them.
#[derive(Clone, Debug)]
pub struct QueryBlock<B: Backend> {
    pub rows: std::ops::Range<usize>,
    pub keys: usize,
    pub bias: Option<Tensor<B, 2>>,
}

/// The rows per block for `seq` queries, as the memory plan counts them
/// (`anneal_crds::memory_plan::footprint::attention_block_rows`): 64 to 128, so up to
/// 1,024 queries at most 8 blocks and beyond that blocks of 128. Smaller blocks skip
/// more of the masked triangle and bound the scores alive at once (`[heads, 128, T]`,
/// 59 MB per sequence for Qwen2.5-7B's 28 heads at 4,096 tokens); larger ones make
/// fewer, larger products.
pub fn block_rows(seq: usize) -> usize {
    anneal_crds::memory_plan::footprint::attention_block_rows(seq as u64) as usize
}

/// The blocks for `seq` queries at positions `start..start + seq` (keys `0..start + seq`):
/// built once per forward pass and shared by every layer.
pub fn query_blocks<B: Backend>(
    seq: usize,
    start: usize,
    device: &B::Device,
) -> Vec<QueryBlock<B>> {
    let block_rows = block_rows(seq);
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
/// tokens the blocks hold 34 MB, which the host would otherwise fill and upload every
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

/// Attention over blocks for one backend: queries `[b, kv, groups, s, d]` (RoPE and
/// the softmax scale applied), keys and values `[b, kv, t, d]` -> `[b, kv, groups, s, d]`.
pub type BlockedAttention<B> =
    fn(Tensor<B, 5>, Tensor<B, 4>, Tensor<B, 4>, &[QueryBlock<B>]) -> Tensor<B, 5>;

/// Makes [`blocked_attention`] on backend `B` call `op` (the last registration wins).
pub fn register_blocked_attention<B: Backend>(op: BlockedAttention<B>) {
    register(op);
}

/// Attention of `queries` over `keys` and `values` in `blocks`: the registered op for
/// `B`, else [`attend_blocks`].
pub fn blocked_attention<B: Backend>(
    queries: Tensor<B, 5>,
    keys: Tensor<B, 4>,
    values: Tensor<B, 4>,
    blocks: &[QueryBlock<B>],
) -> Tensor<B, 5> {
    let op = registered::<BlockedAttention<B>>().unwrap_or(attend_blocks::<B>);
    op(queries, keys, values, blocks)
}

/// Each key/value head serves `groups` query heads in a row (transformers' `repeat_kv`
/// layout): queries `[b, kv, groups, s, d]` against keys and values broadcast over the
/// groups, so the repeated keys and values are never copied.
pub fn attend_blocks<B: Backend>(
    queries: Tensor<B, 5>,
    keys: Tensor<B, 4>,
    values: Tensor<B, 4>,
    blocks: &[QueryBlock<B>],
) -> Tensor<B, 5> {
    let k_t = keys.swap_dims(2, 3).unsqueeze_dim::<5>(2); // [b, kv, 1, d, t]
    let v_all = values.unsqueeze_dim::<5>(2); // [b, kv, 1, t, d]
    let outs: Vec<Tensor<B, 5>> = blocks
        .iter()
        .map(|block| {
            let q = queries
                .clone()
                .narrow(3, block.rows.start, block.rows.len());
            let dtype = q.dtype();
            let weights = cast(block_probabilities(q, k_t.clone(), block), dtype);
            weights.matmul(v_all.clone().narrow(3, 0, block.keys)) // [b, kv, groups, rows, d]
        })
        .collect();
    Tensor::cat(outs, 3) // [b, kv, groups, s, d]
}

/// The attention weights of one block's queries `[b, kv, groups, rows, d]` over the
/// keys it sees, from all keys transposed `k_t` `[b, kv, 1, d, t]`: `[b, kv, groups,
/// rows, seen]` in f32. The products run in the queries' dtype, the masking and
/// softmax in f32: a bf16 softmax loses the small weights that sum to most of a long
/// row.
pub fn block_probabilities<B: Backend>(
    q: Tensor<B, 5>,
    k_t: Tensor<B, 5>,
    block: &QueryBlock<B>,
) -> Tensor<B, 5> {
    let [batch, kv, groups, rows, _] = q.dims();
    let (heads, seen) = (kv * groups, block.keys);
    let scores = q.matmul(k_t.narrow(4, 0, seen)); // [b, kv, groups, rows, seen]
    let scores = cast(scores, DType::F32);
    let scores = match &block.bias {
        // One bias row per head's [rows, seen] block: the backend's fast broadcast.
        Some(bias) => (scores.reshape([batch * heads, rows * seen]) + bias.clone())
            .reshape([batch * heads * rows, seen]),
        None => scores.reshape([batch * heads * rows, seen]),
    };
    row_softmax(scores).reshape([batch, kv, groups, rows, seen])
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
        // Up to 1,024 tokens at most 8 blocks; beyond, blocks of 128 rows.
        assert_eq!(blocks(1024, 0).len(), 8);
        assert_eq!(block_rows(1000), 125);
        let long = query_blocks::<CpuBackend>(4096, 0, &Default::default());
        assert_eq!(long.len(), 32);
        assert!(long.iter().all(|b| b.rows.len() == 128));
    }
}
