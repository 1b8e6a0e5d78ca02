//! LoRA training on the bundled tiny FLUX transformer: the flow-matching loss falls
//! under AdamW with the base frozen, a fresh adapter leaves the model as it was, and
//! the trained adapter written in diffusers' format reads back to the same model.

use std::path::{Path, PathBuf};

use anneal_image::flow_matching::{FlowBatch, flow_matching_loss};
use anneal_image::flux::lora::{FluxLora, attach_loras};
use anneal_image::flux::trainable_lora::{
    TrainableLora, attach_trainable, diffusers_lora_bytes, lora_targets,
};
use anneal_image::flux::{Conditioning, FluxTransformer, load_flux_transformer};
use anneal_image::latents::pack;
use anneal_model::backend::CpuBackend;
use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::DType;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

type Train = Autodiff<CpuBackend>;

fn tiny_transformer() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/models/anneal-flux-tiny/transformer")
}

/// Standard normal draws from a seeded generator (Box-Muller), as a tensor.
fn normal<B: Backend, const D: usize>(
    shape: [usize; D],
    seed: u64,
    device: &B::Device,
) -> Tensor<B, D> {
    let mut rng = StdRng::seed_from_u64(seed);
    let count: usize = shape.iter().product();
    let values: Vec<f32> = (0..count)
        .map(|_| {
            let (u, v): (f64, f64) = (rng.random_range(1e-9..1.0), rng.random_range(0.0..1.0));
            ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
        })
        .collect();
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// One 32x32 image's worth of inputs for the tiny model: latents `[1, 4, 4, 4]`,
/// 8 text tokens of width 32, a pooled vector of 32.
fn batch<B: Backend>(device: &B::Device) -> FlowBatch<B> {
    FlowBatch {
        latents: normal([1, 4, 4, 4], 1, device),
        context: normal([1, 8, 32], 2, device),
        pooled: normal([1, 32], 3, device),
    }
}

const SETTINGS: TrainableLora = TrainableLora {
    rank: 4,
    alpha: 4.0,
    dropout: 0.0,
    seed: 7,
    include_mlp: true,
};

fn loaded<B: Backend>(device: &B::Device) -> FluxTransformer<B> {
    load_flux_transformer::<B>(&tiny_transformer(), device, DType::F32)
        .expect("the tiny transformer loads")
        .1
}

/// `steps` AdamW steps on one batch with fixed noise and noise level; the losses.
fn train(model: &mut FluxTransformer<Train>, steps: usize) -> Vec<f32> {
    let device = Default::default();
    let batch = batch::<Train>(&device);
    let noise = normal::<Train, 4>([1, 4, 4, 4], 4, &device);
    let mut optimizer = AdamWConfig::new().with_weight_decay(0.0).init();
    let mut losses = Vec::new();
    for _ in 0..steps {
        let loss = flow_matching_loss(model, &batch, noise.clone(), &[0.6]);
        losses.push(loss.clone().into_scalar());
        let grads = GradientsParams::from_grads(loss.backward(), &*model);
        *model = optimizer.step(1e-2, model.clone(), grads);
    }
    losses
}

#[test]
fn adamw_on_the_adapter_lowers_the_flow_matching_loss_and_leaves_the_base_as_it_was() {
    let device = Default::default();
    let base = loaded::<Train>(&device);
    let targets = lora_targets(2, 4, true);
    assert_eq!(targets.len(), 2 * 12 + 4 * 5);
    let mut model = attach_trainable(base.clone(), &targets, &SETTINGS).unwrap();

    // B starts at zero: the adapted model computes what the base does.
    let before = flow_matching_loss(
        &model,
        &batch(&device),
        normal([1, 4, 4, 4], 4, &device),
        &[0.6],
    )
    .into_scalar();
    let base_loss = flow_matching_loss(
        &base,
        &batch(&device),
        normal([1, 4, 4, 4], 4, &device),
        &[0.6],
    )
    .into_scalar();
    assert!((before - base_loss).abs() < 1e-6, "{before} vs {base_loss}");

    let losses = train(&mut model, 30);
    let (first, last) = (losses[0], *losses.last().unwrap());
    assert!(
        last < 0.5 * first,
        "the loss fell from {first} to {last}: {losses:?}"
    );

    // Only the adapters moved: a base weight is as loaded.
    let mut trained = model.clone();
    let mut fresh = loaded::<Train>(&device);
    let weight = |m: &mut FluxTransformer<Train>| {
        m.projection_mut("transformer_blocks.0.attn.to_q")
            .unwrap()
            .base
            .weight
            .val()
            .into_data()
    };
    weight(&mut trained).assert_eq(&weight(&mut fresh), true);
}

#[test]
fn a_trained_adapter_written_for_diffusers_reads_back_to_the_same_model() {
    let device = Default::default();
    let targets = lora_targets(2, 4, false);
    let mut model = attach_trainable(loaded::<Train>(&device), &targets, &SETTINGS).unwrap();
    train(&mut model, 5);
    let bytes = diffusers_lora_bytes(&mut model, &targets, &SETTINGS).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pytorch_lora_weights.safetensors");
    std::fs::write(&file, &bytes).unwrap();
    let adapter = FluxLora::read(&file).unwrap();
    assert_eq!(adapter.modules().count(), targets.len());

    let mut reloaded = loaded::<CpuBackend>(&device);
    attach_loras(&mut reloaded, &[adapter]).unwrap();
    let trained = model.valid();
    let inputs = batch::<CpuBackend>(&device);
    let cond = Conditioning {
        context: inputs.context.clone(),
        pooled: inputs.pooled.clone(),
        timestep: &[0.6],
        guidance: Some(&[1.0]),
    };
    let latents = pack(inputs.latents.clone());
    let expected = trained.forward(latents.clone(), (2, 2), &cond);
    let got = reloaded.forward(latents, (2, 2), &cond);
    let difference = (expected.clone() - got).abs().max().into_scalar();
    assert!(difference < 1e-5, "max difference {difference}");
    // And the update is really there: the base alone differs.
    let base = loaded::<CpuBackend>(&device).forward(pack(inputs.latents), (2, 2), &cond);
    let moved = (expected - base).abs().max().into_scalar();
    assert!(moved > 1e-4, "training moved the output by {moved}");
}

fn tiny_pipeline() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/models/anneal-flux-tiny")
}

