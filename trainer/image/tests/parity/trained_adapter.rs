//! An adapter as Anneal's trainer writes it, loaded by diffusers: three AdamW steps of
//! the flow-matching loss on the fixture's transformer (LoRA rank 4, alpha 8 on
//! attention and MLP layers of both block kinds), written with
//! `diffusers_lora_bytes` to `anneal-trained/pytorch_lora_weights.safetensors`;
//! `scripts/reference/anneal_lora_in_diffusers.py` loads that file with
//! `FluxPipeline.load_lora_weights` and stores the image it draws from the LoRA case's
//! noise (`anneal-trained/diffusers_image.safetensors`). The same file through
//! Anneal's pipeline must draw the same image.
//!
//! The committed file must be what the trainer writes now (the test fails when the
//! bytes differ); `ANNEAL_UPDATE_FIXTURES=1` rewrites it, and the script is then run
//! again for the image.

use anneal_image::flow_matching::{FlowBatch, flow_matching_loss};
use anneal_image::flux::load_flux_transformer;
use anneal_image::flux::lora::{FluxLora, LORA_FILE};
use anneal_image::flux::trainable_lora::{
    TrainableLora, attach_trainable, diffusers_lora_bytes, lora_targets,
};
use anneal_image::pipeline::{FluxPipeline, ImageRequest};
use burn::backend::Autodiff;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::DType;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::fixtures::*;

type Train = Autodiff<B>;

const SETTINGS: TrainableLora = TrainableLora {
    rank: 4,
    alpha: 8.0,
    dropout: 0.0,
    seed: 11,
    include_mlp: true,
};

/// Uniform draws in [-1, 1) from a seeded generator, as a tensor.
fn uniform<const D: usize>(shape: [usize; D], seed: u64) -> Tensor<Train, D> {
    let mut rng = StdRng::seed_from_u64(seed);
    let count: usize = shape.iter().product();
    let values: Vec<f32> = (0..count).map(|_| rng.random_range(-1.0..1.0)).collect();
    Tensor::from_data(TensorData::new(values, shape), &Default::default())
}

/// The adapter file after three steps on a fixed batch (latents of a 16x16 picture
/// through the fixture's 2x VAE, 5 text tokens), as the trainer writes it.
fn trained_adapter() -> Vec<u8> {
    let device = Default::default();
    let (config, base) =
        load_flux_transformer::<Train>(&fixtures().join("transformer"), &device, DType::F32)
            .unwrap();
    let targets = lora_targets(config.num_layers, config.num_single_layers, true);
    let mut model = attach_trainable(base, &targets, &SETTINGS).unwrap();
    let batch = FlowBatch {
        latents: uniform([1, 4, 8, 8], 1),
        context: uniform([1, 5, config.joint_attention_dim], 2),
        pooled: uniform([1, config.pooled_projection_dim], 3),
    };
    let mut optimizer = AdamWConfig::new().with_epsilon(1e-8).init();
    for step in 0..3u64 {
        let loss = flow_matching_loss(&model, &batch, uniform([1, 4, 8, 8], 10 + step), &[0.7]);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(2e-2, model, grads);
    }
    diffusers_lora_bytes(&mut model, &targets, &SETTINGS).unwrap()
}

/// Whether two adapter files hold the same metadata and tensors, their values equal
/// to 1e-4 of the largest. Another CPU sums in another order, and AdamW divides each
/// gradient by its own running size, so an entry whose gradient is near zero moves by
/// a share of the step that rounding decides: on an AMD EPYC machine the committed
/// file (written on another) differs by 1.5e-5. A changed step moves far more: one
/// step more differs by 9e-2.
fn same_adapter(committed: &[u8], written: &[u8]) -> Result<(), String> {
    let metadata = |bytes: &[u8]| {
        safetensors::SafeTensors::read_metadata(bytes)
            .map(|(_, header)| header.metadata().clone())
            .map_err(|e| e.to_string())
    };
    if metadata(committed)? != metadata(written)? {
        return Err("other metadata".into());
    }
    let (a, b) = (
        safetensors::SafeTensors::deserialize(committed).map_err(|e| e.to_string())?,
        safetensors::SafeTensors::deserialize(written).map_err(|e| e.to_string())?,
    );
    let (mut names, mut others) = (a.names(), b.names());
    names.sort();
    others.sort();
    if names != others {
        return Err("other tensors".into());
    }
    let floats = |data: &[u8]| -> Vec<f32> {
        data.chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    };
    for name in names {
        let (x, y) = (a.tensor(name).unwrap(), b.tensor(name).unwrap());
        if x.shape() != y.shape() {
            return Err(format!(
                "{name}: shape {:?}, now {:?}",
                x.shape(),
                y.shape()
            ));
        }
        let error = relative_error(&floats(y.data()), &floats(x.data()));
        if error > 1e-4 {
            return Err(format!("{name}: relative difference {error}"));
        }
    }
    Ok(())
}

#[test]
fn an_adapter_anneal_trained_draws_in_anneal_what_diffusers_draws_with_it() {
    let folder = fixtures().join("anneal-trained");
    let file = folder.join(LORA_FILE);
    let written = trained_adapter();
    if std::env::var_os("ANNEAL_UPDATE_FIXTURES").is_some() {
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(&file, &written).unwrap();
        eprintln!(
            "wrote {}; now run scripts/reference/anneal_lora_in_diffusers.py",
            file.display()
        );
        return;
    }
    let committed = std::fs::read(&file).unwrap();
    if let Err(why) = same_adapter(&committed, &written) {
        panic!(
            "{} is not what the trainer writes now ({why}): run this test with \
             ANNEAL_UPDATE_FIXTURES=1, then scripts/reference/anneal_lora_in_diffusers.py",
            file.display()
        );
    }

    // Diffusers' image, drawn with the file from the LoRA case's noise.
    let bytes = std::fs::read(folder.join("diffusers_image.safetensors")).unwrap();
    let stored = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let image = stored.tensor("image").unwrap();
    let theirs: Vec<f32> = image
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();

    let r = reference();
    let mut pipe =
        FluxPipeline::<B>::load(&fixtures(), &Default::default(), DType::F32, 30).unwrap();
    let prompt = pipe
        .encode_prompts(&["a red circle on a blue background"])
        .unwrap();
    let request = ImageRequest {
        width: 12,
        height: 16,
        steps: 3,
        guidance: 4.0,
        count: 1,
        seed: 0,
    };
    pipe.set_adapters(&[FluxLora::read(&folder).unwrap()])
        .unwrap();
    let ours = values(
        pipe.generate(&request, &prompt, tensor::<4>(&r, "lora.noise"), |_| {})
            .unwrap(),
    );
    let error = relative_error(&ours, &theirs);
    // The adapter matters: diffusers' image with it is far from the base model's.
    let moved = relative_error(&r["lora.image_none"].0, &theirs);
    eprintln!(
        "anneal-trained adapter: Anneal vs diffusers {error:e}; with vs without it {moved:e}"
    );
    assert!(error < 5e-5, "relative error {error}");
    assert!(
        moved > 1e-2,
        "the adapter moved diffusers' image by {moved}"
    );
}
