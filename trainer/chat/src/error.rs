//! The one error type of the chat module: every message names the file and what is wrong with it.

use std::path::PathBuf;

/// Why a model folder's tokenizer or chat format could not be loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// A file that must be there could not be read (missing, unreadable).
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },

    /// A JSON file of the model folder is not valid JSON.
    #[error("{} is not valid JSON: {source}", path.display())]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },

    /// A field of a JSON file has a shape we cannot use.
    #[error("{}: field `{field}` {problem}", path.display())]
    Field {
        path: PathBuf,
        field: String,
        problem: String,
    },

    /// `tokenizer.json` exists but the tokenizers library rejects it.
    #[error("{} is not a tokenizer the `tokenizers` library can load: {source}", path.display())]
    LoadTokenizer {
        path: PathBuf,
        #[source]
        source: tokenizers::Error,
    },

    /// The chat template matches no format we render, or there is none and the architecture gives no hint.
    #[error(
        "cannot tell the chat format of architecture `{architecture}` from {template}: \
         expected a ChatML template (`<|im_start|>`) or a Llama-3 template (`<|start_header_id|>`), \
         or, without a template, a Qwen2*/Qwen3* or Llama* architecture"
    )]
    UnknownFormat {
        architecture: String,
        template: String,
    },

    /// The chat format needs a special token that the tokenizer does not have.
    #[error("{} has no token `{token}`, which the {format} chat format needs", path.display())]
    MissingToken {
        path: PathBuf,
        token: String,
        format: &'static str,
    },

    /// A token the tokenizer can produce, or an id generation stops on, has no row in
    /// the model's embedding: training would index past it.
    #[error(
        "{what} is token id {id}, outside the model's vocabulary of {vocab_size} ids (config.json vocab_size)"
    )]
    OutsideVocabulary {
        what: String,
        id: u32,
        vocab_size: usize,
    },

    /// The tokenizer failed on a text (for example an internal BPE error).
    #[error("cannot encode text with the tokenizer: {source}")]
    Encode {
        #[source]
        source: tokenizers::Error,
    },

    /// The tokenizer failed on a list of ids.
    #[error("cannot decode token ids with the tokenizer: {source}")]
    Decode {
        #[source]
        source: tokenizers::Error,
    },
}
