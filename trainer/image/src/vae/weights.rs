//! Building the VAE from a diffusers `vae/` folder by diffusers' tensor names.

use std::path::Path;

use anneal_model::llm::ModelError;
use anneal_model::llm::weights::{Loader, SafetensorsFiles, WeightSource};
use burn::module::Param;
use burn::prelude::*;
use burn::tensor::DType;

use super::config::{VaeConfig, VaeConfigError};
use super::layers::{ChannelLinear, Conv, GroupNorm, ResnetBlock, SpatialAttention};
use super::model::{Decoder, Encoder, Level, MidBlock, Vae};

/// Why a VAE could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum VaeLoadError {
    #[error(transparent)]
    Config(#[from] VaeConfigError),
    #[error(transparent)]
    Weights(#[from] ModelError),
}

/// Which halves of the VAE to load: generation needs only the decoder, training
/// encodes its images once (then only the decoder, for samples).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VaeParts {
    DecoderOnly,
    EncoderAndDecoder,
}

/// Loads `dir` (a diffusers `vae/` folder) onto `device`, to compute in `dtype`.
pub fn load_vae<B: Backend>(
    dir: &Path,
    parts: VaeParts,
    device: &B::Device,
    dtype: DType,
) -> Result<(VaeConfig, Vae<B>), VaeLoadError> {
    let config = VaeConfig::read(dir)?;
    let files = SafetensorsFiles::open_stem(dir, "diffusion_pytorch_model")?;
    let loader = Loader {
        source: &files,
        device,
        compute: dtype,
        storage: anneal_model::backend::LayerStorage::Computed,
    };
    let parts_loader = VaeLoader {
        l: loader,
        config: &config,
    };
    let encoder = match parts {
        VaeParts::DecoderOnly => None,
        VaeParts::EncoderAndDecoder => Some(parts_loader.encoder()?),
    };
    let vae = Vae {
        encoder,
        decoder: parts_loader.decoder()?,
        scaling_factor: config.scaling_factor,
        shift_factor: config.shift(),
    };
    Ok((config, vae))
}

struct VaeLoader<'a, S, B: Backend> {
    l: Loader<'a, S, B>,
    config: &'a VaeConfig,
}

