//! Causal attention as one op of burn's autodiff graph, registered with anneal-model's
//! `blocked_attention` for the training backends. Its forward is inference's
//! ([`attend_blocks`] on the inner backend, the same kernels); it keeps only the
//! queries, keys and values, and its backward recomputes each query block's softmax
//! and differentiates that block alone, FlashAttention's backward one block at a
//! time:
//!
//! ```text
//! P  = softmax(Q_b Kᵀ + mask)          dV += Pᵀ dO_b
//! dP = dO_b Vᵀ                         dS  = P ⊙ (dP − rowsum(dP ⊙ P))
//! dQ_b = dS K                          dK += dSᵀ Q_b
//! ```
//!
//! (the softmax scale is in the queries already; see `Rope::tables`). Burn's own
//! graph would keep every block's softmax output until the backward pass, `[heads,
//! T, T/2]` f32 per layer; this op's working set is one block's `[heads, rows, T]`,
//! so attention's memory grows linearly with the length. The price is the scores'
//! product and softmax computed once more in the backward pass.
//!
//! Precision as the forward's: products in the inputs' dtype (bf16 on CUDA), the
//! softmax and its gradient in f32, the keys' and values' gradients summed over the
//! blocks in f32 and cast back once.

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};

use crate::tracked_op::record;
use burn::prelude::*;
use burn::tensor::{DType, TensorPrimitive};

use anneal_model::llm::blocked_attention::{QueryBlock, attend_blocks, block_probabilities};
use anneal_model::llm::precision::cast;

#[derive(Debug)]
struct BlockedAttentionOp;

/// What the backward pass recomputes from, on the inner backend.
#[derive(Clone, Debug)]
struct Saved<I: Backend> {
    /// `[b, kv, groups, s, d]`
    queries: Tensor<I, 5>,
    /// `[b, kv, t, d]`
    keys: Tensor<I, 4>,
    /// `[b, kv, t, d]`
    values: Tensor<I, 4>,
    blocks: Vec<QueryBlock<I>>,
}

impl<I: Backend> Backward<I, 3> for BlockedAttentionOp {
    type State = Saved<I>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<I>(&ops.node);
        let grad = Tensor::<I, 5>::from_primitive(TensorPrimitive::Float(grad));
        let (dq, dk, dv) = attention_gradients(&ops.state, grad);
        let [q, k, v] = ops.parents;
        for (node, grad) in [
            (q, dq.into_primitive()),
            (k, dk.into_primitive()),
            (v, dv.into_primitive()),
        ] {
            if let Some(node) = node {
                grads.register::<I>(node.id, grad.tensor());
            }
        }
    }
}

/// The gradients of the queries, keys and values for `d_out` `[b, kv, groups, s, d]`,
/// the output's gradient, in the inputs' dtype.
fn attention_gradients<I: Backend>(
    saved: &Saved<I>,
    d_out: Tensor<I, 5>,
) -> (Tensor<I, 5>, Tensor<I, 4>, Tensor<I, 4>) {
    let Saved {
        queries,
        keys,
        values,
        blocks,
    } = saved;
    let [batch, kv, groups, _, head_dim] = queries.dims();
    let (dtype, device) = (queries.dtype(), queries.device());
    let d_out = cast(d_out, dtype);
    let k_t = keys.clone().swap_dims(2, 3).unsqueeze_dim::<5>(2); // [b, kv, 1, d, t]
    let mut d_keys = Tensor::<I, 4>::zeros(keys.shape(), &device); // f32
    let mut d_values = Tensor::<I, 4>::zeros(values.shape(), &device); // f32
    let mut d_queries = Vec::with_capacity(blocks.len());
    for block in blocks {
        let (first, rows, seen) = (block.rows.start, block.rows.len(), block.keys);
        let grouped_rows = groups * rows;
        let q = queries.clone().narrow(3, first, rows); // [b, kv, groups, rows, d]
        let d_o = d_out.clone().narrow(3, first, rows); // [b, kv, groups, rows, d]
        let seen_keys = keys.clone().narrow(2, 0, seen); // [b, kv, seen, d]
        let seen_values = values.clone().narrow(2, 0, seen); // [b, kv, seen, d]

        let p = block_probabilities(q.clone(), k_t.clone(), block); // [b, kv, groups, rows, seen] f32
        // dV = Σ over the group's heads and rows of Pᵀ dO.
        let d_v = cast(p.clone(), dtype)
            .reshape([batch, kv, grouped_rows, seen])
            .swap_dims(2, 3)
            .matmul(d_o.clone().reshape([batch, kv, grouped_rows, head_dim])); // [b, kv, seen, d]
        let d_p = cast(
            d_o.matmul(seen_values.swap_dims(2, 3).unsqueeze_dim::<5>(2)),
            DType::F32,
        ); // [b, kv, groups, rows, seen]
        let row_dot = (d_p.clone() * p.clone()).sum_dim(4); // [b, kv, groups, rows, 1]
        let d_s = cast(p * (d_p - row_dot), dtype); // [b, kv, groups, rows, seen]
        d_queries.push(d_s.clone().matmul(seen_keys.unsqueeze_dim::<5>(2))); // [b, kv, groups, rows, d]
        let d_k = d_s
            .reshape([batch, kv, grouped_rows, seen])
            .swap_dims(2, 3)
            .matmul(q.reshape([batch, kv, grouped_rows, head_dim])); // [b, kv, seen, d]

        let seen_range = [0..batch, 0..kv, 0..seen, 0..head_dim];
        d_keys = add_to_range(d_keys, seen_range.clone(), d_k);
        d_values = add_to_range(d_values, seen_range, d_v);
    }
    (
        Tensor::cat(d_queries, 3),
        cast(d_keys, dtype),
        cast(d_values, dtype),
    )
}

