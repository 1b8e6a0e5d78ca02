//! Anneal's trainer: everything that runs in the trainer pod and in local mode.
//!
//! So far: `validate` (the dataset and manifest check users run before they
//! spend GPU time), the Qwen2 / Llama models with their tokenizers and chat
//! templates, and `generate`.

pub mod backend;
pub mod chat;
pub mod generate;
pub mod generate_command;
pub mod local_paths;
pub mod lora;
pub mod model;
pub mod sft;
pub mod validate_command;
