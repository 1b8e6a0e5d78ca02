//! Reads what the chat module needs from a Hugging Face model folder: the chat template
//! (transformers 4.x `tokenizer_config.json` or 5.x `chat_template.jinja`) and the end-of-sequence ids.

use std::borrow::Cow;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::ChatError;

/// The tokenizer file every model folder must have.
pub(super) const TOKENIZER_FILE: &str = "tokenizer.json";
/// transformers 4.x: tokenizer settings, and the chat template as a string or a list of named templates.
pub(super) const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";
/// transformers 5.x writes the template to its own file.
pub(super) const CHAT_TEMPLATE_FILE: &str = "chat_template.jinja";
/// Holds the ids generation stops on.
pub(super) const GENERATION_CONFIG_FILE: &str = "generation_config.json";

/// Where a model folder's files come from: a folder on disk, or files already in memory
/// by their names in the folder (the operator reads them from object storage or a hub).
#[derive(Debug, Clone, Copy)]
pub enum ModelFolder<'a> {
    Dir(&'a Path),
    Files(&'a [(String, Vec<u8>)]),
}

impl ModelFolder<'_> {
    /// How errors name the file `name`.
    pub(super) fn path(&self, name: &str) -> PathBuf {
        match self {
            Self::Dir(dir) => dir.join(name),
            Self::Files(_) => PathBuf::from(name),
        }
    }

    /// The bytes of the file `name`, or `None` when the folder has none.
    pub(super) fn bytes(&self, name: &str) -> Result<Option<Cow<'_, [u8]>>, ChatError> {
        match self {
            Self::Dir(dir) => match std::fs::read(dir.join(name)) {
                Ok(bytes) => Ok(Some(Cow::Owned(bytes))),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
                Err(source) => Err(ChatError::Read {
                    path: dir.join(name),
                    source,
                }),
            },
            Self::Files(files) => Ok(files
                .iter()
                .find(|(file, _)| file == name)
                .map(|(_, bytes)| Cow::Borrowed(&bytes[..]))),
        }
    }

    /// The text of the file `name`, or `None` when the folder has none.
    fn text(&self, name: &str) -> Result<Option<String>, ChatError> {
        let Some(bytes) = self.bytes(name)? else {
            return Ok(None);
        };
        String::from_utf8(bytes.into_owned())
            .map(Some)
            .map_err(|e| ChatError::Read {
                path: self.path(name),
                source: std::io::Error::new(ErrorKind::InvalidData, e),
            })
    }

    fn json(&self, name: &str) -> Result<Option<Value>, ChatError> {
        self.text(name)?
            .map(|text| {
                serde_json::from_str(&text).map_err(|source| ChatError::Json {
                    path: self.path(name),
                    source,
                })
            })
            .transpose()
    }
}

/// A chat template's text and where it came from, for error messages.
#[derive(Debug, Clone)]
pub(super) struct ChatTemplate {
    pub text: String,
    pub source: String,
}

/// The parts of a model folder, other than `tokenizer.json` itself, that shape chat encoding.
#[derive(Debug, Default)]
pub(super) struct ModelFiles {
    pub template: Option<ChatTemplate>,
    /// `generation_config.json`'s `eos_token_id`; `None` when the file or the field is absent.
    pub generation_eos_ids: Option<Vec<u32>>,
    /// `tokenizer_config.json`'s `eos_token`, used only when there are no generation eos ids.
    pub config_eos_token: Option<String>,
}

impl ModelFiles {
    /// Reads the optional files of `folder`; a missing file is not an error, a malformed one is.
    pub fn read(folder: ModelFolder) -> Result<Self, ChatError> {
        let config_path = folder.path(TOKENIZER_CONFIG_FILE);
        let tokenizer_config = folder.json(TOKENIZER_CONFIG_FILE)?;
        // transformers 5.x loads `chat_template.jinja` in preference to a template left in the config.
        let template = match folder.text(CHAT_TEMPLATE_FILE)? {
            Some(text) => Some(ChatTemplate {
                text,
                source: folder.path(CHAT_TEMPLATE_FILE).display().to_string(),
            }),
            None => match &tokenizer_config {
                Some(config) => config_template(config, &config_path)?,
                None => None,
            },
        };
        let config_eos_token = match &tokenizer_config {
            Some(config) => token_content(config.get("eos_token"), &config_path, "eos_token")?,
            None => None,
        };
        let generation_eos_ids = match folder.json(GENERATION_CONFIG_FILE)? {
            Some(config) => eos_ids(
                config.get("eos_token_id"),
                &folder.path(GENERATION_CONFIG_FILE),
            )?,
            None => None,
        };
        Ok(Self {
            template,
            generation_eos_ids,
            config_eos_token,
        })
    }
}

fn field_error(path: &Path, field: &str, problem: impl Into<String>) -> ChatError {
    ChatError::Field {
        path: PathBuf::from(path),
        field: field.to_owned(),
        problem: problem.into(),
    }
}

/// `chat_template` is a string, or (transformers 4.x with several templates) a list of
/// `{name, template}` of which the one named `default` is the chat template.
fn config_template(config: &Value, path: &Path) -> Result<Option<ChatTemplate>, ChatError> {
    let source = path.display().to_string();
    match config.get("chat_template") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(ChatTemplate {
            text: text.clone(),
            source,
        })),
        Some(Value::Array(entries)) => {
            let default = entries
                .iter()
                .find(|entry| entry.get("name").and_then(Value::as_str) == Some("default"));
            match default.and_then(|entry| entry.get("template")) {
                Some(Value::String(text)) => Ok(Some(ChatTemplate {
                    text: text.clone(),
                    source: format!("{source} (template \"default\")"),
                })),
                Some(_) => Err(field_error(
                    path,
                    "chat_template",
                    "has a `default` entry whose `template` is not a string",
                )),
                None => Err(field_error(
                    path,
                    "chat_template",
                    "is a list of templates but none is named `default`",
                )),
            }
        }
        Some(_) => Err(field_error(
            path,
            "chat_template",
            "must be a string or a list of {name, template}",
        )),
    }
}

/// A token written either as its text or as an added-token object `{"content": ...}` (older configs).
fn token_content(
    value: Option<&Value>,
    path: &Path,
    field: &str,
) -> Result<Option<String>, ChatError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(Value::Object(object)) => match object.get("content") {
            Some(Value::String(text)) => Ok(Some(text.clone())),
            _ => Err(field_error(
                path,
                field,
                "is an object without a string `content`",
            )),
        },
        Some(_) => Err(field_error(
            path,
            field,
            "must be a string or an object with `content`",
        )),
    }
}

/// `eos_token_id` is one id or a list of ids.
fn eos_ids(value: Option<&Value>, path: &Path) -> Result<Option<Vec<u32>>, ChatError> {
    let as_id = |value: &Value| {
        value
            .as_u64()
            .and_then(|id| u32::try_from(id).ok())
            .ok_or_else(|| {
                field_error(
                    path,
                    "eos_token_id",
                    format!("holds `{value}`, which is not a token id"),
                )
            })
    };
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(as_id)
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(single) => as_id(single).map(|id| Some(vec![id])),
    }
}