/// `sum` with `part` (any dtype) added, in f32, to its `range`.
fn add_to_range<I: Backend>(
    sum: Tensor<I, 4>,
    range: [std::ops::Range<usize>; 4],
    part: Tensor<I, 4>,
) -> Tensor<I, 4> {
    let current = sum.clone().slice(range.clone());
    sum.slice_assign(range, current + cast(part, DType::F32))
}

/// [`attend_blocks`] on `Autodiff<I, C>`, keeping only its inputs for the backward
/// pass.
pub fn tracked_blocked_attention<I: Backend, C: CheckpointStrategy>(
    queries: Tensor<Autodiff<I, C>, 5>,
    keys: Tensor<Autodiff<I, C>, 4>,
    values: Tensor<Autodiff<I, C>, 4>,
    blocks: &[QueryBlock<Autodiff<I, C>>],
) -> Tensor<Autodiff<I, C>, 5> {
    let (q, k, v) = (
        queries.into_primitive().tensor(),
        keys.into_primitive().tensor(),
        values.into_primitive().tensor(),
    );
    let saved = Saved {
        queries: Tensor::from_primitive(TensorPrimitive::Float(q.primitive.clone())),
        keys: Tensor::from_primitive(TensorPrimitive::Float(k.primitive.clone())),
        values: Tensor::from_primitive(TensorPrimitive::Float(v.primitive.clone())),
        blocks: blocks
            .iter()
            .map(|block| QueryBlock {
                rows: block.rows.clone(),
                keys: block.keys,
                causal: block.causal.clone().map(|triangle| triangle.inner()),
            })
            .collect(),
    };
    let out = attend_blocks(
        saved.queries.clone(),
        saved.keys.clone(),
        saved.values.clone(),
        &saved.blocks,
    )
    .into_primitive()
    .tensor();
    let out = record::<I, C, _, 3>(BlockedAttentionOp, [&q, &k, &v], || saved, out);
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use anneal_model::backend::CpuBackend;
    use anneal_model::llm::blocked_attention::query_blocks;
    use burn::tensor::Distribution;

    type A = Autodiff<CpuBackend>;

    /// Values and gradients of q, k and v match burn's own graph through the same
    /// blocks (whose backward keeps every block's softmax), for grouped heads, a
    /// length split into several blocks, and queries after cached keys.
    #[test]
    fn values_and_gradients_are_burns() {
        let _rng = crate::backend_rng_lock();
        // The graph the op replaces: the tracked softmax, whose forward is the inner
        // backend's kernel, as the op's is.
        crate::backward::register_training_ops();
        let device = Default::default();
        for (seq, start, kv, groups) in [(200, 0, 2, 3), (70, 30, 1, 4), (1, 9, 2, 2)] {
            A::seed(&device, seq as u64);
            let t = start + seq;
            let normal = Distribution::Normal(0.0, 1.0);
            let q = Tensor::<A, 5>::random([2, kv, groups, seq, 16], normal, &device);
            let k = Tensor::<A, 4>::random([2, kv, t, 16], normal, &device);
            let v = Tensor::<A, 4>::random([2, kv, t, 16], normal, &device);
            let weights = Tensor::<A, 5>::random([2, kv, groups, seq, 16], normal, &device);
            let blocks = query_blocks::<A>(seq, start, &device);
            let run = |tracked: bool| {
                let (q, k, v) = (
                    q.clone().require_grad(),
                    k.clone().require_grad(),
                    v.clone().require_grad(),
                );
                let out = match tracked {
                    true => tracked_blocked_attention(q.clone(), k.clone(), v.clone(), &blocks),
                    false => attend_blocks(q.clone(), k.clone(), v.clone(), &blocks),
                };
                let grads = (out.clone() * weights.clone()).sum().backward();
                let values = |t: Tensor<CpuBackend, 4>| t.into_data().to_vec::<f32>().unwrap();
                let dq = q.grad(&grads).unwrap().into_data().to_vec::<f32>().unwrap();
                (
                    out.into_data().to_vec::<f32>().unwrap(),
                    [
                        dq,
                        values(k.grad(&grads).unwrap()),
                        values(v.grad(&grads).unwrap()),
                    ],
                )
            };
            let ((ours, our_grads), (burns, burn_grads)) = (run(true), run(false));
            assert!(ours == burns, "the forward is attend_blocks itself");
            for (name, (a, b)) in ["q", "k", "v"]
                .iter()
                .zip(our_grads.iter().zip(&burn_grads))
            {
                crate::assert_matches_burn(&format!("d{name} at seq {seq}"), a, b, 1e-5);
            }
        }
    }
}
