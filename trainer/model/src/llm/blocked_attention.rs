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
use super::softmax::{causal_row_softmax, row_softmax};
use super::tracked_ops::{register, registered};

/// One block of queries: rows `rows` of a forward pass's queries see keys `0..keys`.
/// Every key before the block's own positions is visible to all its rows; `causal`
/// (`[rows, rows]`: 0 on and below the diagonal, −∞ above) hides each row's later keys
/// among the block's own last `rows`, and is `None` for a single row, which sees all.
#[derive(Clone, Debug)]
pub struct QueryBlock<B: Backend> {
    pub rows: std::ops::Range<usize>,
    pub keys: usize,
    pub causal: Option<Tensor<B, 2>>,
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
/// built once per forward pass and shared by every layer. Blocks of the same height
/// share one triangle, so the mask is at most two `[128, 128]` tables at any length
/// (a mask per block would be `T²/2` f32: 2.1 GB at 32,768 tokens).
pub fn query_blocks<B: Backend>(
    seq: usize,
    start: usize,
    device: &B::Device,
) -> Vec<QueryBlock<B>> {
    let block_rows = block_rows(seq);
    let mut triangles: Vec<(usize, Tensor<B, 2>)> = Vec::new();
    (0..seq)
        .step_by(block_rows)
        .map(|first| {
            let rows = first..(first + block_rows).min(seq);
            let keys = start + rows.end;
            let causal = (rows.len() > 1).then(|| {
                let height = rows.len();
                match triangles.iter().find(|(h, _)| *h == height) {
                    Some((_, triangle)) => triangle.clone(),
                    None => {
                        let triangle = causal_triangle::<B>(height, device);
                        triangles.push((height, triangle.clone()));
                        triangle
                    }
                }
            });
            QueryBlock { rows, keys, causal }
        })
        .collect()
}

/// `[rows, rows]`: 0 where row `i` may see column `j` (`j <= i`), −∞ where `j` is
/// later. Built on the device from two index ranges.
fn causal_triangle<B: Backend>(rows: usize, device: &B::Device) -> Tensor<B, 2> {
    let positions = Tensor::<B, 1, Int>::arange(0..rows as i64, device);
    let later = positions
        .clone()
        .reshape([1, rows])
        .greater(positions.reshape([rows, 1])); // [rows, rows]
    Tensor::<B, 2>::zeros([rows, rows], device).mask_fill(later, f32::NEG_INFINITY)
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
    let scores = cast(scores, DType::F32).reshape([batch * heads, rows, seen]);
    let probabilities = match &block.causal {
        Some(triangle) => causal_row_softmax(scores, triangle),
        None => row_softmax(scores.reshape([batch * heads * rows, seen])),
    };
    probabilities.reshape([batch, kv, groups, rows, seen])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::CpuBackend;

    /// Each block's attention weights when every score is equal: row `i` of a block
    /// spreads evenly over the keys it may see and gives the later ones 0.
    fn uniform_weights(seq: usize, start: usize) -> Vec<(std::ops::Range<usize>, usize, Vec<f32>)> {
        let device = Default::default();
        let k_t = Tensor::<CpuBackend, 5>::zeros([1, 1, 1, 4, start + seq], &device);
        query_blocks::<CpuBackend>(seq, start, &device)
            .into_iter()
            .map(|block| {
                let q = Tensor::<CpuBackend, 5>::zeros([1, 1, 1, block.rows.len(), 4], &device);
                let p = block_probabilities(q, k_t.clone(), &block);
                (
                    block.rows,
                    block.keys,
                    p.into_data().to_vec::<f32>().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn each_query_sees_the_keys_up_to_its_own_position() {
        let (h, t) = (1.0 / 2.0, 1.0 / 3.0);
        assert_eq!(
            uniform_weights(3, 0),
            vec![(0..3, 3, vec![1.0, 0.0, 0.0, h, h, 0.0, t, t, t])]
        );
        // Two new queries at positions 2 and 3 after two cached keys.
        let q = 1.0 / 4.0;
        assert_eq!(
            uniform_weights(2, 2),
            vec![(0..2, 4, vec![t, t, t, 0.0, q, q, q, q])]
        );
        // One new token sees everything: no mask at all.
        assert_eq!(uniform_weights(1, 4), vec![(0..1, 5, vec![0.2; 5])]);
    }

    #[test]
    fn long_sequences_split_into_blocks_that_see_only_earlier_keys() {
        let split = uniform_weights(200, 0);
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
        // Row 0 of the second block (position 64) sees keys 0..=64 and no further;
        // its last row (position 127) sees all 128.
        let weights = &split[1].2;
        assert!(weights[..65].iter().all(|w| (w - 1.0 / 65.0).abs() < 1e-7));
        assert!(weights[65..128].iter().all(|w| *w == 0.0));
        assert!(
            weights[63 * 128..]
                .iter()
                .all(|w| (w - 1.0 / 128.0).abs() < 1e-7)
        );
        // Up to 1,024 tokens at most 8 blocks; beyond, blocks of 128 rows.
        assert_eq!(
            query_blocks::<CpuBackend>(1024, 0, &Default::default()).len(),
            8
        );
        assert_eq!(block_rows(1000), 125);
        let long = query_blocks::<CpuBackend>(4096, 0, &Default::default());
        assert_eq!(long.len(), 32);
        assert!(long.iter().all(|b| b.rows.len() == 128));
        // Blocks of one height share one [128, 128] triangle: the mask's memory does
        // not grow with the length.
        let triangle = long[31].causal.as_ref().unwrap();
        assert_eq!(triangle.dims(), [128, 128]);
    }
}
