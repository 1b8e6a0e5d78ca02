//! Prompts to token ids as FluxPipeline tokenizes them: CLIP's tokenizer padded and
//! truncated to its `model_max_length` (77), T5's to the pipeline's
//! `max_sequence_length` (512 by default), both with their start/end tokens and
//! padded on the right. FLUX.1-dev ships CLIP's tokenizer as `vocab.json` and
//! `merges.txt` only; it is built here the way transformers' `CLIPTokenizer` builds
//! it (NFC, whitespace runs to one space, lower case, CLIP's word split, byte-level
//! BPE with `</w>` word ends, start and end tokens around the text).

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use tokenizers::Tokenizer;
use tokenizers::utils::padding::{PaddingDirection, PaddingParams, PaddingStrategy};
use tokenizers::utils::truncation::{TruncationDirection, TruncationParams, TruncationStrategy};

/// Why a tokenizer could not be loaded or a prompt not encoded.
#[derive(Debug, thiserror::Error)]
pub enum TokenizeError {
    #[error("{}: {message}", path.display())]
    Files { path: PathBuf, message: String },
    #[error("tokenizing the prompt: {0}")]
    Encode(String),
}

/// A tokenizer that gives every prompt exactly `max_length` ids.
pub struct PromptTokenizer {
    tokenizer: Tokenizer,
    pub max_length: usize,
}

/// The special tokens and length limit a `tokenizer_config.json` (or
/// `special_tokens_map.json`) names.
struct TokenizerConfig {
    bos: Option<String>,
    eos: Option<String>,
    pad: Option<String>,
    unk: Option<String>,
    model_max_length: Option<usize>,
}

impl PromptTokenizer {
    /// CLIP's tokenizer from a `tokenizer/` folder: `tokenizer.json` when there is
    /// one, else `vocab.json` and `merges.txt`; `model_max_length` ids (77 unless the
    /// config says otherwise).
    pub fn load_clip(dir: &Path) -> Result<Self, TokenizeError> {
        let config = read_config(dir)?;
        let tokenizer = if dir.join("tokenizer.json").exists() {
            from_file(&dir.join("tokenizer.json"))?
        } else {
            clip_from_vocab_and_merges(dir, &config)?
        };
        let max_length = config.model_max_length.unwrap_or(77);
        let pad = config.pad.as_deref().unwrap_or("<|endoftext|>");
        Self::new(tokenizer, max_length, pad, dir)
    }

    /// T5's tokenizer from a `tokenizer_2/` folder's `tokenizer.json`, giving
    /// `max_length` ids.
    pub fn load_t5(dir: &Path, max_length: usize) -> Result<Self, TokenizeError> {
        let config = read_config(dir)?;
        let tokenizer = from_file(&dir.join("tokenizer.json"))?;
        let pad = config.pad.as_deref().unwrap_or("<pad>");
        Self::new(tokenizer, max_length, pad, dir)
    }

    fn new(
        mut tokenizer: Tokenizer,
        max_length: usize,
        pad: &str,
        dir: &Path,
    ) -> Result<Self, TokenizeError> {
        let pad_id = tokenizer
            .token_to_id(pad)
            .ok_or_else(|| TokenizeError::Files {
                path: dir.to_path_buf(),
                message: format!("the padding token {pad:?} is not in the vocabulary"),
            })?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(|e| TokenizeError::Files {
                path: dir.to_path_buf(),
                message: e.to_string(),
            })?;
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::Fixed(max_length),
            direction: PaddingDirection::Right,
            pad_to_multiple_of: None,
            pad_id,
            pad_type_id: 0,
            pad_token: pad.to_owned(),
        }));
        Ok(Self {
            tokenizer,
            max_length,
        })
    }

    /// Each prompt's `max_length` ids, with start/end tokens, cut at the end when longer.
    /// Tokens of `prompt` without padding or truncation (with the end-of-sequence
    /// token the encoder adds).
    pub fn count_uncut(&self, prompt: &str) -> Result<usize, TokenizeError> {
        let mut whole = self.tokenizer.clone();
        whole
            .with_truncation(None)
            .map_err(|e| TokenizeError::Encode(e.to_string()))?;
        whole.with_padding(None);
        let encoding = whole
            .encode(prompt, true)
            .map_err(|e| TokenizeError::Encode(e.to_string()))?;
        Ok(encoding.get_ids().len())
    }

    pub fn encode(&self, prompts: &[&str]) -> Result<Vec<Vec<u32>>, TokenizeError> {
        let encodings = self
            .tokenizer
            .encode_batch(prompts.to_vec(), true)
            .map_err(|e| TokenizeError::Encode(e.to_string()))?;
        Ok(encodings.iter().map(|e| e.get_ids().to_vec()).collect())
    }
}

