//! Answers to the job's sample prompts at a checkpoint: greedy, so the change from
//! one checkpoint to the next is the model's and not the sampler's.

use anneal_crds::finetunejob::SamplePrompt;
use burn::prelude::*;

use super::checkpoint::SampleAnswer;
use anneal_model::chat::ModelTokenizer;
use anneal_model::generate::{SamplingParams, generate};
use anneal_model::llm::CausalLm;

/// New tokens per sample answer: enough to see the style, cheap at every checkpoint.
pub const SAMPLE_MAX_NEW_TOKENS: usize = 64;

pub fn answer_sample_prompts<B: Backend>(
    model: &CausalLm<B>,
    tokenizer: &ModelTokenizer,
    prompts: &[SamplePrompt],
) -> Vec<SampleAnswer> {
    let params = SamplingParams {
        max_new_tokens: SAMPLE_MAX_NEW_TOKENS,
        temperature: 0.0,
        ..Default::default()
    };
    prompts
        .iter()
        .map(|prompt| {
            let answer = match tokenizer.encode_chat(&prompt.messages, true) {
                Ok(encoded) => {
                    let decode = |ids: &[u32]| tokenizer.decode(ids, true).unwrap_or_default();
                    generate(
                        model,
                        &encoded.ids,
                        tokenizer.eos_token_ids(),
                        &params,
                        decode,
                        |_| {},
                    )
                    .text
                }
                Err(e) => format!("(prompt could not be encoded: {e})"),
            };
            SampleAnswer {
                prompt: prompt.clone(),
                answer,
            }
        })
        .collect()
}
