//! An image job's sample images: its sample prompts drawn at every checkpoint with
//! the adapter as trained so far, through the same steps as `trainer generate-image`
//! (seeded noise, Euler steps, the VAE decoder), so a checkpoint's samples are what
//! serving its adapter gives for the same prompt and seed.

use anneal_image::flux::FluxTransformer;
use anneal_image::pipeline::{FluxPipeline, PipelineError, seeded_noise};
use anneal_image::png_out::rgb_bytes;
use anneal_image::sample::{PromptEmbeddings, Sampling, generate_images};
use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

/// One sample prompt, encoded before the text encoders are freed.
pub struct SampleImagePrompt<B: Backend> {
    pub text: String,
    pub seed: u64,
    pub sampling: Sampling,
    pub embeddings: PromptEmbeddings<B>,
}

/// The default sample prompts of a job without its own: the trigger word alone and
/// in two scenes, so each checkpoint shows whether the word brings the subject.
pub fn default_sample_prompts(trigger_word: Option<&str>, first_captions: &[&str]) -> Vec<String> {
    match trigger_word {
        Some(word) => vec![
            word.to_owned(),
            format!("a photo of {word}"),
            format!("{word} in a garden, soft light"),
        ],
        None => first_captions
            .iter()
            .take(3)
            .map(|c| (*c).to_owned())
            .collect(),
    }
}

/// Encodes `prompts` with the pipeline's text encoders, for the inner (no-gradient)
/// backend the samples are drawn on.
pub fn encode_sample_prompts<B: AutodiffBackend>(
    pipeline: &FluxPipeline<B>,
    prompts: &[(String, u64, Sampling)],
) -> Result<Vec<SampleImagePrompt<B::InnerBackend>>, PipelineError> {
    prompts
        .iter()
        .map(|(text, seed, sampling)| {
            let encoded = pipeline.encode_prompts(&[text.as_str()])?;
            Ok(SampleImagePrompt {
                text: text.clone(),
                seed: *seed,
                sampling: *sampling,
                embeddings: PromptEmbeddings {
                    context: encoded.context.inner(),
                    pooled: encoded.pooled.inner(),
                },
            })
        })
        .collect()
}

/// Each prompt's image at `width` x `height` from `model` (the training transformer
/// with its adapter), as 8-bit RGB.
pub fn draw_samples<B: AutodiffBackend>(
    pipeline: &FluxPipeline<B>,
    model: &FluxTransformer<B>,
    prompts: &[SampleImagePrompt<B::InnerBackend>],
    width: usize,
    height: usize,
) -> Result<Vec<Vec<u8>>, PipelineError> {
    let transformer = model.valid();
    let vae = pipeline.vae.valid();
    let vae_scale = pipeline.vae_config.scale();
    let channels = pipeline.transformer_config.latent_channels();
    let device = transformer.x_embedder.base.weight.device();
    let mut images = Vec::with_capacity(prompts.len());
    for prompt in prompts {
        let shape = [1, channels, height / vae_scale, width / vae_scale];
        let noise = seeded_noise::<B::InnerBackend>(shape, prompt.seed, &device);
        let pixels = generate_images(
            &transformer,
            &vae,
            &pipeline.scheduler,
            &prompt.embeddings,
            noise,
            prompt.sampling,
            |_| {},
        )
        .map_err(PipelineError::from)?; // [1, 3, h, w]
        let chw = pixels
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .map_err(|e| PipelineError::Request(format!("{e:?}")))?;
        images.push(rgb_bytes(&chw, width, height));
    }
    Ok(images)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use anneal_image::flux::trainable_lora::{TrainableLora, attach_trainable, lora_targets};
    use anneal_image::pipeline::ImageRequest;
    use burn::tensor::DType;

    use super::*;
    use crate::train_backend::CpuTrainBackend;

    type A = CpuTrainBackend;

    #[test]
    fn a_fresh_adapters_sample_is_the_base_models_image_for_the_same_prompt_and_seed() {
        let dir =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/models/anneal-flux-tiny");
        let device = Default::default();
        let pipeline = FluxPipeline::<A>::load_for_training(&dir, &device, DType::F32, 16).unwrap();
        let sampling = Sampling {
            steps: 4,
            guidance: 3.5,
        };
        let prompts =
            encode_sample_prompts(&pipeline, &[("a photo of sks dog".to_owned(), 3, sampling)])
                .unwrap();
        let settings = TrainableLora {
            rank: 2,
            alpha: 2.0,
            dropout: 0.0,
            seed: 1,
            include_mlp: false,
        };
        let model = attach_trainable(
            pipeline.transformer.clone(),
            &lora_targets(2, 4, false),
            &settings,
        )
        .unwrap();
        let sample = draw_samples(&pipeline, &model, &prompts, 32, 32).unwrap();

        // What trainer generate-image computes: the base pipeline, the same seed.
        let base =
            FluxPipeline::<anneal_model::backend::CpuBackend>::load(&dir, &device, DType::F32, 16)
                .unwrap();
        let request = ImageRequest {
            width: 32,
            height: 32,
            steps: 4,
            guidance: 3.5,
            count: 1,
            seed: 3,
        };
        let embeddings = base.encode_prompts(&["a photo of sks dog"]).unwrap();
        let noise = base.noise(&request).unwrap();
        let image = base.generate(&request, &embeddings, noise, |_| {}).unwrap();
        let chw = image.into_data().to_vec::<f32>().unwrap();
        assert_eq!(sample, vec![rgb_bytes(&chw, 32, 32)]);
    }

    #[test]
    fn default_prompts_lead_with_the_trigger_word() {
        assert_eq!(
            default_sample_prompts(Some("sks dog"), &["x"]),
            vec![
                "sks dog",
                "a photo of sks dog",
                "sks dog in a garden, soft light"
            ]
        );
        assert_eq!(
            default_sample_prompts(None, &["a dog", "a cat", "a cow", "a hen"]),
            vec!["a dog", "a cat", "a cow"]
        );
    }
}
