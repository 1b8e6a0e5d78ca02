//! The fused path against the whole-logits one: values and gradients within 1e-5 of
//! the larger magnitude (max |fused − whole| / max |whole| per tensor), for chunk
//! sizes that do and do not divide the token count, masked tokens, a frozen and a
//! trained head, SFT's masked sum and DPO's per-row sums.

use burn::prelude::*;

use super::TargetScores;
use crate::train_backend::CpuTrainBackend;
use anneal_model::backend::CpuBackend;

type A = CpuTrainBackend;

const ROWS: usize = 3;
const LEN: usize = 5;
const WIDTH: usize = 8;
const VOCAB: usize = 50;

/// Deterministic values in [-scale, scale) from a small LCG.
fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

struct Inputs<B: Backend> {
    hidden: Tensor<B, 3>,
    head: Tensor<B, 2>,
    targets: Tensor<B, 2, Int>,
    /// 0 on the masked positions (prompt or padding).
    weights: Tensor<B, 2>,
}

fn inputs<B: Backend>() -> Inputs<B> {
    let device = Default::default();
    // Tokens 11..15 repeat the targets of 0..4: a chunk may hold one target twice.
    let targets: Vec<i64> = (0..ROWS * LEN).map(|i| (i * 7 % 11) as i64).collect();
    let weights: Vec<f32> = (0..ROWS * LEN)
        .map(|i| if i % 4 == 0 { 0.0 } else { 1.0 })
        .collect();
    Inputs {
        hidden: Tensor::from_data(
            TensorData::new(values(ROWS * LEN * WIDTH, 1, 2.0), [ROWS, LEN, WIDTH]),
            &device,
        ),
        head: Tensor::from_data(
            TensorData::new(values(WIDTH * VOCAB, 2, 1.0), [WIDTH, VOCAB]),
            &device,
        ),
        targets: Tensor::from_data(TensorData::new(targets, [ROWS, LEN]), &device),
        weights: Tensor::from_data(TensorData::new(weights, [ROWS, LEN]), &device),
    }
}

fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().unwrap()
}

/// max |a − b| / max |b|.
fn relative_gap(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b
        .iter()
        .fold(0f32, |m, v| m.max(v.abs()))
        .max(f32::MIN_POSITIVE);
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
        / scale
}

fn assert_close(what: &str, fused: &[f32], whole: &[f32]) {
    let gap = relative_gap(fused, whole);
    assert!(gap <= 1e-5, "{what}: relative gap {gap}");
}

/// The scores either way: `chunk: None` is the whole-logits path.
fn scores<B: Backend>(
    hidden: Tensor<B, 3>,
    head: Tensor<B, 2>,
    targets: Tensor<B, 2, Int>,
    chunk: Option<usize>,
) -> TargetScores<B> {
    match chunk {
        Some(chunk) => TargetScores::from_hidden(hidden, head, targets, chunk),
        None => TargetScores::from_logits(hidden.matmul(head.unsqueeze()), targets),
    }
}

/// SFT's masked NLL and hit count, and the gradients of the NLL for the hidden
/// states and (when `train_head`) the head.
fn sft(chunk: Option<usize>, train_head: bool) -> (f32, f32, Vec<f32>, Option<Vec<f32>>) {
    let inputs = inputs::<A>();
    let hidden = inputs.hidden.require_grad();
    let head = if train_head {
        inputs.head.require_grad()
    } else {
        inputs.head
    };
    let scored = scores(hidden.clone(), head.clone(), inputs.targets, chunk);
    let nll = scored.log_probs.neg().mul(inputs.weights.clone()).sum();
    let hits = scored.hits.mul(inputs.weights).sum().into_scalar();
    let grads = nll.backward();
    let d_hidden = host(hidden.grad(&grads).unwrap());
    let d_head = head.grad(&grads).map(host);
    assert_eq!(d_head.is_some(), train_head);
    (host(nll.inner())[0], hits, d_hidden, d_head)
}

#[test]
fn sft_loss_accuracy_and_gradients_match_the_whole_logits() {
    for train_head in [false, true] {
        let (nll, hits, d_hidden, d_head) = sft(None, train_head);
        assert!(nll > 1.0 && hits >= 0.0);
        // 15 tokens: chunks of 1, 5 and 15 divide them; 4, 7 and 1024 do not.
        for chunk in [1, 4, 5, 7, 15, 1024] {
            let (f_nll, f_hits, f_hidden, f_head) = sft(Some(chunk), train_head);
            assert_close(&format!("nll, chunk {chunk}"), &[f_nll], &[nll]);
            assert_eq!(f_hits, hits, "hits, chunk {chunk}");
            assert_close(&format!("d hidden, chunk {chunk}"), &f_hidden, &d_hidden);
            if let (Some(f), Some(w)) = (&f_head, &d_head) {
                assert_close(&format!("d head, chunk {chunk}"), f, w);
            }
        }
    }
}

