//! SFT data: dataset lines to token ids with the assistant mask, samples over the
//! token limit dropped and counted.

use std::io::Read;

use anneal_crds::dataset::{DatasetKind, DatasetLimits, read_samples};

use crate::data::DataError;
use crate::tokenized::TokenizedSample;
use anneal_model::chat::ModelTokenizer;

/// What reading a dataset gave.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PreparedData {
    pub samples: Vec<TokenizedSample>,
    /// Samples longer than `max_tokens`, dropped, never truncated.
    pub dropped_too_long: u64,
    /// Samples with no trained token left (e.g. every assistant turn empty after tokenization).
    pub dropped_untrainable: u64,
}

/// Reads and tokenizes a dataset. Any invalid line fails the whole read: training
/// never starts on data the validator would refuse.
pub fn prepare(
    reader: impl Read,
    tokenizer: &ModelTokenizer,
    max_tokens: usize,
) -> Result<PreparedData, DataError> {
    let mut prepared = PreparedData::default();
    for item in read_samples(reader, DatasetKind::Sft, &DatasetLimits::default()) {
        let (line, sample) = item?;
        let sample = sample?;
        let encoded = tokenizer
            .encode_chat(&sample.messages, false)
            .map_err(|source| DataError::Tokenize { line, source })?;
        if encoded.ids.len() > max_tokens {
            prepared.dropped_too_long += 1;
            continue;
        }
        // The last token predicts nothing, so a trained token must appear after the first.
        if !encoded.assistant_mask.iter().skip(1).any(|&m| m) {
            prepared.dropped_untrainable += 1;
            continue;
        }
        prepared.samples.push(TokenizedSample {
            line,
            ids: encoded.ids,
            mask: encoded.assistant_mask,
        });
    }
    if prepared.samples.is_empty() {
        return Err(DataError::NothingLeft {
            what: "sample",
            too_long: prepared.dropped_too_long,
            max_tokens,
            untrainable: prepared.dropped_untrainable,
            why: "nothing to learn",
        });
    }
    Ok(prepared)
}
