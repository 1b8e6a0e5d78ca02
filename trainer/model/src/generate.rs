//! Text generation with a KV cache: greedy or temperature / top-p sampling, stopping
//! on an end-of-sequence token, a stop string, or the token limit.

use burn::prelude::*;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::llm::{CausalLm, KvCache};

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

/// Picks the next token from one position's logits.
pub struct Sampler {
    temperature: f32,
    top_p: f32,
    rng: StdRng,
}

impl Sampler {
    pub fn new(params: &SamplingParams) -> Self {
        Self {
            temperature: params.temperature,
            top_p: params.top_p,
            rng: StdRng::seed_from_u64(params.seed),
        }
    }

    pub fn pick(&mut self, logits: &[f32]) -> u32 {
        if self.temperature <= 0.0 {
            return argmax(logits);
        }
        // Softmax at the temperature, in f64 so that tiny tails do not vanish.
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut probs: Vec<(u32, f64)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| {
                (
                    i as u32,
                    (f64::from(l - max) / f64::from(self.temperature)).exp(),
                )
            })
            .collect();
        probs.sort_by(|a, b| b.1.total_cmp(&a.1));
        let total: f64 = probs.iter().map(|p| p.1).sum();
        // Nucleus: keep the most likely tokens until their mass reaches top_p.
        let mut kept = 0;
        let mut mass = 0.0;
        for (_, p) in &probs {
            kept += 1;
            mass += p / total;
            if mass >= f64::from(self.top_p) {
                break;
            }
        }
        let probs = &probs[..kept];
        let kept_mass: f64 = probs.iter().map(|p| p.1).sum();
        let mut target = self.rng.random::<f64>() * kept_mass;
        for &(id, p) in probs {
            if target < p {
                return id;
            }
            target -= p;
        }
        probs[kept - 1].0
    }
}

/// The index of the largest value; the first one on ties, as torch's argmax.
pub fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best as u32
}

/// One generation advanced a token at a time: the prompt on the first step (with an
/// empty cache), then the last new token on each later one. [`generate`] drives it to
/// the end; the server steps many of them in turn, each with its own cache.
pub struct Decoding<B: Backend> {
    sampler: Sampler,
    cache: Option<KvCache<B>>,
    /// Ids the next step feeds the model: the prompt, then the previous new token.
    input: Vec<u32>,
    eos: Vec<u32>,
    max_new_tokens: usize,
    produced: usize,
}

/// What one [`Decoding::step`] gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// A new token (never an end-of-sequence one).
    Token(u32),
    /// Generation is over: an end-of-sequence token came (`Stop`), or the limit (`Length`).
    Finished(FinishReason),
}

impl<B: Backend> Decoding<B> {
    /// `prompt` must not be empty. Stop strings in `params` are the caller's to watch:
    /// they are about text, and the decoder sees only ids.
    pub fn new(prompt: &[u32], eos: &[u32], params: &SamplingParams) -> Self {
        Self {
            sampler: Sampler::new(params),
            cache: None,
            input: prompt.to_vec(),
            eos: eos.to_vec(),
            max_new_tokens: params.max_new_tokens,
            produced: 0,
        }
    }

    /// Positions in the cache so far (prompt and new tokens fed back).
    pub fn cached_len(&self) -> usize {
        self.cache.as_ref().map_or(0, KvCache::len)
    }

    /// Whether the next step is one new token after a cached prompt, the kind of step
    /// [`CausalLm::decode_rows`] runs for several generations at once.
    pub fn decodes_next(&self) -> bool {
        self.cache.is_some() && self.produced < self.max_new_tokens
    }

    /// Runs the model over the pending ids and picks the next token.
    pub fn step(&mut self, model: &CausalLm<B>) -> Step {
        if self.produced >= self.max_new_tokens {
            return Step::Finished(FinishReason::Length);
        }
        let device = model.embed_tokens.weight.device();
        let ids: Vec<i64> = self.input.iter().map(|&t| i64::from(t)).collect();
        let len = ids.len();
        let ids =
            Tensor::<B, 1, Int>::from_data(TensorData::new(ids, [len]), &device).reshape([1, len]);
        let (hidden, cache) = model.forward_hidden(ids, self.cache.take());
        let last = hidden.narrow(1, len - 1, 1); // [1, 1, hidden]
        let logits = model.logits(last).into_data().convert::<f32>();
        self.accept(cache, logits.as_slice::<f32>().expect("f32 logits"))
    }

    /// For a step taken together with other generations: the token to feed and the
    /// cache, to come back through [`Self::accept`]. Only when [`Self::decodes_next`].
    pub fn take_for_batch(&mut self) -> (u32, KvCache<B>) {
        let cache = self
            .cache
            .take()
            .expect("a decoding step follows the prompt");
        (self.input[0], cache)
    }

    /// Takes the extended cache and the next-token logits of a step, and picks the token.
    pub fn accept(&mut self, cache: KvCache<B>, logits: &[f32]) -> Step {
        self.cache = Some(cache);
        let token = self.sampler.pick(logits);
        if self.eos.contains(&token) {
            self.produced = self.max_new_tokens;
            return Step::Finished(FinishReason::Stop);
        }
        self.produced += 1;
        self.input = vec![token];
        Step::Token(token)
    }
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
    let mut decoding = Decoding::<B>::new(prompt, eos, params);
    let mut tokens = Vec::new();
    let mut stopped_at = None;
    let finish = loop {
        let token = match decoding.step(model) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_first_maximum() {
        assert_eq!(argmax(&[0.1, 3.0, 3.0, -1.0]), 1);
        let mut sampler = Sampler::new(&SamplingParams::default());
        assert_eq!(sampler.pick(&[0.0, 1.0, 5.0]), 2);
    }

    #[test]
    fn top_p_keeps_only_the_nucleus() {
        // Probabilities at T=1: ~0.867, ~0.117, ~0.016. With top_p 0.5 only token 0 survives.
        let params = SamplingParams {
            temperature: 1.0,
            top_p: 0.5,
            ..Default::default()
        };
        let mut sampler = Sampler::new(&params);
        for _ in 0..200 {
            assert_eq!(sampler.pick(&[2.0, 0.0, -2.0]), 0);
        }
    }

    #[test]
    fn sampling_follows_the_distribution_and_the_seed() {
        let params = SamplingParams {
            temperature: 1.0,
            top_p: 1.0,
            seed: 7,
            ..Default::default()
        };
        let draw = |params: &SamplingParams| {
            let mut sampler = Sampler::new(params);
            (0..4000)
                .map(|_| sampler.pick(&[0.0, 2f32.ln()]))
                .collect::<Vec<_>>()
        };
        let a = draw(&params);
        assert_eq!(a, draw(&params), "same seed, same tokens");
        // Token 1 has twice the probability of token 0: 2/3.
        let share = a.iter().filter(|&&t| t == 1).count() as f64 / a.len() as f64;
        assert!((share - 2.0 / 3.0).abs() < 0.03, "{share}");
        let other = SamplingParams { seed: 8, ..params };
        assert_ne!(a, draw(&other));
    }
}