/// A masked position's target gets no gradient: its hidden state's row is zero.
#[test]
fn masked_positions_get_no_gradient() {
    let (_, _, d_hidden, _) = sft(Some(4), false);
    for position in (0..ROWS * LEN).filter(|i| i % 4 == 0) {
        let row = &d_hidden[position * WIDTH..(position + 1) * WIDTH];
        assert!(
            row.iter().all(|v| *v == 0.0),
            "position {position}: {row:?}"
        );
    }
    assert!(d_hidden.iter().any(|v| *v != 0.0));
}

/// DPO's per-row sums, through a nonlinear function of them (as the DPO loss is),
/// and their gradient for the hidden states.
fn dpo(chunk: Option<usize>) -> (Vec<f32>, Vec<f32>) {
    let inputs = inputs::<A>();
    let hidden = inputs.hidden.require_grad();
    let scored = scores(hidden.clone(), inputs.head, inputs.targets, chunk);
    let rows = scored
        .log_probs
        .mul(inputs.weights)
        .sum_dim(1)
        .reshape([ROWS]); // [rows]
    let loss = burn::tensor::activation::log_sigmoid(rows.clone() * 0.1).sum();
    let grads = loss.backward();
    (host(rows.inner()), host(hidden.grad(&grads).unwrap()))
}

#[test]
fn dpo_row_sums_and_gradients_match_the_whole_logits() {
    let (sums, d_hidden) = dpo(None);
    for chunk in [2, 5, 6, 1024] {
        let (f_sums, f_hidden) = dpo(Some(chunk));
        assert_close(&format!("row sums, chunk {chunk}"), &f_sums, &sums);
        assert_close(&format!("d hidden, chunk {chunk}"), &f_hidden, &d_hidden);
    }
}

/// Without gradients (validation, DPO's reference) the plain chunked path runs.
#[test]
fn inference_backend_matches_the_whole_logits() {
    let whole = {
        let i = inputs::<CpuBackend>();
        scores(i.hidden, i.head, i.targets, None)
    };
    let i = inputs::<CpuBackend>();
    let fused = scores(i.hidden, i.head, i.targets, Some(4));
    assert_close("log probs", &host(fused.log_probs), &host(whole.log_probs));
    assert_eq!(host(fused.hits), host(whole.hits));
}

/// A tied head is the embeddings' transpose: the head's gradient reaches the
/// `[vocab, hidden]` embedding weight, transposed back.
#[test]
fn a_tied_head_trains_the_embeddings() {
    let grad_of_embeddings = |chunk| {
        let i = inputs::<A>();
        let embeddings = i.head.transpose().require_grad(); // [vocab, hidden]
        let scored = scores(i.hidden, embeddings.clone().transpose(), i.targets, chunk);
        let grads = scored.log_probs.mul(i.weights).sum().backward();
        let grad = embeddings.grad(&grads).unwrap();
        assert_eq!(grad.dims(), [VOCAB, WIDTH]);
        host(grad)
    };
    assert_close(
        "d embeddings",
        &grad_of_embeddings(Some(7)),
        &grad_of_embeddings(None),
    );
}

/// The trainer's training backend takes the tracked op (the plain path would pass
/// the tests above too, keeping every chunk's logits); inference backends do not.
#[test]
fn the_training_backend_takes_the_tracked_op() {
    use super::dispatch::same;
    use burn::backend::Autodiff;
    assert!(same::<A, Autodiff<CpuBackend>>());
    assert!(!same::<CpuBackend, Autodiff<CpuBackend>>());
}

/// Peak memory of one SFT loss and backward at Qwen2.5's vocabulary, for a manual
/// comparison under `/usr/bin/time -v` (its "Maximum resident set size"):
/// `ANNEAL_CE=whole|fused cargo test -p anneal-trainer --lib peak_memory -- --ignored`.
/// 2,048 tokens, hidden 256, vocabulary 151,936, frozen head.
#[test]
#[ignore = "a measurement, run by hand"]
fn peak_memory() {
    let (tokens, width, vocab) = (2048, 256, 151_936);
    let device = Default::default();
    let fused = std::env::var("ANNEAL_CE").as_deref() != Ok("whole");
    let hidden = Tensor::<A, 2>::from_data(
        TensorData::new(values(tokens * width, 3, 1.0), [tokens, width]),
        &device,
    )
    .reshape([1, tokens, width])
    .require_grad();
    let head = Tensor::<A, 2>::from_data(
        TensorData::new(values(width * vocab, 4, 0.1), [width, vocab]),
        &device,
    );
    let targets: Vec<i64> = (0..tokens).map(|i| (i * 7919 % vocab) as i64).collect();
    let targets = Tensor::<A, 2, Int>::from_data(TensorData::new(targets, [1, tokens]), &device);
    let chunk = fused
        .then_some(anneal_crds::memory_plan::footprint::logits_chunk_tokens(vocab as u64) as usize);
    let nll = scores(hidden.clone(), head, targets, chunk)
        .log_probs
        .neg()
        .sum();
    let grads = nll.backward();
    let grad = hidden.grad(&grads).unwrap();
    println!(
        "{}: nll {} grad sum {}",
        if fused { "fused" } else { "whole" },
        nll.into_scalar(),
        grad.abs().sum().into_scalar()
    );
}
