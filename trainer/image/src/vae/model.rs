//! FLUX's VAE (diffusers' `AutoencoderKL` without quant convs): the encoder maps an
//! image in [−1, 1] to the mean and log-variance of its latents, the decoder maps
//! latents back to an image. [`Vae::to_model_latents`] and [`Vae::from_model_latents`]
//! apply FLUX's scaling and shift factors between the VAE's latents and the ones the
//! transformer sees.

use burn::prelude::*;
use burn::tensor::activation::silu;

use super::config::VaeConfig;
use super::layers::{Conv, GroupNorm, ResnetBlock, SpatialAttention, upsample_nearest};

/// ResNet, attention, ResNet at the lowest resolution.
#[derive(Module, Debug)]
pub struct MidBlock<B: Backend> {
    pub first: ResnetBlock<B>,
    pub attention: Option<SpatialAttention<B>>,
    pub second: ResnetBlock<B>,
}

impl<B: Backend> MidBlock<B> {
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let x = self.first.forward(x);
        let x = match &self.attention {
            Some(attention) => attention.forward(x),
            None => x,
        };
        self.second.forward(x)
    }
}

/// A resolution level: its ResNet blocks, then a 2x down- or upsampling convolution
/// (all but the last level).
#[derive(Module, Debug)]
pub struct Level<B: Backend> {
    pub resnets: Vec<ResnetBlock<B>>,
    pub resample: Option<Conv<B>>,
}

#[derive(Module, Debug)]
pub struct Encoder<B: Backend> {
    pub conv_in: Conv<B>,
    pub down: Vec<Level<B>>,
    pub mid: MidBlock<B>,
    pub norm_out: GroupNorm<B>,
    pub conv_out: Conv<B>,
}

impl<B: Backend> Encoder<B> {
    /// `[batch, 3, H, W]` to `[batch, 2·latent_channels, H/scale, W/scale]`.
    pub fn forward(&self, image: Tensor<B, 4>) -> Tensor<B, 4> {
        let mut x = self.conv_in.forward(image);
        for level in &self.down {
            for resnet in &level.resnets {
                x = resnet.forward(x);
            }
            if let Some(down) = &level.resample {
                x = down.forward(x);
            }
        }
        let x = self.mid.forward(x);
        self.conv_out.forward(silu(self.norm_out.forward(x)))
    }
}

#[derive(Module, Debug)]
pub struct Decoder<B: Backend> {
    pub conv_in: Conv<B>,
    pub mid: MidBlock<B>,
    pub up: Vec<Level<B>>,
    pub norm_out: GroupNorm<B>,
    pub conv_out: Conv<B>,
}

impl<B: Backend> Decoder<B> {
    /// `[batch, latent_channels, h, w]` to `[batch, 3, h·scale, w·scale]`.
    pub fn forward(&self, latents: Tensor<B, 4>) -> Tensor<B, 4> {
        let mut x = self.mid.forward(self.conv_in.forward(latents));
        for level in &self.up {
            for resnet in &level.resnets {
                x = resnet.forward(x);
            }
            if let Some(up) = &level.resample {
                x = up.forward(upsample_nearest(x));
            }
        }
        self.conv_out.forward(silu(self.norm_out.forward(x)))
    }
}

/// The latent distribution of an image: `mean` and `logvar` (clamped to [−30, 20]),
/// each `[batch, latent_channels, h, w]`.
pub struct LatentDistribution<B: Backend> {
    pub mean: Tensor<B, 4>,
    pub logvar: Tensor<B, 4>,
}

#[derive(Module, Debug)]
pub struct Vae<B: Backend> {
    pub encoder: Option<Encoder<B>>,
    pub decoder: Decoder<B>,
    pub scaling_factor: f64,
    pub shift_factor: f64,
}

impl<B: Backend> Vae<B> {
    /// `image` in [−1, 1]. `None` when the VAE was loaded without its encoder.
    pub fn encode(&self, image: Tensor<B, 4>) -> Option<LatentDistribution<B>> {
        let moments = self.encoder.as_ref()?.forward(image);
        let channels = moments.dims()[1] / 2;
        Some(LatentDistribution {
            mean: moments.clone().narrow(1, 0, channels),
            logvar: moments.narrow(1, channels, channels).clamp(-30.0, 20.0),
        })
    }

    /// VAE latents to an image in about [−1, 1].
    pub fn decode(&self, latents: Tensor<B, 4>) -> Tensor<B, 4> {
        self.decoder.forward(latents)
    }

    /// The transformer's latents from the VAE's: `(z − shift)·scaling`.
    pub fn to_model_latents(&self, z: Tensor<B, 4>) -> Tensor<B, 4> {
        (z - self.shift_factor) * self.scaling_factor
    }

    /// The VAE's latents from the transformer's: `z/scaling + shift`.
    pub fn from_model_latents(&self, z: Tensor<B, 4>) -> Tensor<B, 4> {
        z / self.scaling_factor + self.shift_factor
    }
}

/// What a VAE of `config` holds, for memory plans: parameters of the encoder and the
/// decoder.
pub fn parameters(config: &VaeConfig) -> (u64, u64) {
    let conv = |i: usize, o: usize, k: usize| (i * o * k * k + o) as u64;
    let norm = |c: usize| 2 * c as u64;
    let resnet = |i: usize, o: usize| {
        norm(i) + conv(i, o, 3) + norm(o) + conv(o, o, 3) + if i != o { conv(i, o, 1) } else { 0 }
    };
    let top = *config.block_out_channels.last().unwrap_or(&0);
    let mid = 2 * resnet(top, top)
        + if config.mid_block_add_attention {
            norm(top) + 4 * (top * top + top) as u64
        } else {
            0
        };
    let channels = &config.block_out_channels;
    let mut encoder = conv(config.in_channels, channels[0], 3)
        + mid
        + norm(top)
        + conv(top, 2 * config.latent_channels, 3);
    let mut previous = channels[0];
    for (i, &c) in channels.iter().enumerate() {
        encoder += resnet(previous, c) + (config.layers_per_block as u64 - 1) * resnet(c, c);
        if i + 1 < channels.len() {
            encoder += conv(c, c, 3);
        }
        previous = c;
    }
    let mut decoder = conv(config.latent_channels, top, 3)
        + mid
        + norm(channels[0])
        + conv(channels[0], config.out_channels, 3);
    let mut previous = top;
    for (i, &c) in channels.iter().rev().enumerate() {
        decoder += resnet(previous, c) + config.layers_per_block as u64 * resnet(c, c);
        if i + 1 < channels.len() {
            decoder += conv(c, c, 3);
        }
        previous = c;
    }
    (encoder, decoder)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flux1s_vae_has_diffusers_parameter_counts() {
        let config: VaeConfig = serde_json::from_str(
            r#"{"latent_channels": 16, "block_out_channels": [128, 256, 512, 512],
                "layers_per_block": 2, "scaling_factor": 0.3611, "shift_factor": 0.1159,
                "use_quant_conv": false, "use_post_quant_conv": false}"#,
        )
        .unwrap();
        assert_eq!(config.scale(), 8);
        // diffusers' AutoencoderKL with FLUX.1's config: encoder, decoder.
        assert_eq!(parameters(&config), (34_274_208, 49_545_475));
    }
}