fn from_file(path: &Path) -> Result<Tokenizer, TokenizeError> {
    Tokenizer::from_file(path).map_err(|e| TokenizeError::Files {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// `tokenizer_config.json` merged over `special_tokens_map.json`; either may be absent.
fn read_config(dir: &Path) -> Result<TokenizerConfig, TokenizeError> {
    let mut merged = serde_json::Map::new();
    for name in ["special_tokens_map.json", "tokenizer_config.json"] {
        let path = dir.join(name);
        if !path.exists() {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|e| TokenizeError::Files {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let value: Value = serde_json::from_str(&text).map_err(|e| TokenizeError::Files {
            path: path.clone(),
            message: e.to_string(),
        })?;
        if let Value::Object(map) = value {
            merged.extend(map);
        }
    }
    // A token is a string or `{"content": ...}`.
    let token = |key: &str| match merged.get(key) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Object(o)) => o.get("content").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    };
    Ok(TokenizerConfig {
        bos: token("bos_token"),
        eos: token("eos_token"),
        pad: token("pad_token"),
        unk: token("unk_token"),
        // Tokenizers without a limit save a huge number here; only a real one counts.
        model_max_length: merged
            .get("model_max_length")
            .and_then(Value::as_u64)
            .filter(|&n| n <= 1 << 20)
            .map(|n| n as usize),
    })
}

/// CLIP's tokenizer from `vocab.json` and `merges.txt`, as transformers builds it.
fn clip_from_vocab_and_merges(
    dir: &Path,
    config: &TokenizerConfig,
) -> Result<Tokenizer, TokenizeError> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).map_err(|e| TokenizeError::Files {
            path,
            message: format!(
                "{e} (a CLIP tokenizer needs tokenizer.json, or vocab.json and merges.txt)"
            ),
        })
    };
    let vocab: Value =
        serde_json::from_str(&read("vocab.json")?).map_err(|e| TokenizeError::Files {
            path: dir.join("vocab.json"),
            message: e.to_string(),
        })?;
    let merges: Vec<String> = read("merges.txt")?
        .lines()
        .filter(|line| !line.starts_with("#version") && !line.trim().is_empty())
        .map(str::to_owned)
        .collect();
    let bos = config
        .bos
        .clone()
        .unwrap_or_else(|| "<|startoftext|>".into());
    let eos = config.eos.clone().unwrap_or_else(|| "<|endoftext|>".into());
    let unk = config.unk.clone().unwrap_or_else(|| eos.clone());
    let id = |token: &str| {
        vocab
            .get(token)
            .and_then(Value::as_u64)
            .ok_or_else(|| TokenizeError::Files {
                path: dir.join("vocab.json"),
                message: format!("{token:?} is not in the vocabulary"),
            })
    };
    let (bos_id, eos_id) = (id(&bos)?, id(&eos)?);
    let added = |content: &str, id: u64| {
        json!({"id": id, "content": content, "single_word": false, "lstrip": false,
               "rstrip": false, "normalized": false, "special": true})
    };
    let split = format!(
        r"{}|{}|'s|'t|'re|'ve|'m|'ll|'d|[\p{{L}}]+|[\p{{N}}]|[^\s\p{{L}}\p{{N}}]+",
        regex_escape(&bos),
        regex_escape(&eos)
    );
    let spec = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [added(&bos, bos_id), added(&eos, eos_id)],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "NFC"},
            {"type": "Replace", "pattern": {"Regex": r"\s+"}, "content": " "},
            {"type": "Lowercase"}
        ]},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": split}, "behavior": "Removed", "invert": true},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}
        ]},
        "post_processor": {"type": "RobertaProcessing", "sep": [eos, eos_id], "cls": [bos, bos_id],
                           "trim_offsets": false, "add_prefix_space": false},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": unk, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "</w>", "fuse_unk": false, "byte_fallback": false,
                  "ignore_merges": false, "vocab": vocab, "merges": merges}
    });
    spec.to_string()
        .parse::<Tokenizer>()
        .map_err(|e| TokenizeError::Files {
            path: dir.to_path_buf(),
            message: format!("building CLIP's tokenizer from vocab.json and merges.txt: {e}"),
        })
}

/// `text` with regex metacharacters escaped.
fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if r"\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
