//! Anneal's trainer: everything that runs in the trainer pod and in local mode.
//!
//! So far: `validate` (the dataset and manifest check users run before they
//! spend GPU time), the Qwen2 / Llama models with their tokenizers and chat
//! templates, `generate`, LoRA, `train` (the SFT and DPO loops, checkpoints,
//! events and resume, through the object storage layer in [`storage`]), and `serve` (an
//! OpenAI-compatible endpoint for a model and its adapters) with `fetch`.

pub mod backend;
pub mod chat;
pub mod dpo;
pub mod fetch_command;
pub mod generate;
pub mod generate_command;
pub mod local_paths;
pub mod lora;
pub mod model;
pub mod next_steps;
pub mod safetensors_out;
pub mod serve;
pub mod sft;
pub mod sources;
/// The storage layer lives in anneal-crds (feature `storage`), shared with the operator.
pub use anneal_crds::storage;
pub mod train;
pub mod train_command;
pub mod train_progress;
pub mod validate_command;
