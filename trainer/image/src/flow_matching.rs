//! The flow-matching loss FLUX LoRA trainers train with: a clean latent `x₀` and
//! Gaussian noise `ε` mixed at a noise level σ, `x_σ = (1 − σ)·x₀ + σ·ε`, and the
//! transformer asked for the velocity `ε − x₀` that carries the one to the other;
//! the loss is the mean squared error. σ is drawn per image as kohya's `flux_shift`
//! draws it: `sigmoid(n)` for a standard normal `n`, then shifted towards noise by
//! the same resolution-dependent `mu` the sampler uses, so large images train at
//! the noise levels they are generated through. FLUX.1-dev's guidance embedding is
//! given 1 while training, as diffusers' script does.

use burn::prelude::*;

use crate::flux::{Conditioning, FluxTransformer};
use crate::latents::pack;
use crate::schedule::SchedulerConfig;

/// A batch of cached examples of one bucket.
pub struct FlowBatch<B: Backend> {
    /// FLUX model latents (the VAE's, shifted and scaled) `[batch, channels, h, w]`.
    pub latents: Tensor<B, 4>,
    /// T5 token states `[batch, text_tokens, joint_attention_dim]`.
    pub context: Tensor<B, 3>,
    /// CLIP pooled embeddings `[batch, pooled_projection_dim]`.
    pub pooled: Tensor<B, 2>,
}

/// The guidance scale FLUX.1-dev's embedding gets while training.
pub const TRAINING_GUIDANCE: f32 = 1.0;

/// Noise levels from standard normal draws `normals`, one per image, for images of
/// `image_tokens` tokens: `t = sigmoid(n)`, then `exp(mu) / (exp(mu) + 1/t − 1)`.
pub fn shifted_sigmas(
    scheduler: &SchedulerConfig,
    normals: &[f32],
    image_tokens: usize,
) -> Vec<f32> {
    let e = scheduler.mu(image_tokens).exp();
    normals
        .iter()
        .map(|&n| {
            let t = 1.0 / (1.0 + (-f64::from(n)).exp());
            (e / (e + (1.0 / t - 1.0))) as f32
        })
        .collect()
}

/// A step's noisy latents and the velocity they should be denoised with.
pub struct FlowTargets<B: Backend> {
    /// `x_σ`, packed `[b, n, c·4]`.
    pub noisy: Tensor<B, 3>,
    /// `ε − x₀`, packed `[b, n, c·4]`.
    pub target: Tensor<B, 3>,
    /// The latents' packed grid (rows, columns).
    pub grid: (usize, usize),
    /// [`TRAINING_GUIDANCE`] per image.
    pub guidance: Vec<f32>,
}

impl<B: Backend> FlowTargets<B> {
    /// `batch`'s latents noised with `noise` (the latents' shape) at noise levels
    /// `sigmas` (one per image).
    pub fn new(batch: &FlowBatch<B>, noise: Tensor<B, 4>, sigmas: &[f32]) -> Self {
        let [images, _, height, width] = batch.latents.dims();
        assert_eq!(sigmas.len(), images, "one noise level per image");
        let device = batch.latents.device();
        let sigma = Tensor::<B, 1>::from_floats(sigmas, &device).reshape([images, 1, 1, 1]);
        // x_σ = (1 − σ)·x₀ + σ·ε, per image.
        let noisy = batch.latents.clone() * (sigma.clone().neg() + 1.0) + noise.clone() * sigma;
        Self {
            noisy: pack(noisy),
            target: pack(noise - batch.latents.clone()),
            grid: (height / 2, width / 2),
            guidance: vec![TRAINING_GUIDANCE; images],
        }
    }

    /// The transformer's conditioning for `batch` at noise levels `sigmas`.
    pub fn conditioning<'a>(
        &'a self,
        batch: &FlowBatch<B>,
        sigmas: &'a [f32],
    ) -> Conditioning<'a, B> {
        Conditioning {
            context: batch.context.clone(),
            pooled: batch.pooled.clone(),
            timestep: sigmas,
            guidance: Some(&self.guidance),
        }
    }
}

/// The mean squared error of a predicted `velocity` against `target`, one element.
pub fn velocity_loss<B: Backend>(velocity: Tensor<B, 3>, target: Tensor<B, 3>) -> Tensor<B, 1> {
    (velocity - target).powi_scalar(2).mean()
}

/// The mean squared error of the predicted velocity against `noise − latents` at
/// noise levels `sigmas` (one per image). `noise` has the latents' shape. Returns a
/// one-element loss in f32, on the graph of `model`'s trainable parameters.
pub fn flow_matching_loss<B: Backend>(
    model: &FluxTransformer<B>,
    batch: &FlowBatch<B>,
    noise: Tensor<B, 4>,
    sigmas: &[f32],
) -> Tensor<B, 1> {
    let targets = FlowTargets::new(batch, noise, sigmas);
    let cond = targets.conditioning(batch, sigmas);
    let velocity = model.forward(targets.noisy.clone(), targets.grid, &cond); // [b, n, c·4], f32
    velocity_loss(velocity, targets.target.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scheduler() -> SchedulerConfig {
        serde_json::from_value(serde_json::json!({
            "num_train_timesteps": 1000,
            "shift": 3.0,
            "use_dynamic_shifting": true,
            "base_shift": 0.5,
            "max_shift": 1.15,
            "base_image_seq_len": 256,
            "max_image_seq_len": 4096,
        }))
        .unwrap()
    }

    #[test]
    fn sigmas_are_the_sigmoid_shifted_by_the_resolution() {
        let s = scheduler();
        // n = 0 gives t = 0.5; at 256 tokens mu = 0.5, so σ = e^0.5 / (e^0.5 + 1).
        let at_base = shifted_sigmas(&s, &[0.0], 256)[0];
        let expected = (0.5f64.exp() / (0.5f64.exp() + 1.0)) as f32;
        assert!((at_base - expected).abs() < 1e-6, "{at_base} vs {expected}");
        // 1024x1024 (4096 tokens, mu = 1.15) trains noisier than 512x512 (1024 tokens).
        let large = shifted_sigmas(&s, &[0.0], 4096)[0];
        let small = shifted_sigmas(&s, &[0.0], 1024)[0];
        assert!(
            large > small && small > at_base,
            "{large} {small} {at_base}"
        );
        // Every level lies in (0, 1) and rises with n.
        let levels = shifted_sigmas(&s, &[-3.0, -1.0, 0.0, 1.0, 3.0], 1024);
        assert!(levels.windows(2).all(|w| w[0] < w[1]), "{levels:?}");
        assert!(levels.iter().all(|&l| l > 0.0 && l < 1.0));
    }
}
