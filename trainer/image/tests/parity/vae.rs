//! The VAE and a whole generation, against diffusers.

use anneal_image::flux::load_flux_transformer;
use anneal_image::latents::pack;
use anneal_image::sample::{PromptEmbeddings, decode_images, denoise};
use anneal_image::schedule::SchedulerConfig;
use anneal_image::vae::{VaeParts, load_vae};
use burn::tensor::DType;

use super::fixtures::*;

#[test]
fn the_vae_encodes_and_decodes_as_diffusers_does() {
    let r = reference();
    let (config, vae) = load_vae::<B>(
        &fixtures().join("vae"),
        VaeParts::EncoderAndDecoder,
        &Default::default(),
        DType::F32,
    )
    .unwrap();
    assert_eq!(config.scale(), 2);
    let dist = vae.encode(tensor::<4>(&r, "vae.image")).unwrap();
    let mean = relative_error(&values(dist.mean), &r["vae.mean"].0);
    let logvar = relative_error(&values(dist.logvar), &r["vae.logvar"].0);
    let decoded = relative_error(
        &values(vae.decode(tensor::<4>(&r, "vae.latents"))),
        &r["vae.decoded"].0,
    );
    eprintln!("vae: mean {mean:e}, logvar {logvar:e}, decoded {decoded:e}");
    assert!(mean < 1e-5 && logvar < 1e-5 && decoded < 1e-5);
    // Loaded for generation only, it has no encoder.
    let (_, decoder_only) = load_vae::<B>(
        &fixtures().join("vae"),
        VaeParts::DecoderOnly,
        &Default::default(),
        DType::F32,
    )
    .unwrap();
    assert!(decoder_only.encode(tensor::<4>(&r, "vae.image")).is_none());
}

#[test]
fn a_whole_generation_matches_flux_pipeline() {
    let r = reference();
    let device = Default::default();
    let (_, transformer) =
        load_flux_transformer::<B>(&fixtures().join("transformer"), &device, DType::F32).unwrap();
    let (_, vae) = load_vae::<B>(
        &fixtures().join("vae"),
        VaeParts::DecoderOnly,
        &device,
        DType::F32,
    )
    .unwrap();
    let scheduler = SchedulerConfig::read(&fixtures().join("scheduler")).unwrap();
    let prompt = PromptEmbeddings {
        context: tensor::<3>(&r, "pipeline.context"),
        pooled: tensor::<2>(&r, "pipeline.pooled"),
    };
    // 16x12 pixels through a 2x VAE: 8x6 latents, a 4x3 token grid.
    let noise = pack(tensor::<4>(&r, "pipeline.noise"));
    let mut steps_seen = Vec::new();
    let latents = denoise(
        &transformer,
        &scheduler,
        noise,
        (4, 3),
        &prompt,
        4,
        3.5,
        |i| steps_seen.push(i),
    )
    .unwrap();
    assert_eq!(steps_seen, [0, 1, 2, 3]);
    let latent_error = relative_error(&values(latents.clone()), &r["pipeline.final_latents"].0);
    let image = decode_images(&vae, latents, (4, 3));
    assert_eq!(image.dims(), [1, 3, 16, 12]);
    let image_error = relative_error(&values(image), &r["pipeline.image"].0);
    eprintln!("pipeline: latents {latent_error:e}, image {image_error:e}");
    assert!(latent_error < 1e-5, "latents {latent_error}");
    // The decoder amplifies the latents' f32 rounding a little.
    assert!(image_error < 5e-5, "image {image_error}");
}
