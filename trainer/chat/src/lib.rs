//! Tokenizer and chat formatting for the trainer, driven by a Hugging Face model folder.
//!
//! [`ModelTokenizer`] loads `tokenizer.json`, tells the chat format (ChatML or Llama 3) from the
//! folder's chat template, and encodes conversations into token ids with a loss mask that is true
//! on assistant replies and their end-of-turn token only.
//!
//! We do not run the Jinja template: each format is rendered in code, piece by piece (special
//! tokens by id, each text piece encoded alone), so the mask is exact. For ordinary conversations
//! the ids equal transformers' `apply_chat_template` (checked against transformers 5.23 by
//! trainer/tests/integration/chat_reference.rs), with three deliberate differences:
//! - Llama 3 gets exactly one `<|begin_of_text|>`: the tokenizer's post-processor never runs on a
//!   chat, so there is never the double BOS that tokenizing rendered template text with special
//!   tokens gives (`tokenizer(apply_chat_template(.., tokenize=False))`, and `apply_chat_template`
//!   itself with some tokenizers and transformers versions).
//! - Special-token text inside message content (a literal `<|im_end|>` in a dataset) is
//!   tokenized as plain text, so data can never end a turn early or forge a role header.
//! - A ChatML reply starting with whitespace and a newline keeps the header's `\n` as its own
//!   token, as after the generation prompt at inference, where whole-text encoding would merge it.
//!
//! Llama 3.1, 3.2 and 3.3 templates write a system block before every conversation
//! ("Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n" and the system
//! message, if any); it is read from the template's text and rendered the same way, checked
//! against transformers on the template Llama-3.1-8B-Instruct ships
//! (trainer/tests/fixtures/reference/llama31-template/).

pub mod dataset_tokens;
mod error;
mod model_files;
mod render;
mod shared_model;
mod template;
#[cfg(test)]
mod tests;

use std::path::Path;

use anneal_crds::dataset::ChatMessage;

pub use error::ChatError;
pub use render::EncodedChat;
pub use template::{ChatFormat, DatedSystem, TodayDate};

pub use model_files::ModelFolder;
use model_files::{ModelFiles, TOKENIZER_FILE};
use render::{FormatTokens, Special};
use shared_model::SharedTokenizer;

/// A model folder's tokenizer together with its special tokens and chat format.
#[derive(Debug, Clone)]
pub struct ModelTokenizer {
    /// As loaded (minus truncation and padding): matches special-token text, for [`Self::encode`].
    tokenizer: SharedTokenizer,
    /// The same tokenizer with special-token matching off, for message content in
    /// [`Self::encode_chat`]; its vocabulary and merges are `tokenizer`'s, not a copy.
    content_tokenizer: SharedTokenizer,
    tokens: FormatTokens,
    eos_token_ids: Vec<u32>,
}

impl ModelTokenizer {
    /// Loads `dir/tokenizer.json` and the chat format from `dir`'s template (`chat_template.jinja`,
    /// else `tokenizer_config.json`'s `chat_template`), or from `architecture` (config.json's
    /// `architectures[0]`, e.g. `Qwen2ForCausalLM`) when the folder has no template.
    pub fn from_model_dir(dir: &Path, architecture: &str) -> Result<Self, ChatError> {
        Self::from_folder(ModelFolder::Dir(dir), architecture)
    }

    /// As [`Self::from_model_dir`], from a folder on disk or files already in memory.
    pub fn from_folder(folder: ModelFolder, architecture: &str) -> Result<Self, ChatError> {
        let tokenizer_path = folder.path(TOKENIZER_FILE);
        // Read the file ourselves so a missing file is reported as such, not as a parse error.
        let bytes = folder
            .bytes(TOKENIZER_FILE)?
            .ok_or_else(|| ChatError::Read {
                path: tokenizer_path.clone(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            })?;
        let tokenizer = serde_json::from_slice::<SharedTokenizer>(&bytes).map_err(|source| {
            ChatError::LoadTokenizer {
                path: tokenizer_path.clone(),
                source: source.into(),
            }
        })?;
        drop(bytes);
        let files = ModelFiles::read(folder)?;
        Self::new(tokenizer, &tokenizer_path, files, architecture)
    }

    fn new(
        mut tokenizer: SharedTokenizer,
        tokenizer_path: &Path,
        files: ModelFiles,
        architecture: &str,
    ) -> Result<Self, ChatError> {
        // Some tokenizer.json files carry truncation or padding settings; samples are never
        // silently truncated (over-long ones are dropped and counted), and batches pad themselves.
        tokenizer
            .with_truncation(None)
            .map_err(|source| ChatError::LoadTokenizer {
                path: tokenizer_path.to_owned(),
                source,
            })?;
        tokenizer.with_padding(None);
        let mut content_tokenizer = tokenizer.clone();
        content_tokenizer.set_encode_special_tokens(true);

        let format = template::detect_format(files.template.as_ref(), architecture)?;
        let special = |text: &'static str| {
            tokenizer
                .token_to_id(text)
                .map(|id| Special { id, text })
                .ok_or_else(|| ChatError::MissingToken {
                    path: tokenizer_path.to_owned(),
                    token: text.to_owned(),
                    format: format.name(),
                })
        };
        let tokens = match &format {
            ChatFormat::ChatMl { default_system } => FormatTokens::ChatMl {
                im_start: special(template::IM_START)?,
                im_end: special(template::IM_END)?,
                default_system: default_system.clone(),
            },
            ChatFormat::Llama3 { dated_system } => FormatTokens::Llama3 {
                begin_of_text: special(template::BEGIN_OF_TEXT)?,
                start_header: special(template::START_HEADER)?,
                end_header: special(template::END_HEADER)?,
                eot: special(template::EOT)?,
                dated_system: dated_system.clone(),
            },
        };

        // The end-of-turn token first (what a chat reply stops on), then generation_config.json's
        // ids; without those, tokenizer_config.json's eos_token if the tokenizer knows it.
        let mut eos_token_ids = vec![tokens.end_of_turn().id];
        let listed = files.generation_eos_ids.unwrap_or_else(|| {
            let config_eos = files
                .config_eos_token
                .as_deref()
                .and_then(|token| tokenizer.token_to_id(token));
            config_eos.into_iter().collect()
        });
        for id in listed {
            if !eos_token_ids.contains(&id) {
                eos_token_ids.push(id);
            }
        }
        Ok(Self {
            tokenizer,
            content_tokenizer,
            tokens,
            eos_token_ids,
        })
    }

