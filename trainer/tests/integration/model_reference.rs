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

fn load(model: &str) -> (CausalLm<CpuBackend>, Value) {
    let dir = fixture(model);
    let (_, lm) = load_model::<CpuBackend>(&dir, &Default::default(), DType::F32).unwrap();
    (lm, crate::support::reference(model))
}

fn check_logits(model: &str) {
    let (lm, reference) = load(model);
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
        let logits = lm.forward(tensor).into_data().convert::<f32>();
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
        assert!(
            worst < LOGIT_TOLERANCE,
            "{model}: max |logit diff| {worst} for input {input:?}"
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
