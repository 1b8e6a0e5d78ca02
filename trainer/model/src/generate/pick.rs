//! The next token of every row of a decoding step, from logits `[rows, vocab]`.
//!
//! On a GPU the device reduces each row to what the pick needs: greedy rows their
//! argmax; sampled rows their [`CANDIDATES`] most likely tokens (a top-k reduction,
//! not a sort), the row's maximum and the softmax's normaliser. One transfer brings
//! that to the host, which samples ([`Sampler::pick_among`]). Only a row whose pick
//! reaches past its candidates (a wide nucleus, or a draw in the tail at top_p 1)
//! brings its whole row over, and picks from it on the host as
//! [`pick_on_host`] does: the same token either way. On the CPU the logits already
//! are in host memory, and every row is picked there the same way.

use burn::prelude::*;

use super::sampler::{Candidates, Sampler, pick_on_host};
use crate::backend::on_cpu_backend;

/// Candidates per sampled row. The top-k reduction keeps k values per thread, so k
/// stays small; a nucleus wider than this costs one row transfer.
pub const CANDIDATES: usize = 16;

/// The next token of row `i` of `logits` (`[rows, vocab]`, f32) with `samplers[i]`.
pub fn pick_rows<B: Backend>(logits: Tensor<B, 2>, samplers: &mut [&mut Sampler]) -> Vec<u32> {
    assert_eq!(logits.dims()[0], samplers.len(), "a sampler per row");
    if on_cpu_backend::<B>() {
        pick_on_cpu(logits, samplers)
    } else {
        pick_on_device(logits, samplers)
    }
}

fn pick_on_cpu<B: Backend>(logits: Tensor<B, 2>, samplers: &mut [&mut Sampler]) -> Vec<u32> {
    let vocab = logits.dims()[1];
    let data = logits.into_data();
    let values = data.as_slice::<f32>().expect("f32 logits");
    values
        .chunks(vocab)
        .zip(samplers.iter_mut())
        .map(|(row, sampler)| sampler.pick(row))
        .collect()
}

fn pick_on_device<B: Backend>(logits: Tensor<B, 2>, samplers: &mut [&mut Sampler]) -> Vec<u32> {
    let summary = summarize(logits.clone(), samplers, CANDIDATES);
    summary
        .into_iter()
        .zip(samplers.iter_mut())
        .enumerate()
        .map(|(row, (summary, sampler))| match summary {
            RowSummary::Greedy(token) => token,
            RowSummary::Sampled(candidates) => {
                let u = sampler.draw();
                sampler.pick_among(&candidates, u).unwrap_or_else(|| {
                    // The nucleus reaches past the candidates: the whole row, with the
                    // maximum and normaliser the device computed.
                    let whole = logits.clone().narrow(0, row, 1).into_data();
                    let whole = whole.as_slice::<f32>().expect("f32 logits");
                    pick_on_host(sampler, whole, candidates.max, Some(candidates.total), u)
                })
            }
        })
        .collect()
}

/// What the host gets of one row.
#[derive(Clone, Debug, PartialEq)]
enum RowSummary {
    Greedy(u32),
    /// The row's first candidates; those equal to the last one's logit are left out
    /// (tokens of that logit outside the top-k may come before them by id), so the
    /// candidates are always the start of the sorted row.
    Sampled(Candidates),
}

/// Each row's [`RowSummary`] from one transfer of `[rows, 3 + 2k]` values: the argmax,
/// the maximum, the normaliser, then k candidates' logits and ids (as f32, exact below
/// 2^24).
fn summarize<B: Backend>(
    logits: Tensor<B, 2>,
    samplers: &[&mut Sampler],
    k: usize,
) -> Vec<RowSummary> {
    let [rows, vocab] = logits.dims();
    let device = logits.device();
    // Greedy is one reduction: the lowest index among equal maxima, as `argmax`.
    let argmax_ids = logits.clone().argmax(1).float(); // [rows, 1]
    if samplers.iter().all(|s| s.is_greedy()) {
        let ids = argmax_ids.into_data().convert::<f32>();
        return ids
            .as_slice::<f32>()
            .unwrap()
            .iter()
            .map(|&t| RowSummary::Greedy(t as u32))
            .collect();
    }
    // The top-k reduction needs k below the vocabulary.
    let k = k.min(vocab - 1).max(1);
    let inverse_t: Vec<f32> = samplers
        .iter()
        .map(|s| {
            if s.is_greedy() {
                1.0
            } else {
                1.0 / s.temperature()
            }
        })
        .collect();
    let inverse_t =
        Tensor::<B, 1>::from_data(TensorData::new(inverse_t, [rows]), &device).reshape([rows, 1]);
    let max = logits.clone().max_dim(1); // [rows, 1]
    let total = ((logits.clone() - max.clone()) * inverse_t)
        .exp()
        .sum_dim(1); // [rows, 1]
    let ids = top_ids(logits.clone(), k); // [rows, k]
    let values = logits.gather(1, ids.clone()); // [rows, k]
    let packed = Tensor::cat(vec![argmax_ids, max, total, values, ids.float()], 1); // [rows, 3 + 2k]
    let packed = packed.into_data().convert::<f32>();
    let packed = packed.as_slice::<f32>().unwrap();
    packed
        .chunks(3 + 2 * k)
        .zip(samplers)
        .map(|(row, sampler)| {
            if sampler.is_greedy() {
                return RowSummary::Greedy(row[0] as u32);
            }
            let mut order: Vec<(u32, f32)> = row[3 + k..]
                .iter()
                .zip(&row[3..3 + k])
                .map(|(&id, &logit)| (id as u32, logit))
                .collect();
            order.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            let last = order[order.len() - 1].1;
            order.retain(|&(_, logit)| logit > last);
            RowSummary::Sampled(Candidates {
                ids: order.iter().map(|c| c.0).collect(),
                logits: order.iter().map(|c| c.1).collect(),
                max: row[1],
                total: f64::from(row[2]),
                complete: false,
            })
        })
        .collect()
}

/// The ids of each row's `k` largest logits, `[rows, k]`. CUDA reduces (burn's
/// `argtopk`, which keeps the lower index on ties); Flex has no top-k reduction and
/// sorts, which only this module's tests ask of it (the CPU picks on the host).
fn top_ids<B: Backend>(logits: Tensor<B, 2>, k: usize) -> Tensor<B, 2, Int> {
    if on_cpu_backend::<B>() {
        logits.sort_descending_with_indices(1).1.narrow(1, 0, k)
    } else {
        logits.argtopk(k, 1)
    }
}

#[cfg(test)]
mod tests;
