//! The tokens a dataset makes after the chat template, counted as training reads it:
//! each line through [`ModelTokenizer::encode_chat`], samples longer than `maxTokens`
//! or with nothing to learn dropped, a DPO pair counting its chosen and rejected
//! sequences. For estimates (the operator's `status.estimate`): lines the validator
//! refuses, or a last line cut off by a bounded read, are skipped, not errors, since
//! validation reports them on its own.

use std::io::Read;

use anneal_crds::dataset::{ChatMessage, DatasetKind, DatasetLimits, read_samples};
use anneal_crds::estimate::EpochTokens;

use crate::ModelTokenizer;

/// The tokens of the samples in `reader`, a dataset of `kind` (SFT or DPO lines).
pub fn count_tokens(
    reader: impl Read,
    kind: DatasetKind,
    tokenizer: &ModelTokenizer,
    max_tokens: usize,
) -> EpochTokens {
    let mut tokens = EpochTokens::default();
    for item in read_samples(reader, kind, &DatasetLimits::default()) {
        let Ok((_, Ok(sample))) = item else {
            continue;
        };
        match (&sample.chosen, &sample.rejected) {
            (Some(chosen), Some(rejected)) if kind == DatasetKind::Dpo => {
                let lengths = pair_lengths(tokenizer, &sample.messages, chosen, rejected);
                if let Some((chosen, rejected)) = lengths
                    && chosen.max(rejected) <= max_tokens
                {
                    tokens.add(chosen as u64 - 1, true);
                    tokens.add(rejected as u64 - 1, false);
                }
            }
            _ if kind == DatasetKind::Dpo => {}
            _ => {
                let Ok(encoded) = tokenizer.encode_chat(&sample.messages, false) else {
                    continue;
                };
                // The last token predicts nothing: a trained token must follow the first.
                let learns = encoded.assistant_mask.iter().skip(1).any(|&m| m);
                if encoded.ids.len() <= max_tokens && learns {
                    tokens.add(encoded.ids.len() as u64 - 1, true);
                }
            }
        }
    }
    tokens
}

/// The lengths of prompt + chosen and prompt + rejected, when both replies add a token.
fn pair_lengths(
    tokenizer: &ModelTokenizer,
    prompt: &[ChatMessage],
    chosen: &ChatMessage,
    rejected: &ChatMessage,
) -> Option<(usize, usize)> {
    let prompt_len = tokenizer.encode_chat(prompt, true).ok()?.ids.len();
    let length = |reply: &ChatMessage| {
        let mut messages = prompt.to_vec();
        messages.push(reply.clone());
        let encoded = tokenizer.encode_chat(&messages, false).ok()?;
        let scored = (encoded.assistant_mask.iter().enumerate())
            .skip(prompt_len.max(1))
            .any(|(_, &m)| m);
        scored.then_some(encoded.ids.len())
    };
    Some((length(chosen)?, length(rejected)?))
}
