//! Anneal's models: what training, generation and serving share.
//!
//! The decoder-only language models that load Hugging Face checkpoints ([`llm`]: the
//! Qwen2 / Qwen2.5 and Llama 3 / 3.1 families), LoRA adapters on them in PEFT format
//! ([`lora`]), tokenizers and chat templates ([`chat`]), sampling ([`generate`]), and the
//! choice of compute backend ([`backend`]: Flex on the CPU, CUDA when built in).

pub mod backend;
pub use anneal_chat as chat;
pub mod cpu_kernels;
pub mod generate;
pub mod llm;
pub mod lora;
pub mod safetensors_out;
