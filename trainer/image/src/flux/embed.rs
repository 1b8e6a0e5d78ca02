//! The conditioning vector of a FLUX forward pass: the timestep (and FLUX.1-dev's
//! guidance scale) as sinusoids through small MLPs, plus the pooled CLIP text
//! embedding through its own MLP. Every block modulates its norms with it.

use burn::prelude::*;
use burn::tensor::activation::silu;

use super::linear::{Linear2, project};
use anneal_model::llm::precision::cast;

/// Sinusoid width of timesteps and guidance (diffusers' `Timesteps(256, flip_sin_to_cos)`).
pub const SINUSOID_DIM: usize = 256;

/// `linear_2(silu(linear_1(x)))`: diffusers' `TimestepEmbedding` and, with the same
/// shape, `PixArtAlphaTextProjection(act_fn="silu")`.
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    pub linear_1: Linear2<B>,
    pub linear_2: Linear2<B>,
}

impl<B: Backend> Mlp<B> {
    /// `[batch, in]` to `[batch, dim]`.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        project(&self.linear_2, silu(project(&self.linear_1, x)))
    }
}

#[derive(Module, Debug)]
pub struct TimeTextEmbed<B: Backend> {
    pub timestep_embedder: Mlp<B>,
    /// FLUX.1-dev's guidance embedding; schnell has none.
    pub guidance_embedder: Option<Mlp<B>>,
    pub text_embedder: Mlp<B>,
}

impl<B: Backend> TimeTextEmbed<B> {
    /// `timestep`, `guidance`: one value per image (the sampler's sigma in [0, 1] and the
    /// guidance scale); `pooled`: `[batch, pooled_dim]`. Returns `[batch, dim]` in
    /// `dtype`, the dtype the model computes in.
    pub fn forward(
        &self,
        timestep: &[f32],
        guidance: Option<&[f32]>,
        pooled: Tensor<B, 2>,
        dtype: burn::tensor::DType,
    ) -> Tensor<B, 2> {
        let device = pooled.device();
        let sinusoid =
            |values: &[f32]| cast(timestep_sinusoids::<B>(values, dtype, &device), dtype);
        let mut emb = self.timestep_embedder.forward(sinusoid(timestep));
        if let (Some(embedder), Some(guidance)) = (&self.guidance_embedder, guidance) {
            emb = emb + embedder.forward(sinusoid(guidance));
        }
        emb + self.text_embedder.forward(cast(pooled, dtype))
    }
}

/// `[values.len(), 256]`: `[cos(t·f), sin(t·f)]` of `t = 1000·value` (rounded to
/// `dtype` first, as diffusers multiplies in the model's dtype) at the 128
/// frequencies `f_i = exp(−ln(10000)·i/128)`, computed in f32 like diffusers'
/// `get_timestep_embedding(flip_sin_to_cos=True, downscale_freq_shift=0)`.
pub fn timestep_sinusoids<B: Backend>(
    values: &[f32],
    dtype: burn::tensor::DType,
    device: &B::Device,
) -> Tensor<B, 2> {
    let half = SINUSOID_DIM / 2;
    let round = |x: f32| match dtype {
        burn::tensor::DType::BF16 => burn::tensor::bf16::from_f32(x).to_f32(),
        burn::tensor::DType::F16 => burn::tensor::f16::from_f32(x).to_f32(),
        _ => x,
    };
    let ln_period = -(10000f64.ln() as f32);
    let mut data = Vec::with_capacity(values.len() * SINUSOID_DIM);
    for &value in values {
        let t = round(round(value) * 1000.0);
        let angles: Vec<f32> = (0..half)
            .map(|i| t * (ln_period * i as f32 / half as f32).exp())
            .collect();
        data.extend(angles.iter().map(|a| a.cos()));
        data.extend(angles.iter().map(|a| a.sin()));
    }
    Tensor::from_data(TensorData::new(data, [values.len(), SINUSOID_DIM]), device)
}
