//! The burn model against Hugging Face transformers: logits at every position and
//! greedy continuations, on the small random-weight checkpoints that
//! scripts/reference/make_fixtures.py writes (Qwen2: f32, one file, 4.x config;
//! Llama 3: bf16, two shards, 5.x config with llama3 RoPE scaling).

use crate::support::{fixture, ids};
use anneal_model::backend::CpuBackend;
use anneal_model::generate::{SamplingParams, generate};
use anneal_model::llm::{CausalLm, load_model};
use burn::prelude::*;
use burn::tensor::DType;
use serde_json::Value;

/// Largest absolute logit difference accepted. transformers and burn compute in f32
/// with different summation orders; on these models logits span roughly ±10.
const LOGIT_TOLERANCE: f32 = 1e-4;

/// The same, with the base's weights and the activations between layers in bf16
/// (as CUDA runs the model; norms, RoPE, softmax and the logits in f32). bf16 keeps
/// 8 significant bits, a relative rounding of up to 2^-9 (0.2%) each time a tensor
/// is stored; the residual stream, every projection's input and output and the
/// head's input are rounded so, two layers deep, on logits spanning about ±10.
/// Measured: 0.21 (Qwen2) and 0.18 (Llama), about 2% of the range, as transformers
/// in bf16 would be. 0.5 (5%) leaves room; a missing cast panics on mixed dtypes
/// rather than drifting.
const BF16_LOGIT_TOLERANCE: f32 = 0.5;

fn load_as(model: &str, dtype: DType) -> (CausalLm<CpuBackend>, Value) {
    let dir = fixture(model);
    let (_, lm) = load_model::<CpuBackend>(&dir, &Default::default(), dtype).unwrap();
    (lm, crate::support::reference(model))
}

fn load(model: &str) -> (CausalLm<CpuBackend>, Value) {
    load_as(model, DType::F32)
}

fn check_logits(model: &str) {
    check_logits_as(model, DType::F32, LOGIT_TOLERANCE);
}

fn check_logits_as(model: &str, dtype: DType, tolerance: f32) {
    let (lm, reference) = load_as(model, dtype);
    let cases = reference["forward"].as_array().unwrap();
    assert!(!cases.is_empty());
    for case in cases {
        let input = ids(&case["input_ids"]);
        let len = input.len();
        let data: Vec<i64> = input.iter().map(|&t| i64::from(t)).collect();
        let tensor = Tensor::<CpuBackend, 1, Int>::from_data(
            TensorData::new(data, [len]),
            &Default::default(),
        )
        .reshape([1, len]);
        let logits = lm.forward(tensor);
        assert_eq!(logits.dtype(), DType::F32, "{model}: logits are f32");
        let logits = logits.into_data();
        let got = logits.as_slice::<f32>().unwrap();
        let want: Vec<f32> = case["logits"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|row| {
                row.as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap() as f32)
            })
            .collect();
        assert_eq!(got.len(), want.len(), "{model}: logits shape");
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        println!("{model} {dtype:?}: max |logit diff| {worst}");
        assert!(
            worst < tolerance,
            "{model} {dtype:?}: max |logit diff| {worst} for input {input:?}"
        );
    }
}

fn check_greedy(model: &str) {
    let (lm, reference) = load(model);
    let cases = reference["greedy"].as_array().unwrap();
    assert!(!cases.is_empty());
    for case in cases {
        let prompt = ids(&case["input_ids"]);
        let eos: Vec<u32> = case
            .get("eos_token_id")
            .and_then(Value::as_u64)
            .map(|e| e as u32)
            .into_iter()
            .collect();
        let params = SamplingParams {
            max_new_tokens: case["max_new_tokens"].as_u64().unwrap() as usize,
            ..SamplingParams::default()
        };
        let generation = generate(&lm, &prompt, &eos, &params, |_| String::new(), |_| {});
        let mut want = ids(&case["output_ids"]);
        // transformers keeps the end-of-sequence token in its output; ours reports it as the finish reason.
        if let Some(e) = eos.first()
            && want.last() == Some(e)
        {
            want.pop();
        }
        assert_eq!(
            generation.token_ids, want,
            "{model}: greedy continuation of {prompt:?}"
        );
    }
}

#[test]
fn qwen2_logits_match_transformers() {
    check_logits("qwen2-tiny");
}

#[test]
fn llama3_logits_match_transformers() {
    check_logits("llama3-tiny");
}

#[test]
fn qwen2_greedy_tokens_match_transformers() {
    check_greedy("qwen2-tiny");
}

#[test]
fn llama3_greedy_tokens_match_transformers() {
    check_greedy("llama3-tiny");
}

#[test]
fn qwen2_logits_with_a_bf16_base_match_transformers_within_bf16_tolerance() {
    // Stored in f32: converted to bf16 as it loads.
    check_logits_as("qwen2-tiny", DType::BF16, BF16_LOGIT_TOLERANCE);
}

#[test]
fn llama3_logits_with_a_bf16_base_match_transformers_within_bf16_tolerance() {
    // Stored in bf16: kept as it is stored.
    check_logits_as("llama3-tiny", DType::BF16, BF16_LOGIT_TOLERANCE);
}

/// Generation runs end to end on a bf16 base (the KV cache in bf16, sampling from f32
/// logits), and its weights are 2 bytes each. Greedy tokens may part from f32's where
/// two logits are within bf16's rounding, so only the first token is compared.
#[test]
fn generation_runs_on_a_bf16_base() {
    let (lm, reference) = load_as("qwen2-tiny", DType::BF16);
    let projection = &lm.layers[0].mlp.up_proj.base.weight;
    assert_eq!(projection.val().dtype(), DType::BF16);
    let case = &reference["greedy"][0];
    let prompt = ids(&case["input_ids"]);
    let params = SamplingParams {
        max_new_tokens: 8,
        ..SamplingParams::default()
    };
    let generation = generate(&lm, &prompt, &[], &params, |_| String::new(), |_| {});
    assert_eq!(generation.token_ids.len(), 8);
    assert_eq!(generation.token_ids[0], ids(&case["output_ids"])[0]);
}
