//! Decoder-only language models in burn that load Hugging Face checkpoints:
//! the Qwen2 / Qwen2.5 family and the Llama 3 / 3.1 family.

pub mod attention;
pub mod config;
pub mod mlp;
pub mod projection;
pub mod recompute;
pub mod rope;
pub mod save;
pub mod transformer;
pub mod weights;

use std::path::Path;

use burn::prelude::*;
use burn::tensor::DType;

pub use config::{Family, ModelConfig};
pub use transformer::{CausalLm, KvCache};

/// Why a model could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("{path}: {message}")]
    Config { path: String, message: String },
    #[error("{}{message}", tensor.as_ref().map(|t| format!("tensor {t}: ")).unwrap_or_default())]
    Weights {
        tensor: Option<String>,
        message: String,
    },
}

impl ModelError {
    pub(crate) fn io(path: &Path, err: std::io::Error) -> Self {
        ModelError::Io {
            path: path.display().to_string(),
            message: err.to_string(),
        }
    }
}

/// Loads a model folder's architecture and weights onto `device`, every weight in `dtype`.
pub fn load_model<B: Backend>(
    dir: &Path,
    device: &B::Device,
    dtype: DType,
) -> Result<(ModelConfig, CausalLm<B>), ModelError> {
    let config = ModelConfig::from_model_dir(dir)?;
    let files = weights::SafetensorsFiles::open(dir)?;
    let model = weights::build_model(&config, &files, device, dtype)?;
    Ok((config, model))
}