#[test]
fn examples_are_encoded_once_per_bucket_with_long_captions_reported() {
    use anneal_image::buckets::{fit_to_bucket, nearest_bucket};
    use anneal_image::pipeline::FluxPipeline;
    use anneal_image::training_examples::{TrainingImage, draw_model_latents, encode_examples};

    let device = Default::default();
    let pipeline =
        FluxPipeline::<CpuBackend>::load_for_training(&tiny_pipeline(), &device, DType::F32, 16)
            .unwrap();
    let photo = |width: u32, height: u32| {
        image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x * 3) as u8, (y * 5) as u8, 120])
        }))
    };
    let long = ["a very long caption about a small brown dog"; 6].join(", ");
    let images: Vec<TrainingImage> = [
        ("square.png", photo(90, 80), "sks dog"),
        ("wide.png", photo(160, 120), long.as_str()),
    ]
    .into_iter()
    .map(|(name, image, caption)| {
        let bucket = nearest_bucket(image.width(), image.height(), 64);
        TrainingImage {
            name: name.to_owned(),
            bucket,
            pixels: fit_to_bucket(&image, bucket),
            caption: caption.to_owned(),
        }
    })
    .collect();
    let (examples, cut) = encode_examples(&pipeline, &images, &device).unwrap();

    // The tiny VAE halves twice: 64x64 -> 16x16 latents of 4 channels, 64x48 -> 16x12.
    assert_eq!(examples[0].bucket.to_string(), "64x64");
    assert_eq!(examples[0].latent_mean.shape.to_vec(), vec![4, 16, 16]);
    assert_eq!(examples[1].bucket.to_string(), "64x48");
    assert_eq!(examples[1].latent_logvar.shape.to_vec(), vec![4, 12, 16]);
    // T5 states at the pipeline's 16 tokens, CLIP's pooled vector.
    assert_eq!(examples[1].context.shape.to_vec(), vec![16, 32]);
    assert_eq!(examples[1].pooled.shape.to_vec(), vec![32]);
    // Only the long caption was cut, and the report says by how much.
    assert_eq!(cut.len(), 1, "{cut:?}");
    assert_eq!((cut[0].name.as_str(), cut[0].kept), ("wide.png", 16));
    assert!(cut[0].tokens > 40, "{cut:?}");

    // The cache holds what encoding the caption directly gives.
    let direct = pipeline.encode_prompts(&["sks dog"]).unwrap();
    direct
        .context
        .squeeze_dim::<2>(0)
        .into_data()
        .assert_eq(&examples[0].context, true);

    // With zero draws, the latents are the mean, shifted and scaled for the model.
    let zero = Tensor::<CpuBackend, 4>::zeros([1, 4, 16, 16], &device);
    let drawn = draw_model_latents(&pipeline.vae, &[&examples[0]], zero, &device);
    let mean = Tensor::<CpuBackend, 3>::from_data(examples[0].latent_mean.clone(), &device)
        .unsqueeze_dim::<4>(0);
    pipeline
        .vae
        .to_model_latents(mean)
        .into_data()
        .assert_approx_eq::<f32>(&drawn.into_data(), burn::tensor::Tolerance::absolute(1e-6));
}
