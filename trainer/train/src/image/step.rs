//! One optimizer step of an image job: the step's random draws from the run's seed
//! and the step number (so a resumed run draws what the first run would have), the
//! flow-matching loss on a batch of one bucket, its gradient clipped by the global
//! norm, and AdamW on the adapter.

use burn::optim::{GradientsAccumulator, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use anneal_image::flow_matching::{FlowBatch, FlowTargets, flow_matching_loss, velocity_loss};
use anneal_image::flux::FluxTransformer;
use anneal_image::flux::recompute::backward_recomputed;

use crate::backward::{LayerActivations, register_training_ops};
use crate::grad_clip::clip_global_norm;
use crate::optimizer::AdamWFor;
use crate::state::step_seed;

pub type ImageOptimizer<B> = AdamWFor<FluxTransformer<B>, B>;

/// A step's random numbers: standard normal draws for the latents (from their cached
/// distribution) and for the noise, both `[batch, channels, h, w]`, and one normal
/// per image for its noise level.
pub struct StepDraws {
    pub latent: Vec<f32>,
    pub noise: Vec<f32>,
    pub levels: Vec<f32>,
    pub shape: [usize; 4],
}

impl StepDraws {
    /// Drawn on the host from the run's `seed` and the step number, the same on every
    /// backend.
    pub fn for_step(seed: u64, step: u64, shape: [usize; 4]) -> Self {
        let mut rng = StdRng::seed_from_u64(step_seed(seed, step));
        let count: usize = shape.iter().product();
        let latent = normals(&mut rng, count);
        let noise = normals(&mut rng, count);
        let levels = normals(&mut rng, shape[0]);
        Self {
            latent,
            noise,
            levels,
            shape,
        }
    }

    pub fn latent_tensor<B: Backend>(&self, device: &B::Device) -> Tensor<B, 4> {
        Tensor::from_data(TensorData::new(self.latent.clone(), self.shape), device)
    }

    pub fn noise_tensor<B: Backend>(&self, device: &B::Device) -> Tensor<B, 4> {
        Tensor::from_data(TensorData::new(self.noise.clone(), self.shape), device)
    }
}

/// `count` standard normal draws (Box-Muller on pairs of uniforms).
fn normals(rng: &mut StdRng, count: usize) -> Vec<f32> {
    (0..count)
        .map(|_| {
            let u: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
            let v: f64 = rng.random_range(0.0..1.0);
            ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
        })
        .collect()
}

/// What a step reports.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ImageStepReport {
    pub loss: f64,
    /// Before clipping.
    pub grad_norm: f64,
}

/// One step on `batch` with `noise` at noise levels `sigmas`: the loss, its gradient
/// (with the transformer's blocks kept or recomputed, as `activations` says) clipped
/// to `max_grad_norm`, AdamW at `learning_rate`.
#[allow(clippy::too_many_arguments)]
pub fn image_step<B: AutodiffBackend>(
    model: FluxTransformer<B>,
    optimizer: &mut ImageOptimizer<B>,
    batch: &FlowBatch<B>,
    noise: Tensor<B, 4>,
    sigmas: &[f32],
    activations: LayerActivations,
    learning_rate: f64,
    max_grad_norm: f64,
) -> (FluxTransformer<B>, ImageStepReport) {
    let (loss, mut grads) = image_gradients(&model, batch, noise, sigmas, activations);
    let grad_norm = clip_global_norm(&model, &mut grads, max_grad_norm)
        .map_or(0.0, |norm| norm.into_scalar().elem::<f64>());
    let model = optimizer.step(learning_rate, model, grads);
    (model, ImageStepReport { loss, grad_norm })
}

