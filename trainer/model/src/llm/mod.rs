//! Decoder-only language models in burn that load Hugging Face checkpoints:
//! the Qwen2 / Qwen2.5 family and the Llama 3 / 3.1 family.

pub mod attention;
pub mod blocked_attention;
pub mod config;
mod config_bounds;
pub mod decode;
pub mod kv_slots;
pub mod mlp;
pub mod packing;
pub mod placement;
pub mod precision;
pub mod projection;
pub mod recompute;
pub mod rope;
pub mod save;
pub mod softmax;
pub mod tracked_ops;
pub mod transformer;
pub mod weights;

use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::tensor::DType;

use safetensors::SafeTensorError;

use crate::backend::LayerStorage;

pub use config::{Family, ModelConfig};
pub use kv_slots::KvSlots;
pub use placement::LayerPlacement;
pub use transformer::{CausalLm, KvCache};

/// Why a model could not be loaded or saved. Each message names the file or
/// tensor at fault first.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Config {
        path: PathBuf,
        source: config::ConfigError,
    },
    /// `model.safetensors.index.json` is not JSON.
    #[error("{}: {source}", path.display())]
    Index {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{}: no \"weight_map\" object", path.display())]
    NoWeightMap { path: PathBuf },
    /// A safetensors file that cannot be read or written.
    #[error("{}: {source}", path.display())]
    Safetensors {
        path: PathBuf,
        source: SafeTensorError,
    },
    #[error("tensor {tensor}: {source}")]
    Tensor {
        tensor: String,
        source: weights::TensorError,
    },
}

impl ModelError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        ModelError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn safetensors(path: &Path, source: SafeTensorError) -> Self {
        ModelError::Safetensors {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Loads a model folder's architecture and weights onto `device`, to compute in
/// `dtype` (see [`weights::build_model`] for the dtype of each weight).
pub fn load_model<B: Backend>(
    dir: &Path,
    device: &B::Device,
    dtype: DType,
) -> Result<(ModelConfig, CausalLm<B>), ModelError> {
    load_model_placed(
        dir,
        std::slice::from_ref(device),
        dtype,
        LayerStorage::Computed,
    )
}

/// Loads a model folder with its decoder layers split over `devices` in consecutive
/// runs ([`LayerPlacement::balanced`]), held as `storage` says; the embeddings,
/// final norm and head go to the first device.
pub fn load_model_placed<B: Backend>(
    dir: &Path,
    devices: &[B::Device],
    dtype: DType,
    storage: LayerStorage,
) -> Result<(ModelConfig, CausalLm<B>), ModelError> {
    let config = ModelConfig::from_model_dir(dir)?;
    let files = weights::SafetensorsFiles::open(dir)?;
    let placement = LayerPlacement::balanced(devices.to_vec(), config.num_layers);
    let model = weights::build_model(&config, &files, &placement, dtype, storage)?;
    Ok((config, model))
}
