//! The whole pipeline from a prompt, loaded from the fixture's diffusers folder,
//! against FluxPipeline; and what a generation request is checked for.

use anneal_image::pipeline::{FluxPipeline, ImageRequest, PipelineError};
use burn::tensor::DType;

use super::fixtures::*;

fn request() -> ImageRequest {
    // 16x12 pixels through the fixture's 2x VAE: a 4x3 token grid.
    ImageRequest {
        width: 12,
        height: 16,
        steps: 3,
        guidance: 4.0,
        count: 1,
        seed: 7,
    }
}

fn pipeline() -> FluxPipeline<B> {
    FluxPipeline::load(&fixtures(), &Default::default(), DType::F32, 30).unwrap()
}

#[test]
fn a_prompt_becomes_the_image_flux_pipeline_makes() {
    let r = reference();
    let mut pipe = pipeline();
    let prompt = pipe
        .encode_prompts(&["a red circle on a blue background"])
        .unwrap();
    pipe.drop_text_encoders();
    let image = pipe
        .generate(
            &request(),
            &prompt,
            tensor::<4>(&r, "prompt_pipeline.noise"),
            |_| {},
        )
        .unwrap();
    assert_eq!(image.dims(), [1, 3, 16, 12]);
    let error = relative_error(&values(image), &r["prompt_pipeline.image"].0);
    eprintln!("prompt pipeline: image {error:e}");
    assert!(error < 5e-5, "image {error}");
    // With the text encoders dropped, no new prompt can be encoded.
    assert!(matches!(
        pipe.encode_prompts(&["two small green squares"]),
        Err(PipelineError::TextEncodersDropped)
    ));
}

#[test]
fn one_prompt_makes_n_images_from_seeded_noise() {
    let pipe = pipeline();
    let prompt = pipe
        .encode_prompts(&["a red circle on a blue background"])
        .unwrap();
    let request = ImageRequest {
        count: 2,
        ..request()
    };
    let noise = pipe.noise(&request).unwrap();
    assert_eq!(noise.dims(), [2, 4, 8, 6]);
    // Standard normal: mean near 0, variance near 1 over 384 draws.
    let draws = values(noise.clone());
    let mean = draws.iter().sum::<f32>() / draws.len() as f32;
    let var = draws.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / draws.len() as f32;
    assert!(
        mean.abs() < 0.15 && (var - 1.0).abs() < 0.2,
        "mean {mean}, var {var}"
    );
    assert_eq!(values(pipe.noise(&request).unwrap()), draws);
    let other = ImageRequest {
        seed: 8,
        ..request.clone()
    };
    assert_ne!(values(pipe.noise(&other).unwrap()), draws);

    let images = values(pipe.generate(&request, &prompt, noise, |_| {}).unwrap());
    let (first, second) = images.split_at(images.len() / 2);
    assert_ne!(first, second, "two images from different noise");
    assert!(images.iter().all(|v| (0.0..=1.0).contains(v)));
}

#[test]
fn bad_requests_are_refused_naming_the_setting() {
    let pipe = pipeline();
    let refused = |request: ImageRequest| pipe.check_request(&request).unwrap_err().to_string();
    let message = refused(ImageRequest {
        width: 13,
        ..request()
    });
    assert!(
        message.contains("size 13x16") && message.contains("multiples of 4"),
        "{message}"
    );
    assert!(
        refused(ImageRequest {
            steps: 0,
            ..request()
        })
        .contains("steps 0")
    );
    assert!(
        refused(ImageRequest {
            guidance: f32::NAN,
            ..request()
        })
        .contains("guidance NaN")
    );
    assert!(
        refused(ImageRequest {
            count: 0,
            ..request()
        })
        .contains("n must be")
    );
    let error =
        FluxPipeline::<B>::load(&fixtures().join("vae"), &Default::default(), DType::F32, 30)
            .err()
            .unwrap()
            .to_string();
    assert!(
        error.contains("not a diffusers FLUX pipeline folder"),
        "{error}"
    );
}

#[test]
fn a_pipelines_defaults_file_is_read_and_a_bad_one_is_named() {
    use anneal_image::pipeline::PipelineDefaults;
    // The fixture has none: FLUX.1's own defaults.
    let none = PipelineDefaults::read(&fixtures()).unwrap();
    assert_eq!(none, PipelineDefaults::default());
    assert_eq!(
        (none.size(), none.prompt_tokens(), none.guidance()),
        ((1024, 1024), 512, 3.5)
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("anneal_pipeline.json"),
        r#"{"max_sequence_length": 16, "width": 32, "height": 48, "num_inference_steps": 20}"#,
    )
    .unwrap();
    let read = PipelineDefaults::read(dir.path()).unwrap();
    assert_eq!(
        (read.size(), read.prompt_tokens(), read.num_inference_steps),
        ((32, 48), 16, Some(20))
    );
    std::fs::write(dir.path().join("anneal_pipeline.json"), r#"{"steps": 20}"#).unwrap();
    let error = PipelineDefaults::read(dir.path()).unwrap_err().to_string();
    assert!(
        error.contains("anneal_pipeline.json") && error.contains("steps"),
        "{error}"
    );
}
