//! Generation: Euler steps of the flow from noise to latents, then the VAE decoder,
//! as FluxPipeline runs them (no true classifier-free guidance: FLUX.1-dev embeds its
//! guidance scale, schnell has none).

use burn::prelude::*;

use crate::flux::{Conditioning, FluxTransformer};
use crate::latents::unpack;
use crate::schedule::{ScheduleError, SchedulerConfig};
use crate::vae::Vae;

/// The text side of a generation, encoded once for all its steps.
pub struct PromptEmbeddings<B: Backend> {
    /// T5 token states `[batch, text_tokens, joint_attention_dim]`.
    pub context: Tensor<B, 3>,
    /// CLIP pooled embedding `[batch, pooled_projection_dim]`.
    pub pooled: Tensor<B, 2>,
}

/// Runs `steps` Euler steps from packed `noise` (`[batch, rows·columns, channels·4]`,
/// f32) on a `rows` x `columns` token grid; `guidance` is used by models that embed
/// it. Returns the final packed latents, f32. `on_step(i)` is called after each step.
#[allow(clippy::too_many_arguments)]
pub fn denoise<B: Backend>(
    model: &FluxTransformer<B>,
    scheduler: &SchedulerConfig,
    noise: Tensor<B, 3>,
    grid: (usize, usize),
    prompt: &PromptEmbeddings<B>,
    steps: usize,
    guidance: f32,
    mut on_step: impl FnMut(usize),
) -> Result<Tensor<B, 3>, ScheduleError> {
    let batch = noise.dims()[0];
    let sigmas = scheduler.sigmas(steps, grid.0 * grid.1)?;
    let guidance = vec![guidance; batch];
    let mut latents = noise;
    for i in 0..steps {
        let timestep = vec![scheduler.model_timestep(sigmas[i]); batch];
        let cond = Conditioning {
            context: prompt.context.clone(),
            pooled: prompt.pooled.clone(),
            timestep: &timestep,
            guidance: Some(&guidance),
        };
        let velocity = model.forward(latents.clone(), grid, &cond); // [b, n, c·4], f32
        latents = latents + velocity * f64::from(sigmas[i + 1] - sigmas[i]);
        on_step(i);
    }
    Ok(latents)
}

/// How many denoising steps a generation takes, and its embedded guidance scale.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sampling {
    pub steps: usize,
    pub guidance: f32,
}

/// Images `[n, 3, H, W]` in [0, 1] from unpacked `noise` `[n, channels, h, w]` and
/// `prompt` (one row per image): the Euler steps, then the VAE decoder. What
/// `trainer generate-image` runs, and what a training run draws its samples with.
pub fn generate_images<B: Backend>(
    transformer: &FluxTransformer<B>,
    vae: &Vae<B>,
    scheduler: &SchedulerConfig,
    prompt: &PromptEmbeddings<B>,
    noise: Tensor<B, 4>,
    settings: Sampling,
    on_step: impl FnMut(usize),
) -> Result<Tensor<B, 4>, ScheduleError> {
    let [_, _, height, width] = noise.dims();
    let grid = (height / 2, width / 2);
    let latents = denoise(
        transformer,
        scheduler,
        crate::latents::pack(noise),
        grid,
        prompt,
        settings.steps,
        settings.guidance,
        on_step,
    )?;
    Ok(decode_images(vae, latents, grid))
}

/// Packed model latents to images `[batch, 3, H, W]` in [0, 1]: unpack, undo FLUX's
/// scaling and shift, decode, and map [−1, 1] to [0, 1].
pub fn decode_images<B: Backend>(
    vae: &Vae<B>,
    latents: Tensor<B, 3>,
    grid: (usize, usize),
) -> Tensor<B, 4> {
    let dtype = vae.decoder.conv_in.weight.val().dtype();
    let z = vae.from_model_latents(unpack(latents, grid.0, grid.1));
    let image = vae.decode(z.cast(dtype)).cast(burn::tensor::DType::F32);
    (image / 2.0 + 0.5).clamp(0.0, 1.0)
}