impl<S: WeightSource, B: Backend> VaeLoader<'_, S, B> {
    fn conv(
        &self,
        name: &str,
        input: usize,
        out: usize,
        kernel: usize,
        stride: usize,
    ) -> Result<Conv<B>, ModelError> {
        let base = self.l.base();
        Ok(Conv {
            weight: Param::from_tensor(self.l.load::<4>(
                &format!("{name}.weight"),
                [out, input, kernel, kernel],
                &base,
            )?),
            bias: Param::from_tensor(self.l.load::<1>(&format!("{name}.bias"), [out], &base)?),
            stride,
        })
    }

    fn norm(&self, name: &str, channels: usize) -> Result<GroupNorm<B>, ModelError> {
        let f32 = |_| DType::F32;
        Ok(GroupNorm {
            gamma: Param::from_tensor(self.l.load::<1>(
                &format!("{name}.weight"),
                [channels],
                f32,
            )?),
            beta: Param::from_tensor(self.l.load::<1>(&format!("{name}.bias"), [channels], f32)?),
            groups: self.config.norm_num_groups,
        })
    }

    fn resnet(&self, name: &str, input: usize, out: usize) -> Result<ResnetBlock<B>, ModelError> {
        Ok(ResnetBlock {
            norm1: self.norm(&format!("{name}.norm1"), input)?,
            conv1: self.conv(&format!("{name}.conv1"), input, out, 3, 1)?,
            norm2: self.norm(&format!("{name}.norm2"), out)?,
            conv2: self.conv(&format!("{name}.conv2"), out, out, 3, 1)?,
            conv_shortcut: if input != out {
                Some(self.conv(&format!("{name}.conv_shortcut"), input, out, 1, 1)?)
            } else {
                None
            },
        })
    }

    fn linear(&self, name: &str, channels: usize) -> Result<ChannelLinear<B>, ModelError> {
        Ok(ChannelLinear {
            weight: Param::from_tensor(self.l.matrix(
                &format!("{name}.weight"),
                channels,
                channels,
            )?),
            bias: Param::from_tensor(self.l.load::<1>(
                &format!("{name}.bias"),
                [channels],
                self.l.base(),
            )?),
        })
    }

    fn mid(&self, prefix: &str) -> Result<MidBlock<B>, ModelError> {
        let c = *self
            .config
            .block_out_channels
            .last()
            .expect("checked non-empty");
        let p = format!("{prefix}.mid_block");
        let attention = if self.config.mid_block_add_attention {
            let a = format!("{p}.attentions.0");
            Some(SpatialAttention {
                group_norm: self.norm(&format!("{a}.group_norm"), c)?,
                to_q: self.linear(&format!("{a}.to_q"), c)?,
                to_k: self.linear(&format!("{a}.to_k"), c)?,
                to_v: self.linear(&format!("{a}.to_v"), c)?,
                to_out: self.linear(&format!("{a}.to_out.0"), c)?,
            })
        } else {
            None
        };
        Ok(MidBlock {
            first: self.resnet(&format!("{p}.resnets.0"), c, c)?,
            attention,
            second: self.resnet(&format!("{p}.resnets.1"), c, c)?,
        })
    }

    /// One resolution level `prefix`: `resnets` ResNet blocks from `input` to `c`
    /// channels, then `{prefix}.{kind}.0.conv` with `stride` when `resample` names one.
    fn level(
        &self,
        prefix: &str,
        input: usize,
        c: usize,
        resnets: usize,
        resample: Option<(&str, usize)>,
    ) -> Result<Level<B>, ModelError> {
        let resnets = (0..resnets)
            .map(|j| {
                self.resnet(
                    &format!("{prefix}.resnets.{j}"),
                    if j == 0 { input } else { c },
                    c,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let resample = match resample {
            Some((kind, stride)) => {
                Some(self.conv(&format!("{prefix}.{kind}.0.conv"), c, c, 3, stride)?)
            }
            None => None,
        };
        Ok(Level { resnets, resample })
    }

    fn encoder(&self) -> Result<Encoder<B>, ModelError> {
        let cfg = self.config;
        let channels = &cfg.block_out_channels;
        let top = *channels.last().expect("checked non-empty");
        let mut down = Vec::with_capacity(channels.len());
        let mut previous = channels[0];
        for (i, &c) in channels.iter().enumerate() {
            let last = i + 1 == channels.len();
            let p = format!("encoder.down_blocks.{i}");
            let resample = (!last).then_some(("downsamplers", 2));
            down.push(self.level(&p, previous, c, cfg.layers_per_block, resample)?);
            previous = c;
        }
        Ok(Encoder {
            conv_in: self.conv("encoder.conv_in", cfg.in_channels, channels[0], 3, 1)?,
            down,
            mid: self.mid("encoder")?,
            norm_out: self.norm("encoder.conv_norm_out", top)?,
            conv_out: self.conv("encoder.conv_out", top, 2 * cfg.latent_channels, 3, 1)?,
        })
    }

    fn decoder(&self) -> Result<Decoder<B>, ModelError> {
        let cfg = self.config;
        let channels = &cfg.block_out_channels;
        let top = *channels.last().expect("checked non-empty");
        let mut up = Vec::with_capacity(channels.len());
        let mut previous = top;
        for (i, &c) in channels.iter().rev().enumerate() {
            let last = i + 1 == channels.len();
            let p = format!("decoder.up_blocks.{i}");
            let resample = (!last).then_some(("upsamplers", 1));
            up.push(self.level(&p, previous, c, cfg.layers_per_block + 1, resample)?);
            previous = c;
        }
        Ok(Decoder {
            conv_in: self.conv("decoder.conv_in", cfg.latent_channels, top, 3, 1)?,
            mid: self.mid("decoder")?,
            up,
            norm_out: self.norm("decoder.conv_norm_out", channels[0])?,
            conv_out: self.conv("decoder.conv_out", channels[0], cfg.out_channels, 3, 1)?,
        })
    }
}
