//! Text generation with a KV cache: greedy or temperature / top-p sampling, stopping
//! on an end-of-sequence token, a stop string, or the token limit.
//!
//! [`decoding`] advances generations a step at a time against a preallocated cache
//! (one or many at once), [`pick`] picks each row's token from its logits (reduced on
//! the device first), [`sampler`] is the pick itself; [`generate`] drives one
//! generation to its end.

pub mod decoding;
pub mod pick;
pub mod sampler;

use crate::llm::{CausalLm, KvSlots};
use burn::prelude::*;

pub use decoding::{Decoding, Step, decode_together};
pub use sampler::{Sampler, argmax};

/// How to pick tokens and when to stop.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplingParams {
    pub max_new_tokens: usize,
    /// 0 picks the most likely token every step (greedy).
    pub temperature: f32,
    /// Sample only from the smallest set of tokens whose probabilities add up to this.
    pub top_p: f32,
    pub seed: u64,
    /// Stop when the generated text contains one of these; the text ends before it.
    pub stop: Vec<String>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            max_new_tokens: 128,
            temperature: 0.0,
            top_p: 1.0,
            seed: 0,
            stop: Vec::new(),
        }
    }
}

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-sequence token or a stop string.
    Stop,
    /// `max_new_tokens` reached.
    Length,
}

/// The new tokens (the end-of-sequence token not included) and their text.
#[derive(Clone, Debug, PartialEq)]
pub struct Generation {
    pub token_ids: Vec<u32>,
    pub text: String,
    pub finish_reason: FinishReason,
}

/// Generates after `prompt`. `decode` turns new tokens into text (for stop strings and
/// the result); `on_token` sees each new token as it is produced.
pub fn generate<B: Backend>(
    model: &CausalLm<B>,
    prompt: &[u32],
    eos: &[u32],
    params: &SamplingParams,
    decode: impl Fn(&[u32]) -> String,
    mut on_token: impl FnMut(u32),
) -> Generation {
    let mut decoding = Decoding::new(prompt, eos, params);
    // One slot, room for the whole generation: never grown.
    let mut cache = KvSlots::new(model, 1, decoding.positions_needed());
    let mut tokens = Vec::new();
    let mut stopped_at = None;
    let finish = loop {
        let token = match decoding.step(model, 0, &mut cache) {
            Step::Token(token) => token,
            Step::Finished(reason) => break reason,
        };
        tokens.push(token);
        on_token(token);
        // Decoding the text so far costs O(tokens) each step: only stop strings need it.
        if !params.stop.is_empty() {
            let text = decode(&tokens);
            stopped_at = params
                .stop
                .iter()
                .filter_map(|s| text.find(s.as_str()))
                .min();
            if stopped_at.is_some() {
                break FinishReason::Stop;
            }
        }
    };
    let mut text = decode(&tokens);
    if let Some(cut) = stopped_at {
        text.truncate(cut);
    }
    Generation {
        token_ids: tokens,
        text,
        finish_reason: finish,
    }
}
