//! The VAE's shape, read from a diffusers `vae/config.json` (`AutoencoderKL`).

use std::path::Path;

use serde::Deserialize;

/// FLUX.1's VAE: 3 image channels, 16 latent channels, blocks of 128, 256, 512, 512
/// channels (8x smaller per side), 2 ResNet layers per block, groups of 32,
/// `scaling_factor` 0.3611, `shift_factor` 0.1159, no quant convs.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct VaeConfig {
    #[serde(default = "defaults::image_channels")]
    pub in_channels: usize,
    #[serde(default = "defaults::image_channels")]
    pub out_channels: usize,
    pub latent_channels: usize,
    pub block_out_channels: Vec<usize>,
    pub layers_per_block: usize,
    #[serde(default = "defaults::groups")]
    pub norm_num_groups: usize,
    pub scaling_factor: f64,
    #[serde(default)]
    pub shift_factor: Option<f64>,
    #[serde(default = "defaults::yes")]
    pub use_quant_conv: bool,
    #[serde(default = "defaults::yes")]
    pub use_post_quant_conv: bool,
    #[serde(default = "defaults::yes")]
    pub mid_block_add_attention: bool,
}

mod defaults {
    pub fn image_channels() -> usize {
        3
    }
    pub fn groups() -> usize {
        32
    }
    pub fn yes() -> bool {
        true
    }
}

/// Why a VAE config cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct VaeConfigError {
    pub path: String,
    pub message: String,
}

impl VaeConfig {
    pub fn read(dir: &Path) -> Result<Self, VaeConfigError> {
        let path = dir.join("config.json");
        let err = |message: String| VaeConfigError {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(&path).map_err(|e| err(e.to_string()))?;
        let config: Self = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        config.check().map_err(err)?;
        Ok(config)
    }

    fn check(&self) -> Result<(), String> {
        if self.use_quant_conv || self.use_post_quant_conv {
            return Err(
                "use_quant_conv / use_post_quant_conv: only FLUX's VAE layout (without quant convs) is supported"
                    .into(),
            );
        }
        if self.block_out_channels.is_empty() || self.layers_per_block == 0 {
            return Err("block_out_channels and layers_per_block must not be empty or 0".into());
        }
        let groups = self.norm_num_groups;
        if groups == 0
            || self
                .block_out_channels
                .iter()
                .any(|c| !c.is_multiple_of(groups))
        {
            return Err(format!(
                "block_out_channels {:?} must be multiples of norm_num_groups {groups}",
                self.block_out_channels
            ));
        }
        Ok(())
    }

    /// How much smaller a latent image is per side: 2 per downsampling block.
    pub fn scale(&self) -> usize {
        1 << (self.block_out_channels.len() - 1)
    }

    pub fn shift(&self) -> f64 {
        self.shift_factor.unwrap_or(0.0)
    }
}
