//! FLUX.1's text encoders: CLIP ViT-L's text model, whose pooled output conditions
//! every block ([`clip`]), and T5 v1.1's encoder, whose token states the image
//! tokens attend to ([`t5`]). Both run once per prompt; a generation can drop them
//! before its denoising steps.

pub mod clip;
pub mod layers;
pub mod t5;
pub mod tokenize;

use std::path::Path;

use serde::de::DeserializeOwned;

/// Why a text encoder could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TextEncoderError {
    #[error("{path}: {message}")]
    Config { path: String, message: String },
    #[error(transparent)]
    Weights(#[from] anneal_model::llm::ModelError),
}

/// Reads `dir/config.json` as `T`.
pub(crate) fn read_config<T: DeserializeOwned>(dir: &Path) -> Result<T, TextEncoderError> {
    let path = dir.join("config.json");
    let err = |message: String| TextEncoderError::Config {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(&path).map_err(|e| err(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| err(e.to_string()))
}
