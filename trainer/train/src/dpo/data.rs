//! DPO data: each preference line tokenized twice, as the conversation followed by
//! the chosen reply and by the rejected one, with the loss mask on that final reply
//! only (earlier assistant turns are prompt here). Pairs where either side is over
//! the token limit are dropped and counted, never truncated.

use std::io::Read;

use anneal_crds::dataset::{DatasetKind, DatasetLimits, read_samples};

use crate::data::DataError;
use crate::tokenized::{DataItem, TokenizedSample};
use anneal_model::chat::ModelTokenizer;

/// One preference line as the model sees it: the same prompt with either reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreferencePair {
    /// Line in the dataset file, for messages.
    pub line: u64,
    pub chosen: TokenizedSample,
    pub rejected: TokenizedSample,
}

impl DataItem for PreferencePair {
    fn line(&self) -> u64 {
        self.line
    }

    /// Both sides run through the model.
    fn tokens(&self) -> usize {
        self.chosen.ids.len() + self.rejected.ids.len()
    }
}

/// What reading a preference dataset gave.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PreparedPairs {
    pub pairs: Vec<PreferencePair>,
    /// Pairs with either side longer than `max_tokens`.
    pub dropped_too_long: u64,
    /// Pairs with a reply that has no token to score (empty after tokenization).
    pub dropped_untrainable: u64,
}

/// Reads and tokenizes a preference dataset; any invalid line fails the whole read,
/// as for SFT.
pub fn prepare_pairs(
    reader: impl Read,
    tokenizer: &ModelTokenizer,
    max_tokens: usize,
) -> Result<PreparedPairs, DataError> {
    let mut prepared = PreparedPairs::default();
    for item in read_samples(reader, DatasetKind::Dpo, &DatasetLimits::default()) {
        let (line, sample) = item?;
        let sample = sample?;
        let tokenize_error =
            |source: anneal_model::chat::ChatError| DataError::Tokenize { line, source };
        // The rules guarantee both replies on a DPO line.
        let (Some(chosen), Some(rejected)) = (&sample.chosen, &sample.rejected) else {
            return Err(DataError::NoPreferencePair { line });
        };
        // The prompt as a generation would see it: everything before the reply's first token.
        let prompt_len = tokenizer
            .encode_chat(&sample.messages, true)
            .map_err(tokenize_error)?
            .ids
            .len();
        let encode = |reply: &anneal_crds::dataset::ChatMessage| {
            let mut messages = sample.messages.clone();
            messages.push(reply.clone());
            let encoded = tokenizer
                .encode_chat(&messages, false)
                .map_err(tokenize_error)?;
            Ok::<_, DataError>(reply_only(
                line,
                encoded.ids,
                encoded.assistant_mask,
                prompt_len,
            ))
        };
        let chosen = encode(chosen)?;
        let rejected = encode(rejected)?;
        if chosen.ids.len().max(rejected.ids.len()) > max_tokens {
            prepared.dropped_too_long += 1;
            continue;
        }
        if !has_scored_token(&chosen) || !has_scored_token(&rejected) {
            prepared.dropped_untrainable += 1;
            continue;
        }
        prepared.pairs.push(PreferencePair {
            line,
            chosen,
            rejected,
        });
    }
    if prepared.pairs.is_empty() {
        return Err(DataError::NothingLeft {
            what: "preference pair",
            too_long: prepared.dropped_too_long,
            max_tokens,
            untrainable: prepared.dropped_untrainable,
            why: "an empty reply",
        });
    }
    Ok(prepared)
}

/// The chat's tokens with the mask kept on the final reply only: a DPO score is the
/// log-probability of the reply given the whole conversation before it.
fn reply_only(line: u64, ids: Vec<u32>, mut mask: Vec<bool>, prompt_len: usize) -> TokenizedSample {
    for trained in mask.iter_mut().take(prompt_len) {
        *trained = false;
    }
    TokenizedSample { line, ids, mask }
}

