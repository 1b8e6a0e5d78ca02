//! An image job's examples encoded once, before the first step: each image (fitted
//! to its bucket) through the VAE encoder to its latent distribution, each caption
//! through T5 and CLIP. Training then holds only the transformer, its adapter and
//! these: at FLUX.1-dev's size a 1024x1024 example is 16x128x128 latents (mean and
//! log-variance, 2 MiB in f32) and 512x4096 T5 states (8 MiB), against 9.5 GB of T5
//! weights freed. Latents are drawn from the distribution at every step, as
//! diffusers' FLUX LoRA script draws them from its cache.

use burn::prelude::*;
use image::RgbImage;

use crate::buckets::{Bucket, pixels_for_vae};
use crate::pipeline::{FluxPipeline, PipelineError};
use crate::vae::Vae;

/// One image ready to encode: its name (for messages), its pixels fitted to its
/// bucket, and the caption it is trained with (the trigger word already put first).
pub struct TrainingImage {
    pub name: String,
    pub bucket: Bucket,
    pub pixels: RgbImage,
    pub caption: String,
}

/// One encoded example, on the host.
#[derive(Clone, Debug)]
pub struct EncodedExample {
    pub name: String,
    pub bucket: Bucket,
    /// The VAE posterior's mean and log-variance, `[channels, h/8, w/8]` each, f32.
    pub latent_mean: TensorData,
    pub latent_logvar: TensorData,
    /// T5 token states `[text_tokens, joint_attention_dim]`, f32.
    pub context: TensorData,
    /// CLIP pooled embedding `[pooled_projection_dim]`, f32.
    pub pooled: TensorData,
}

/// A caption cut to the pipeline's T5 length, for the run's warnings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CutCaption {
    pub name: String,
    pub tokens: usize,
    pub kept: usize,
}

/// Encodes `images` one at a time (the encoders' activations at 1024x1024 are the
/// largest tensors of the whole run). Captions longer than T5's length are cut, as
/// FluxPipeline cuts them, and listed.
pub fn encode_examples<B: Backend>(
    pipeline: &FluxPipeline<B>,
    images: &[TrainingImage],
    device: &B::Device,
) -> Result<(Vec<EncodedExample>, Vec<CutCaption>), PipelineError> {
    let vae = &pipeline.vae;
    let mut examples = Vec::with_capacity(images.len());
    let mut cut = Vec::new();
    for image in images {
        let (latent_mean, latent_logvar) = encode_latents(vae, &image.pixels, device)?;
        let tokens = pipeline.t5_tokens_uncut(&image.caption)?;
        let kept = pipeline.t5_length().unwrap_or(tokens);
        if tokens > kept {
            cut.push(CutCaption {
                name: image.name.clone(),
                tokens,
                kept,
            });
        }
        let prompt = pipeline.encode_prompts(&[image.caption.as_str()])?;
        examples.push(EncodedExample {
            name: image.name.clone(),
            bucket: image.bucket,
            latent_mean,
            latent_logvar,
            context: host_f32(prompt.context.squeeze_dim::<2>(0)),
            pooled: host_f32(prompt.pooled.squeeze_dim::<1>(0)),
        });
    }
    Ok((examples, cut))
}

/// The VAE posterior of one image: mean and log-variance `[c, h/8, w/8]` on the host.
fn encode_latents<B: Backend>(
    vae: &Vae<B>,
    pixels: &RgbImage,
    device: &B::Device,
) -> Result<(TensorData, TensorData), PipelineError> {
    let dtype = vae.decoder.conv_in.weight.val().dtype();
    let input = anneal_model::llm::precision::cast(
        pixels_for_vae::<B>(pixels, device).unsqueeze_dim::<4>(0),
        dtype,
    ); // [1, 3, h, w]
    let distribution = vae.encode(input).ok_or_else(|| {
        PipelineError::Request("the VAE was loaded without its encoder".to_owned())
    })?;
    Ok((
        host_f32(distribution.mean.squeeze_dim::<3>(0)),
        host_f32(distribution.logvar.squeeze_dim::<3>(0)),
    ))
}

fn host_f32<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> TensorData {
    tensor.into_data().convert::<f32>()
}

/// The model latents of a batch of examples, drawn from their distributions with
/// standard normal `draws` (same shape): `(mean + exp(logvar / 2)·draw − shift)·scale`.
pub fn draw_model_latents<B: Backend>(
    vae: &Vae<B>,
    examples: &[&EncodedExample],
    draws: Tensor<B, 4>,
    device: &B::Device,
) -> Tensor<B, 4> {
    let stack = |part: fn(&EncodedExample) -> &TensorData| {
        Tensor::stack::<4>(
            examples
                .iter()
                .map(|e| Tensor::<B, 3>::from_data(part(e).clone(), device))
                .collect(),
            0,
        )
    };
    let mean = stack(|e| &e.latent_mean); // [b, c, h, w]
    let std = stack(|e| &e.latent_logvar).mul_scalar(0.5).exp();
    vae.to_model_latents(mean + std * draws)
}
