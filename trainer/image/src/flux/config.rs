//! The FLUX transformer's shape, read from a diffusers `transformer/config.json`.

use std::path::Path;

use serde::Deserialize;

/// `FluxTransformer2DModel`'s configuration. FLUX.1-dev and -schnell: 19 double and
/// 38 single blocks, 24 heads of 128, T5 width 4,096, CLIP pooled width 768, rope
/// axes 16 + 56 + 56; dev embeds the guidance scale, schnell does not.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct FluxConfig {
    #[serde(default = "one")]
    pub patch_size: usize,
    /// Packed latent channels: the VAE's 16 channels times a 2x2 patch.
    pub in_channels: usize,
    #[serde(default)]
    pub out_channels: Option<usize>,
    /// Double-stream blocks.
    pub num_layers: usize,
    pub num_single_layers: usize,
    pub attention_head_dim: usize,
    pub num_attention_heads: usize,
    /// Width of the text encoder's token states (T5's d_model).
    pub joint_attention_dim: usize,
    /// Width of the pooled text embedding (CLIP's projection).
    pub pooled_projection_dim: usize,
    #[serde(default)]
    pub guidance_embeds: bool,
    /// Rotary dimensions per position axis (text/time, row, column); they sum to the
    /// head dimension.
    pub axes_dims_rope: Vec<usize>,
}

fn one() -> usize {
    1
}

/// Why a transformer config cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FluxConfigError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

impl FluxConfig {
    /// Reads and checks `dir/config.json`.
    pub fn read(dir: &Path) -> Result<Self, FluxConfigError> {
        let path = dir.join("config.json");
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(&path).map_err(|source| FluxConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        let config: FluxConfig =
            serde_json::from_str(&text).map_err(|source| FluxConfigError::Parse {
                path: shown.clone(),
                source,
            })?;
        config.check().map_err(|message| FluxConfigError::Invalid {
            path: shown,
            message,
        })?;
        Ok(config)
    }

    /// The model width: heads times head dimension (3,072 for FLUX.1).
    pub fn inner_dim(&self) -> usize {
        self.num_attention_heads * self.attention_head_dim
    }

    pub fn out_channels(&self) -> usize {
        self.out_channels.unwrap_or(self.in_channels)
    }

    /// The VAE's latent channels the packed channels come from (16 for FLUX.1).
    pub fn latent_channels(&self) -> usize {
        self.in_channels / 4
    }

    fn check(&self) -> Result<(), String> {
        if self.patch_size != 1 {
            return Err(format!(
                "patch_size {} is not supported: FLUX.1 patches latents 2x2 before the transformer and uses patch_size 1",
                self.patch_size
            ));
        }
        if self.in_channels == 0 || !self.in_channels.is_multiple_of(4) {
            return Err(format!(
                "in_channels {} is not 4 x the latent channels (2x2 packing)",
                self.in_channels
            ));
        }
        if self.out_channels() != self.in_channels {
            return Err(format!(
                "out_channels {} differs from in_channels {}: the sampler adds the output to its input",
                self.out_channels(),
                self.in_channels
            ));
        }
        if self.num_attention_heads == 0 || self.attention_head_dim == 0 {
            return Err("num_attention_heads and attention_head_dim must be positive".into());
        }
        let rope: usize = self.axes_dims_rope.iter().sum();
        if self.axes_dims_rope.len() != 3
            || rope != self.attention_head_dim
            || self.axes_dims_rope.iter().any(|d| !d.is_multiple_of(2))
        {
            return Err(format!(
                "axes_dims_rope {:?} must be three even sizes summing to attention_head_dim {}",
                self.axes_dims_rope, self.attention_head_dim
            ));
        }
        Ok(())
    }

    /// Parameters of the transformer (weights and biases), for memory plans.
    pub fn parameters(&self) -> u64 {
        let d = self.inner_dim() as u64;
        let mlp = 4 * d;
        let linear = |i: u64, o: u64| i * o + o;
        let head = self.attention_head_dim as u64;
        let time = 2 * (linear(256, d) + linear(d, d));
        let guidance = if self.guidance_embeds {
            linear(256, d) + linear(d, d)
        } else {
            0
        };
        let text = linear(self.pooled_projection_dim as u64, d) + linear(d, d);
        let embedders = linear(self.joint_attention_dim as u64, d)
            + linear(self.in_channels as u64, d)
            + time / 2
            + guidance
            + text;
        let double = 2 * linear(d, 6 * d)
            + 8 * linear(d, d)
            + 4 * head
            + 2 * (linear(d, mlp) + linear(mlp, d));
        let single =
            linear(d, 3 * d) + 3 * linear(d, d) + 2 * head + linear(d, mlp) + linear(d + mlp, d);
        let out = linear(d, 2 * d) + linear(d, self.out_channels() as u64);
        embedders + self.num_layers as u64 * double + self.num_single_layers as u64 * single + out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FLUX.1-dev's transformer/config.json.
    pub(crate) fn flux1_dev() -> FluxConfig {
        serde_json::from_str(
            r#"{"_class_name": "FluxTransformer2DModel", "attention_head_dim": 128,
                "guidance_embeds": true, "in_channels": 64, "joint_attention_dim": 4096,
                "num_attention_heads": 24, "num_layers": 19, "num_single_layers": 38,
                "patch_size": 1, "pooled_projection_dim": 768, "axes_dims_rope": [16, 56, 56]}"#,
        )
        .unwrap()
    }

    #[test]
    fn flux1_dev_has_its_published_parameter_count() {
        let config = flux1_dev();
        config.check().unwrap();
        assert_eq!(config.inner_dim(), 3072);
        assert_eq!(config.latent_channels(), 16);
        // diffusers' FluxTransformer2DModel for FLUX.1-dev: 11,901,408,320 parameters.
        assert_eq!(config.parameters(), 11_901_408_320);
    }

    #[test]
    fn shapes_that_do_not_fit_are_refused_with_the_field() {
        let mut config = flux1_dev();
        config.axes_dims_rope = vec![16, 56, 48];
        assert!(config.check().unwrap_err().contains("axes_dims_rope"));
        let mut config = flux1_dev();
        config.patch_size = 2;
        assert!(config.check().unwrap_err().contains("patch_size 2"));
        let mut config = flux1_dev();
        config.in_channels = 62;
        assert!(config.check().unwrap_err().contains("in_channels 62"));
    }
}
