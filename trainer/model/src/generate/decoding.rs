//! One generation advanced a step at a time against a slot of a [`KvSlots`] cache:
//! the prompt first (alone, into its empty slot), then one token a step, alone or
//! together with other generations ([`decode_together`]: one model step for all).

use burn::prelude::*;

use super::pick::pick_rows;
use super::sampler::Sampler;
use super::{FinishReason, SamplingParams};
use crate::llm::{CausalLm, KvSlots};
use crate::lora::bank::RowAdapters;

/// A generation's state between steps; its keys and values live in a cache slot the
/// caller owns.
pub struct Decoding {
    sampler: Sampler,
    /// Ids the next step feeds the model: the prompt, then the previous new token.
    input: Vec<u32>,
    prompt_len: usize,
    eos: Vec<u32>,
    max_new_tokens: usize,
    produced: usize,
    /// Positions in the slot (0 until the prompt ran).
    cached: usize,
}

/// What one step gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// A new token (never an end-of-sequence one).
    Token(u32),
    /// Generation is over: an end-of-sequence token came (`Stop`), or the limit (`Length`).
    Finished(FinishReason),
}

impl Decoding {
    /// `prompt` must not be empty. Stop strings in `params` are the caller's to watch:
    /// they are about text, and the decoder sees only ids.
    pub fn new(prompt: &[u32], eos: &[u32], params: &SamplingParams) -> Self {
        Self {
            sampler: Sampler::new(params),
            input: prompt.to_vec(),
            prompt_len: prompt.len(),
            eos: eos.to_vec(),
            max_new_tokens: params.max_new_tokens,
            produced: 0,
            cached: 0,
        }
    }

    /// Positions in the cache so far (prompt and new tokens fed back).
    pub fn cached_len(&self) -> usize {
        self.cached
    }

    /// The most positions this generation can put in a cache: the prompt and every
    /// new token (the last one is never fed back; one spare keeps this simple).
    pub fn positions_needed(&self) -> usize {
        self.prompt_len + self.max_new_tokens
    }

    /// Whether the next step is one new token after the cached prompt: the kind of
    /// step [`decode_together`] runs for several generations at once.
    pub fn decodes_next(&self) -> bool {
        self.cached > 0 && self.produced < self.max_new_tokens
    }

    /// The next step of this generation alone, in `slot` of `cache`: the prompt (the
    /// slot empty), one token, or the end at the limit (no model call).
    pub fn step<B: Backend>(
        &mut self,
        model: &CausalLm<B>,
        slot: usize,
        cache: &mut KvSlots<B>,
    ) -> Step {
        if self.produced >= self.max_new_tokens {
            return Step::Finished(FinishReason::Length);
        }
        if self.cached > 0 {
            return decode_together(model, &mut [(self, slot)], cache, None)[0];
        }
        let device = model.embed_tokens.weight.device();
        let len = self.input.len();
        let ids: Vec<i64> = self.input.iter().map(|&t| i64::from(t)).collect();
        let ids =
            Tensor::<B, 1, Int>::from_data(TensorData::new(ids, [len]), &device).reshape([1, len]);
        cache.reserve(self.positions_needed());
        let (hidden, prompt_cache) = model.forward_hidden(ids, None);
        cache.fill(slot, prompt_cache);
        let last = hidden.narrow(1, len - 1, 1); // [1, 1, hidden]
        let logits = model.logits(last); // [1, 1, vocab]
        let vocab = logits.dims()[2];
        let token = pick_rows(logits.reshape([1, vocab]), &mut [&mut self.sampler])[0];
        self.cached = len;
        self.accept(token)
    }

    fn accept(&mut self, token: u32) -> Step {
        if self.eos.contains(&token) {
            self.produced = self.max_new_tokens;
            return Step::Finished(FinishReason::Stop);
        }
        self.produced += 1;
        self.input = vec![token];
        Step::Token(token)
    }
}

/// One new token for each of `rows` (generations that [`Decoding::decodes_next`],
/// each with its slot) in one model step: see [`CausalLm::decode_rows`].
pub fn decode_together<B: Backend>(
    model: &CausalLm<B>,
    rows: &mut [(&mut Decoding, usize)],
    cache: &mut KvSlots<B>,
    adapters: Option<&RowAdapters<B>>,
) -> Vec<Step> {
    assert!(
        rows.iter().all(|(d, _)| d.decodes_next()),
        "every row decodes"
    );
    let tokens: Vec<u32> = rows.iter().map(|(d, _)| d.input[0]).collect();
    let slots: Vec<usize> = rows.iter().map(|(_, slot)| *slot).collect();
    let logits = model.decode_rows(&tokens, &slots, cache, adapters); // [rows, vocab]
    let mut samplers: Vec<&mut Sampler> = rows.iter_mut().map(|(d, _)| &mut d.sampler).collect();
    let picked = pick_rows(logits, &mut samplers);
    rows.iter_mut()
        .zip(picked)
        .map(|((decoding, _), token)| {
            decoding.cached += 1;
            decoding.accept(token)
        })
        .collect()
}
