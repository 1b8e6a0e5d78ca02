//! The tokenizer model (the vocabulary and merges: nearly all of a tokenizer's memory)
//! read once and shared. A [`crate::ModelTokenizer`] keeps two tokenizers (special-token
//! text matched, and not) and the operator holds one while it estimates jobs within its
//! memory limit, so both its reading and its copies count
//! (`cargo bench -p anneal-chat --bench tokenizer_memory`).
//! - Shared: two copies held 54 MiB at Qwen2.5's size, one holds 27.
//! - Read straight into the BPE model: the `tokenizers` crate reads a model through a
//!   `serde_json::Value` of it first, a peak of 124 MiB for Qwen2.5's 8.7 MB file and
//!   462 MiB for the 32 MB the operator accepts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use tokenizers::models::TrainerWrapper;
use tokenizers::models::bpe::BPE;
use tokenizers::{
    DecoderWrapper, Model, ModelWrapper, NormalizerWrapper, PostProcessorWrapper,
    PreTokenizedString, PreTokenizerWrapper, Token, TokenizerImpl, TruncationDirection,
};

/// A tokenizer whose clones share its model.
pub type SharedTokenizer = TokenizerImpl<
    SharedModel,
    NormalizerWrapper,
    PreTokenizerWrapper,
    PostProcessorWrapper,
    DecoderWrapper,
>;

/// `tokenizer.json`'s model (BPE, WordPiece, ...) behind an `Arc`.
#[derive(Debug, Clone)]
pub struct SharedModel(Arc<ModelWrapper>);

impl SharedModel {
    /// Whether `self` and `other` are one model in memory.
    #[cfg(test)]
    pub fn is_shared_with(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl<'de> Deserialize<'de> for SharedModel {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let json = Box::<RawValue>::deserialize(deserializer)?;
        let model = model_of(json.get()).map_err(D::Error::custom)?;
        Ok(Self(Arc::new(model)))
    }
}

/// A tokenizer model from its JSON: BPE (Qwen's, Llama 3's) read by its own
/// deserializer, any other kind as `tokenizers` reads it.
fn model_of(json: &str) -> serde_json::Result<ModelWrapper> {
    #[derive(Deserialize)]
    struct Kind<'a> {
        #[serde(rename = "type", borrow)]
        kind: Option<std::borrow::Cow<'a, str>>,
    }
    match serde_json::from_str::<Kind>(json)?.kind.as_deref() {
        Some("BPE") => serde_json::from_str::<BPE>(json).map(ModelWrapper::BPE),
        _ => serde_json::from_str(json),
    }
}

impl Model for SharedModel {
    type Trainer = TrainerWrapper;

    fn tokenize(&self, sequence: &str) -> tokenizers::Result<Vec<Token>> {
        self.0.tokenize(sequence)
    }

    fn token_to_id(&self, token: &str) -> Option<u32> {
        self.0.token_to_id(token)
    }

    fn id_to_token(&self, id: u32) -> Option<String> {
        self.0.id_to_token(id)
    }

    fn get_vocab(&self) -> HashMap<String, u32> {
        self.0.get_vocab()
    }

    fn get_vocab_size(&self) -> usize {
        self.0.get_vocab_size()
    }

    fn save(&self, folder: &Path, prefix: Option<&str>) -> tokenizers::Result<Vec<PathBuf>> {
        self.0.save(folder, prefix)
    }

    fn get_trainer(&self) -> TrainerWrapper {
        self.0.get_trainer()
    }

    fn tokenize_in_pretokenized(
        &self,
        pretokenized: &mut PreTokenizedString,
        truncation: Option<(usize, TruncationDirection)>,
    ) -> tokenizers::Result<()> {
        self.0.tokenize_in_pretokenized(pretokenized, truncation)
    }
}