/// The first token predicts nothing, so a scored token must come after it.
fn has_scored_token(sample: &TokenizedSample) -> bool {
    sample.mask.iter().skip(1).any(|&m| m)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn tiny_tokenizer() -> ModelTokenizer {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/models/anneal-tiny");
        ModelTokenizer::from_model_dir(&dir, "Qwen2ForCausalLM").unwrap()
    }

    /// The operator's estimate counts what training reads: the same samples and
    /// positions as `prepare` and `prepare_pairs` give, on the quick start's data with
    /// a limit that drops some.
    #[test]
    fn the_estimates_token_count_is_what_training_reads() {
        use anneal_crds::dataset::DatasetKind;
        use anneal_model::chat::dataset_tokens::count_tokens;

        let tokenizer = tiny_tokenizer();
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart");
        for max_tokens in [256, 60] {
            let sft = std::fs::read(examples.join("house-style.jsonl")).unwrap();
            let samples = crate::sft::data::prepare(&sft[..], &tokenizer, max_tokens).unwrap();
            assert!(max_tokens == 256 || samples.dropped_too_long > 0);
            let counted = count_tokens(&sft[..], DatasetKind::Sft, &tokenizer, max_tokens);
            let positions: usize = samples.samples.iter().map(|s| s.ids.len() - 1).sum();
            assert_eq!(
                (counted.samples, counted.positions),
                (samples.samples.len() as u64, positions as u64)
            );

            let dpo = std::fs::read(examples.join("house-style-dpo.jsonl")).unwrap();
            let pairs = prepare_pairs(&dpo[..], &tokenizer, max_tokens).unwrap();
            let counted = count_tokens(&dpo[..], DatasetKind::Dpo, &tokenizer, max_tokens);
            let positions: usize = (pairs.pairs.iter())
                .map(|p| p.chosen.ids.len() + p.rejected.ids.len() - 2)
                .sum();
            assert_eq!(
                (counted.samples, counted.positions),
                (pairs.pairs.len() as u64, positions as u64)
            );
        }
    }

    const PAIR: &str = r#"{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there"}, {"role": "user", "content": "Wind?"}], "chosen": {"role": "assistant", "content": "Good question! Wear a jacket."}, "rejected": {"role": "assistant", "content": "No."}}"#;

    #[test]
    fn only_the_final_reply_is_scored_and_the_prompt_is_shared() {
        let tokenizer = tiny_tokenizer();
        let prepared = prepare_pairs(format!("{PAIR}\n").as_bytes(), &tokenizer, 256).unwrap();
        assert_eq!(prepared.pairs.len(), 1);
        let pair = &prepared.pairs[0];
        assert_eq!(pair.line, 1);
        let first_scored = |s: &TokenizedSample| s.mask.iter().position(|&m| m).unwrap();
        let start = first_scored(&pair.chosen);
        assert_eq!(start, first_scored(&pair.rejected));
        assert_eq!(pair.chosen.ids[..start], pair.rejected.ids[..start]);
        // Scored: the reply's content and its end of turn; ChatML's trailing "\n" is not.
        let scored = |s: &TokenizedSample| {
            let ids: Vec<u32> = s
                .ids
                .iter()
                .zip(&s.mask)
                .filter(|(_, m)| **m)
                .map(|(i, _)| *i)
                .collect();
            tokenizer.decode(&ids, false).unwrap()
        };
        assert_eq!(
            scored(&pair.chosen),
            "Good question! Wear a jacket.<|im_end|>"
        );
        assert_eq!(scored(&pair.rejected), "No.<|im_end|>");
        // The earlier assistant turn ("Hello there") sits in the prompt, unscored.
        assert!(
            tokenizer
                .decode(&pair.chosen.ids[..start], false)
                .unwrap()
                .contains("Hello there")
        );
    }

    #[test]
    fn pairs_over_the_limit_are_dropped_and_counted() {
        let tokenizer = tiny_tokenizer();
        let prepared = prepare_pairs(format!("{PAIR}\n").as_bytes(), &tokenizer, 256).unwrap();
        let longer = prepared.pairs[0].chosen.ids.len();
        let shorter = prepared.pairs[0].rejected.ids.len();
        assert!(shorter < longer);
        // The longer side decides: a limit between the two drops the pair.
        let err =
            prepare_pairs(format!("{PAIR}\n").as_bytes(), &tokenizer, longer - 1).unwrap_err();
        assert!(err.to_string().contains("1 longer than maxTokens"), "{err}");
        let twice = format!("{PAIR}\n{PAIR}\n");
        let kept = prepare_pairs(twice.as_bytes(), &tokenizer, longer).unwrap();
        assert_eq!((kept.pairs.len(), kept.dropped_too_long), (2, 0));
    }

    #[test]
    fn an_sft_line_is_refused_with_its_line_number() {
        let tokenizer = tiny_tokenizer();
        let sft = r#"{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}"#;
        let err =
            prepare_pairs(format!("{PAIR}\n{sft}\n").as_bytes(), &tokenizer, 256).unwrap_err();
        assert!(err.to_string().starts_with("line 2:"), "{err}");
    }
}
