//! Softmax attention computed a block of query rows at a time, so that the f32
//! scores of one block stay within a byte budget however long the sequence: the
//! transformer's joint attention (4,608 tokens at 1024x1024) and the VAE's attention
//! over a latent image's pixels (16,384 at 1024x1024) both use it. It is the
//! language models' blocked attention with one query head per key head and no mask
//! (`anneal_model::llm::blocked_attention`): products in the operands' dtype, the
//! softmax in f32, and in training a backward pass that keeps q, k and v and
//! recomputes one block's scores at a time.

use burn::prelude::*;

use anneal_model::llm::blocked_attention::{QueryBlock, blocked_attention};

/// `softmax(q·k_t)·v`: `q` `[b, h, s, d]` with the scale already applied, `k_t`
/// `[b, h, d, t]`, `v` `[b, h, t, d]`; returns `[b, h, s, d]` in `v`'s dtype.
pub fn attend_in_blocks<B: Backend>(
    q: Tensor<B, 4>,
    k_t: Tensor<B, 4>,
    v: Tensor<B, 4>,
    scores_budget: usize,
) -> Tensor<B, 4> {
    let [batch, heads, seq, _] = q.dims();
    let keys = k_t.dims()[3];
    let rows = query_rows(batch * heads, keys, scores_budget).min(seq.max(1));
    let blocks: Vec<QueryBlock<B>> = (0..seq)
        .step_by(rows)
        .map(|first| QueryBlock {
            rows: first..(first + rows).min(seq),
            keys,
            causal: None,
        })
        .collect();
    // Each head its own key head: [b, h, 1, s, d] against [b, h, t, d].
    let queries = q.unsqueeze_dim::<5>(2);
    blocked_attention(queries, k_t.swap_dims(2, 3), v, &blocks).squeeze_dim::<4>(2)
}

/// Query rows per block so that `batch_heads` rows of `keys` f32 scores each stay
/// within `budget` bytes (at least one row).
fn query_rows(batch_heads: usize, keys: usize, budget: usize) -> usize {
    (budget / (4 * batch_heads * keys).max(1)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_blocks_stay_within_their_budget_at_flux1_sizes() {
        // 24 heads, 4,608 tokens: 606 rows of 4,608 f32 scores per head is ≤ 256 MiB.
        let rows = query_rows(24, 4608, 256 << 20);
        assert_eq!(rows, 606);
        assert!(24 * rows * 4608 * 4 <= 256 << 20);
        // The VAE's 128x128 latents under 64 MiB: 1,024 rows of 16,384 scores.
        assert_eq!(query_rows(1, 16384, 64 << 20), 1024);
    }
}