/// The flow-matching loss of `model` on `batch` and every trained parameter's
/// gradient.
pub fn image_gradients<B: AutodiffBackend>(
    model: &FluxTransformer<B>,
    batch: &FlowBatch<B>,
    noise: Tensor<B, 4>,
    sigmas: &[f32],
    activations: LayerActivations,
) -> (f64, GradientsParams) {
    register_training_ops();
    let (loss, grads) = match activations {
        LayerActivations::Kept => {
            let loss = flow_matching_loss(model, batch, noise, sigmas);
            let grads = GradientsParams::from_grads(loss.backward(), model);
            (loss, grads)
        }
        LayerActivations::Recomputed => {
            let targets = FlowTargets::new(batch, noise, sigmas);
            let cond = targets.conditioning(batch, sigmas);
            let mut accumulator = GradientsAccumulator::new();
            let loss = backward_recomputed(
                model,
                targets.noisy.clone(),
                targets.grid,
                &cond,
                &mut accumulator,
                |velocity| {
                    let loss = velocity_loss(velocity, targets.target.clone());
                    (loss.clone(), loss)
                },
            );
            (loss, accumulator.grads())
        }
    };
    // Read after the backward pass: one wait for the device per step.
    (loss.into_scalar().elem::<f64>(), grads)
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use anneal_image::buckets::{Bucket, fit_to_bucket, pixels_for_vae};
    use anneal_image::flow_matching::shifted_sigmas;
    use anneal_image::flux::trainable_lora::{
        TrainableLora, attach_trainable, diffusers_lora_bytes, lora_targets,
    };
    use anneal_image::pipeline::FluxPipeline;
    use anneal_image::training_examples::{
        EncodedExample, TrainingImage, draw_model_latents, encode_examples,
    };
    use anneal_model::llm::recompute::layer_seeds;
    use burn::tensor::DType;

    use super::*;
    use crate::train_backend::CpuTrainBackend;

    type A = CpuTrainBackend;

    const BUCKET: Bucket = Bucket {
        width: 64,
        height: 64,
    };
    const SHAPE: [usize; 4] = [1, 4, 16, 16];

    fn tiny_pipeline() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/models/anneal-flux-tiny")
    }

    fn pipeline() -> FluxPipeline<A> {
        FluxPipeline::load_for_training(&tiny_pipeline(), &Default::default(), DType::F32, 16)
            .unwrap()
    }

    fn images() -> Vec<TrainingImage> {
        (0..2u8)
            .map(|i| {
                let image = image::RgbImage::from_fn(80, 80, |x, y| {
                    image::Rgb([x as u8 * (i + 1), y as u8, 200 - 90 * i])
                });
                TrainingImage {
                    name: format!("{i}.png"),
                    bucket: BUCKET,
                    pixels: fit_to_bucket(&image::DynamicImage::ImageRgb8(image), BUCKET),
                    caption: format!("sks dog number {i}"),
                }
            })
            .collect()
    }

    fn batch(
        pipeline: &FluxPipeline<A>,
        example: &EncodedExample,
        draws: &StepDraws,
    ) -> FlowBatch<A> {
        let device = Default::default();
        FlowBatch {
            latents: draw_model_latents(
                &pipeline.vae,
                &[example],
                draws.latent_tensor(&device),
                &device,
            ),
            context: Tensor::<A, 2>::from_data(example.context.clone(), &device).unsqueeze_dim(0),
            pooled: Tensor::<A, 1>::from_data(example.pooled.clone(), &device).unsqueeze_dim(0),
        }
    }

    /// Three steps of a fresh adapter; its diffusers file and the losses.
    fn three_steps(seed: u64) -> (Vec<u8>, Vec<f64>) {
        let pipeline = pipeline();
        let device = Default::default();
        let (examples, _) = encode_examples(&pipeline, &images(), &device).unwrap();
        let settings = TrainableLora {
            rank: 4,
            alpha: 4.0,
            dropout: 0.0,
            seed,
            include_mlp: false,
        };
        let targets = lora_targets(2, 4, false);
        let mut model =
            attach_trainable(pipeline.transformer.clone(), &targets, &settings).unwrap();
        let mut optimizer: ImageOptimizer<A> = crate::optimizer::adamw(0.0);
        let mut losses = Vec::new();
        for step in 0..3u64 {
            let draws = StepDraws::for_step(seed, step, SHAPE);
            let sigmas = shifted_sigmas(&pipeline.scheduler, &draws.levels, BUCKET.tokens());
            let batch = batch(&pipeline, &examples[step as usize % 2], &draws);
            let report;
            (model, report) = image_step(
                model,
                &mut optimizer,
                &batch,
                draws.noise_tensor(&device),
                &sigmas,
                LayerActivations::Recomputed,
                1e-3,
                1.0,
            );
            assert!(
                report.loss.is_finite() && report.grad_norm > 0.0,
                "{report:?}"
            );
            losses.push(report.loss);
        }
        (
            diffusers_lora_bytes(&mut model, &targets, &settings).unwrap(),
            losses,
        )
    }

    #[test]
    fn the_same_seed_gives_the_same_adapter_bit_for_bit_and_another_seed_does_not() {
        let _rng = crate::backend_rng_lock();
        let (first, losses) = three_steps(11);
        let (again, losses_again) = three_steps(11);
        assert_eq!(losses, losses_again);
        assert!(first == again, "the adapter files differ");
        let (other, _) = three_steps(12);
        assert!(first != other);
    }

    /// The kept pass with each block started from the seed the recomputation gives
    /// it: the reference when LoRA dropout draws masks.
    fn kept_seeded_per_block(
        model: &FluxTransformer<A>,
        batch: &FlowBatch<A>,
        noise: Tensor<A, 4>,
        sigmas: &[f32],
    ) -> (f64, GradientsParams) {
        let device = Default::default();
        let targets = FlowTargets::new(batch, noise, sigmas);
        let cond = targets.conditioning(batch, sigmas);
        let inputs = model.block_inputs(targets.noisy.clone(), targets.grid, &cond);
        let doubles = model.double_blocks.len();
        let seeds = layer_seeds::<A>(doubles + model.single_blocks.len(), &device);
        let (mut text, mut image) = (inputs.text, inputs.image);
        for (block, seed) in model.double_blocks.iter().zip(&seeds) {
            A::seed(&device, *seed);
            (text, image) = block.forward(image, text, &inputs.temb, &inputs.rope);
        }
        let text_len = text.dims()[1];
        let mut joined = Tensor::cat(vec![text, image], 1);
        for (block, seed) in model.single_blocks.iter().zip(&seeds[doubles..]) {
            A::seed(&device, *seed);
            joined = block.forward(joined, &inputs.temb, &inputs.rope);
        }
        let velocity = model.velocity(joined, text_len, &inputs.temb);
        let loss = velocity_loss(velocity, targets.target.clone());
        let grads = GradientsParams::from_grads(loss.backward(), model);
        (loss.into_scalar().elem::<f64>(), grads)
    }

    /// Recomputing the transformer's blocks in the backward pass gives the loss and
    /// every adapter gradient of the pass that keeps them: without dropout, that pass
    /// itself; with LoRA dropout, that pass with each block's masks drawn from the
    /// seed the recomputation draws them from.
    #[test]
    fn recomputed_blocks_give_the_kept_blocks_loss_and_gradients() {
        let _rng = crate::backend_rng_lock();
        use burn::module::{ModuleVisitor, Param};

        struct Collect<'a>(&'a GradientsParams, Vec<Vec<f32>>);
        impl ModuleVisitor<A> for Collect<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<A, D>>) {
                type Inner = <A as AutodiffBackend>::InnerBackend;
                if let Some(grad) = self.0.get::<Inner, D>(param.id) {
                    self.1.push(grad.into_data().to_vec::<f32>().unwrap());
                }
            }
        }
        let assert_same = |model: &FluxTransformer<A>,
                           (loss, grads): (f64, GradientsParams),
                           (want_loss, want): (f64, GradientsParams)| {
            assert!(
                (loss - want_loss).abs() <= 1e-6 * want_loss.abs(),
                "{loss} vs {want_loss}"
            );
            let (mut got, mut wanted) = (Collect(&grads, Vec::new()), Collect(&want, Vec::new()));
            model.visit(&mut got);
            model.visit(&mut wanted);
            // q, k, v, out and the MLP's projections of 2 double and 4 single blocks, A and B each.
            assert_eq!(got.1.len(), wanted.1.len());
            assert!(got.1.len() > 40, "{} adapter gradients", got.1.len());
            let scale = wanted.1.iter().flatten().fold(0f32, |m, v| m.max(v.abs()));
            let gap = got
                .1
                .iter()
                .flatten()
                .zip(wanted.1.iter().flatten())
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(scale > 1e-6 && gap <= 1e-5 * scale, "gap {gap} of {scale}");
        };

        let pipeline = pipeline();
        let device = Default::default();
        let (examples, _) = encode_examples(&pipeline, &images(), &device).unwrap();
        let draws = StepDraws::for_step(3, 0, SHAPE);
        let sigmas = shifted_sigmas(&pipeline.scheduler, &draws.levels, BUCKET.tokens());
        let batch = batch(&pipeline, &examples[0], &draws);
        let noise = draws.noise_tensor(&device);
        for dropout in [0.0, 0.1] {
            let settings = TrainableLora {
                rank: 4,
                alpha: 4.0,
                dropout,
                seed: 3,
                include_mlp: true,
            };
            let targets = lora_targets(2, 4, true);
            let mut model =
                attach_trainable(pipeline.transformer.clone(), &targets, &settings).unwrap();
            // One step first, so every adapter's B is non-zero and all gradients flow.
            let mut optimizer: ImageOptimizer<A> = crate::optimizer::adamw(0.0);
            let kept = LayerActivations::Kept;
            (model, _) = image_step(
                model,
                &mut optimizer,
                &batch,
                noise.clone(),
                &sigmas,
                kept,
                1e-2,
                1.0,
            );

            A::seed(&device, 17);
            let recomputed = image_gradients(
                &model,
                &batch,
                noise.clone(),
                &sigmas,
                LayerActivations::Recomputed,
            );
            A::seed(&device, 17);
            let reference = match dropout == 0.0 {
                true => image_gradients(&model, &batch, noise.clone(), &sigmas, kept),
                false => kept_seeded_per_block(&model, &batch, noise.clone(), &sigmas),
            };
            assert_same(&model, recomputed, reference);
        }
    }

    #[test]
    fn a_batch_from_the_cache_is_the_batch_encoded_at_the_step() {
        let pipeline = pipeline();
        let device = Default::default();
        let images = images();
        let (examples, _) = encode_examples(&pipeline, &images, &device).unwrap();
        let draws = StepDraws::for_step(5, 0, SHAPE);
        let cached = batch(&pipeline, &examples[1], &draws);
        // Encoded now: the VAE's posterior of the same pixels, drawn with the same numbers.
        let posterior = pipeline
            .vae
            .encode(pixels_for_vae::<A>(&images[1].pixels, &device).unsqueeze_dim(0))
            .unwrap();
        let latents = pipeline.vae.to_model_latents(
            posterior.mean + posterior.logvar.mul_scalar(0.5).exp() * draws.latent_tensor(&device),
        );
        latents
            .into_data()
            .assert_eq(&cached.latents.clone().into_data(), true);
        let prompt = pipeline
            .encode_prompts(&[images[1].caption.as_str()])
            .unwrap();
        prompt
            .context
            .into_data()
            .assert_eq(&cached.context.clone().into_data(), true);
    }
}