    /// Checks that every id the tokenizer can produce and every end-of-sequence id is
    /// below `vocab_size`, the model's embedding rows (config.json's `vocab_size`).
    pub fn check_vocabulary(&self, vocab_size: usize) -> Result<(), ChatError> {
        let outside = |what: String, id: u32| {
            if (id as usize) < vocab_size {
                Ok(())
            } else {
                Err(ChatError::OutsideVocabulary {
                    what,
                    id,
                    vocab_size,
                })
            }
        };
        for &id in &self.eos_token_ids {
            outside(
                "an end-of-sequence id (generation_config.json eos_token_id)".to_owned(),
                id,
            )?;
        }
        let vocabulary = self.tokenizer.get_vocab(true);
        if let Some((token, &id)) = vocabulary.iter().max_by_key(|(_, id)| **id) {
            outside(format!("tokenizer.json's token {token:?}"), id)?;
        }
        Ok(())
    }

    /// Token ids of raw text, no chat template. `add_special_tokens` runs the tokenizer's
    /// post-processor (Llama 3's adds `<|begin_of_text|>`; Qwen's adds nothing).
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, ChatError> {
        self.tokenizer
            .encode(text, add_special_tokens)
            .map(|encoding| encoding.get_ids().to_vec())
            .map_err(|source| ChatError::Encode { source })
    }

    /// Text of token ids; `skip_special_tokens` leaves out special tokens such as `<|im_end|>`.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, ChatError> {
        self.tokenizer
            .decode(ids, skip_special_tokens)
            .map_err(|source| ChatError::Decode { source })
    }

    /// The ids generation stops on: the chat format's end-of-turn token first, then
    /// generation_config.json's `eos_token_id`s, without duplicates.
    pub fn eos_token_ids(&self) -> &[u32] {
        &self.eos_token_ids
    }

    /// The chat format found in the model folder.
    pub fn chat_format(&self) -> ChatFormat {
        match &self.tokens {
            FormatTokens::ChatMl { default_system, .. } => ChatFormat::ChatMl {
                default_system: default_system.clone(),
            },
            FormatTokens::Llama3 { dated_system, .. } => ChatFormat::Llama3 {
                dated_system: dated_system.clone(),
            },
        }
    }

    /// The tokenizer's vocabulary size, added tokens included. A model's embedding may have more
    /// rows than this (Qwen pads its vocabulary), never fewer.
    pub fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    /// Formats a conversation with the model's chat format and returns ids plus the loss mask:
    /// true on every assistant content token and the assistant turn's end-of-turn token
    /// (`<|im_end|>` / `<|eot_id|>`), false on system and user turns, role headers, and anything
    /// after the end-of-turn token (ChatML's `\n`). With `add_generation_prompt`, ends with the
    /// assistant header a reply is generated after. The conversation is not validated here: the
    /// dataset rules do that before tokenization.
    pub fn encode_chat(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<EncodedChat, ChatError> {
        let pieces = render::pieces(&self.tokens, messages, add_generation_prompt);
        render::encode_pieces(&pieces, |text| {
            self.content_tokenizer
                .encode(text, false)
                .map(|encoding| encoding.get_ids().to_vec())
                .map_err(|source| ChatError::Encode { source })
        })
    }

    /// The text the chat template renders for a conversation (what `apply_chat_template` with
    /// `tokenize=False` gives), for logs and checks. [`Self::encode_chat`] gives its tokens.
    pub fn render_chat(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> String {
        render::render_pieces(&render::pieces(
            &self.tokens,
            messages,
            add_generation_prompt,
        ))
    }
}
