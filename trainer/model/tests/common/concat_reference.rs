//! Greedy decoding the way it ran before the preallocated cache: every step through
//! `CausalLm::forward_hidden`, which grows a per-generation cache by concatenation
//! and attends one sequence at a time. Computed live on the machine the tests run
//! on, so it pins the new path against the old one whatever that machine's rounding
//! (bf16 logits can tie exactly, and which way a tie breaks depends on the CPU).
//! Shared by anneal-model's `greedy_reference` test and anneal-serve's engine tests.

#![allow(dead_code)]

use anneal_model::generate::argmax;
use anneal_model::llm::CausalLm;
use burn::prelude::*;

/// `new_tokens` greedy ids after `prompt` (no end-of-sequence token).
pub fn concat_greedy<B: Backend>(
    model: &CausalLm<B>,
    prompt: &[u32],
    new_tokens: usize,
) -> Vec<u32> {
    concat_greedy_logits(model, prompt, new_tokens)
        .into_iter()
        .map(|(token, _)| token)
        .collect()
}

/// Each step's greedy id with the logits it was picked from.
pub fn concat_greedy_logits<B: Backend>(
    model: &CausalLm<B>,
    prompt: &[u32],
    new_tokens: usize,
) -> Vec<(u32, Vec<f32>)> {
    let device = model.embed_tokens.weight.device();
    let ids = |tokens: &[u32]| {
        let values: Vec<i64> = tokens.iter().map(|&t| i64::from(t)).collect();
        Tensor::<B, 1, Int>::from_data(TensorData::new(values, [tokens.len()]), &device)
            .reshape([1, tokens.len()])
    };
    let mut input = prompt.to_vec();
    let mut cache = None;
    let mut out = Vec::with_capacity(new_tokens);
    while out.len() < new_tokens {
        let (hidden, grown) = model.forward_hidden(ids(&input), cache.take());
        cache = Some(grown);
        let last = hidden.narrow(1, input.len() - 1, 1); // [1, 1, hidden]
        let logits = model.logits(last).into_data().convert::<f32>();
        let logits = logits.as_slice::<f32>().expect("f32 logits").to_vec();
        let token = argmax(&logits);
        out.push((token, logits));
        input = vec![token];
    }
    out
}
