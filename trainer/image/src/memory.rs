//! What a FLUX pipeline needs in memory to make images, from its configs alone (no
//! weights read): each component's parameters at the bytes the backend keeps them in
//! (bf16 on CUDA, f32 on the CPU), and an estimate of the denoising activations. The
//! text encoders are needed only until the prompts are encoded: `trainer
//! generate-image` frees them, `trainer serve` keeps them for the next request.

use std::path::Path;

use crate::flux::FluxConfig;
use crate::pipeline::PipelineError;
use crate::text::clip::ClipTextConfig;
use crate::text::read_config;
use crate::text::t5::T5Config;
use crate::vae::VaeConfig;
use crate::vae::model::parameters as vae_parameters;

/// Parameters of each component a generation uses.
#[derive(Clone, Debug, PartialEq)]
pub struct PipelineSize {
    pub transformer: u64,
    pub t5: u64,
    pub clip: u64,
    pub vae_decoder: u64,
    /// The transformer's width and heads, for the activations.
    pub inner_dim: u64,
    pub heads: u64,
    /// Pixels per token side: 2 · the VAE's scale.
    pub pixels_per_token: u64,
}

impl PipelineSize {
    /// Reads the configs of the pipeline folder `dir`.
    pub fn read(dir: &Path) -> Result<Self, PipelineError> {
        let transformer = FluxConfig::read(&dir.join("transformer"))
            .map_err(|e| PipelineError::Transformer(e.into()))?;
        let vae = VaeConfig::read(&dir.join("vae")).map_err(|e| PipelineError::Vae(e.into()))?;
        let clip: ClipTextConfig = read_config(&dir.join("text_encoder"))?;
        let t5: T5Config = read_config(&dir.join("text_encoder_2"))?;
        Ok(Self {
            transformer: transformer.parameters(),
            t5: t5.parameters(),
            clip: clip.parameters(),
            vae_decoder: vae_parameters(&vae).1,
            inner_dim: transformer.inner_dim() as u64,
            heads: transformer.num_attention_heads as u64,
            pixels_per_token: 2 * vae.scale() as u64,
        })
    }

    /// Bytes of the denoising activations of `count` images of `width` x `height` with
    /// `prompt_tokens` T5 tokens, at `bytes` per value: an estimate, the live tensors
    /// of the widest block (a single-stream block: its input, normed input, q, k, v,
    /// attention output, the MLP's 4x input and activation, the 5x concatenation, the
    /// output: 19 widths per token) plus one block of f32 attention scores (at most
    /// 256 MiB, see `blocked_attention`).
    pub fn activation_bytes(
        &self,
        width: u64,
        height: u64,
        count: u64,
        prompt_tokens: u64,
        bytes: u64,
    ) -> u64 {
        let image_tokens = (width / self.pixels_per_token) * (height / self.pixels_per_token);
        let tokens = image_tokens + prompt_tokens;
        let widths = count * tokens * self.inner_dim * 19 * bytes;
        let scores = (count * self.heads * tokens * tokens * 4).min(256 << 20);
        widths + scores
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flux1_dev_in_bf16_fits_one_80_gb_gpu_with_room_to_spare() {
        let configs =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/flux1-dev-configs");
        let size = PipelineSize::read(&configs).unwrap();
        assert_eq!(
            (size.transformer, size.t5, size.clip, size.vae_decoder),
            (11_901_408_320, 4_762_310_656, 123_060_480, 49_545_475)
        );
        let weights = 2 * (size.transformer + size.t5 + size.clip + size.vae_decoder);
        assert_eq!(weights, 33_672_649_862);
        // 1024x1024, one image: 4,096 image tokens and 512 T5 tokens.
        let activations = size.activation_bytes(1024, 1024, 1, 512, 2);
        assert_eq!(activations, 4608 * 3072 * 19 * 2 + (256 << 20));
        assert!(weights + activations < 40 * (1 << 30));
    }
}
