//! Everything an image run computes once before its first step: the folder read and
//! fitted to its buckets, the pipeline loaded (the frozen transformer in the
//! backend's dtype, bf16 on CUDA), every caption and sample prompt through T5 and
//! CLIP and every image through the VAE encoder, then the text encoders and the VAE
//! encoder freed. What is left for the steps is the transformer, the VAE decoder
//! (for sample images) and the encoded examples on the host.

use std::path::Path;

use anneal_crds::ResolvedHyperparameters;
use anneal_crds::events::LogLevel;
use anneal_crds::finetunejob::SamplePrompt;
use anneal_image::flux::trainable_lora::{TrainableLora, lora_targets};
use anneal_image::pipeline::{FluxPipeline, PipelineDefaults};
use anneal_image::sample::Sampling;
use anneal_image::training_examples::{EncodedExample, encode_examples};
use anneal_model::backend::compute_dtype;
use burn::tensor::backend::AutodiffBackend;

use super::ImageRunInputs;
use crate::TrainError;
use crate::image::folder::{LoadedFolder, load_image_folder};
use crate::image::order::steps_per_epoch;
use crate::image::samples::{SampleImagePrompt, default_sample_prompts, encode_sample_prompts};
use crate::state::DataOrder;

/// What the steps, samples and checkpoints of an image run work from.
pub(crate) struct Prepared<B: AutodiffBackend> {
    /// Without its text encoders and VAE encoder.
    pub pipeline: FluxPipeline<B>,
    pub examples: Vec<EncodedExample>,
    pub prompts: Vec<SampleImagePrompt<B::InnerBackend>>,
    /// The side of the square buckets' images and of the sample images.
    pub resolution: u32,
    /// The adapted layers and the adapter's shape.
    pub targets: Vec<String>,
    pub lora: TrainableLora,
    /// What the run reports before its first step (files left out, captions cut).
    pub notes: Vec<(LogLevel, String)>,
}

/// The resolution a job without `hyperparameters.resolution` trains at: the
/// pipeline's own picture size, rounded up to a multiple of 64 (1024 for FLUX.1, 64
/// for the bundled tiny model, which draws 32x32).
pub fn default_resolution(defaults: &PipelineDefaults) -> u32 {
    let (width, height) = defaults.size();
    (width.max(height) as u32).div_ceil(64).max(1) * 64
}

/// An image job's folder read and fitted to its buckets, before anything is written
/// or loaded: a folder that breaks a rule fails the run here, naming each file.
pub struct TrainingImages {
    /// The folder's URI, for messages and the model card.
    pub name: String,
    pub resolution: u32,
    pub folder: LoadedFolder,
}

impl TrainingImages {
    /// Reads the local folder `dir` (named `name`) for a job with hyperparameters `h`
    /// on the pipeline in `model_dir` (whose size is the default resolution).
    pub fn read(
        name: &str,
        dir: &Path,
        h: &ResolvedHyperparameters,
        model_dir: &Path,
    ) -> Result<Self, TrainError> {
        let defaults = PipelineDefaults::read(model_dir)?;
        let resolution = h
            .resolution
            .unwrap_or_else(|| default_resolution(&defaults));
        Ok(Self {
            name: name.to_owned(),
            resolution,
            folder: load_image_folder(dir, h, resolution)?,
        })
    }
}

impl<B: AutodiffBackend> Prepared<B> {
    /// Loads the pipeline and encodes the examples and sample prompts.
    pub fn load(inputs: &ImageRunInputs, device: &B::Device) -> Result<Self, TrainError> {
        let h = &inputs.settings.hyperparameters;
        let model_dir = &inputs.base_model.dir;
        let defaults = PipelineDefaults::read(model_dir)?;
        let resolution = inputs.images.resolution;
        let folder = &inputs.images.folder;
        let mut notes: Vec<(LogLevel, String)> = folder
            .notes
            .iter()
            .map(|note| (LogLevel::Info, note.clone()))
            .collect();

        let mut pipeline = FluxPipeline::<B>::load_for_training(
            model_dir,
            device,
            compute_dtype::<B>(),
            defaults.prompt_tokens(),
        )?;
        let (examples, cut) = encode_examples(&pipeline, &folder.images, device)?;
        for caption in cut {
            notes.push((
                LogLevel::Warn,
                format!(
                    "{}: the caption is {} T5 tokens; only the first {} are trained on",
                    caption.name, caption.tokens, caption.kept
                ),
            ));
        }
        let captions: Vec<&str> = folder.images.iter().map(|i| i.caption.as_str()).collect();
        let wanted = sample_prompts(
            &inputs.settings.checkpoints.sample_prompts,
            h,
            &captions,
            &defaults,
            &pipeline,
        );
        let prompts = encode_sample_prompts(&pipeline, &wanted)?;
        pipeline.drop_text_encoders();
        pipeline.drop_vae_encoder();

        let config = &pipeline.transformer_config;
        let targets = lora_targets(
            config.num_layers,
            config.num_single_layers,
            h.lora_include_mlp,
        );
        Ok(Self {
            pipeline,
            examples,
            prompts,
            resolution,
            targets,
            lora: trainable_lora(h),
            notes,
        })
    }

    /// The order's figures: `repeats` times each image per epoch, in batches of one
    /// bucket of at most `batchSize`.
    pub fn order(&self, h: &ResolvedHyperparameters) -> DataOrder {
        let buckets: Vec<_> = self.examples.iter().map(|e| e.bucket).collect();
        let batch_size = h.batch_size.max(1) as usize;
        DataOrder {
            seed: h.seed,
            train_samples: self.examples.len(),
            mixed_per_epoch: Vec::new(),
            validation_samples: 0,
            dropped_too_long: 0,
            micro_batch_size: batch_size,
            gradient_accumulation: 1,
            steps_per_epoch: steps_per_epoch(&buckets, h.repeats, batch_size),
            validation_lines: Vec::new(),
        }
    }

    /// The examples and their buckets, for messages.
    pub fn describe(&self, images: &str) -> String {
        let mut buckets: Vec<String> = self.examples.iter().map(|e| e.bucket.to_string()).collect();
        buckets.sort();
        buckets.dedup();
        format!(
            "{} images from {} in buckets {}",
            self.examples.len(),
            images,
            buckets.join(", ")
        )
    }
}

/// The adapter the job asks for.
pub fn trainable_lora(h: &ResolvedHyperparameters) -> TrainableLora {
    TrainableLora {
        rank: h.lora_rank as usize,
        alpha: f64::from(h.lora_alpha),
        dropout: h.lora_dropout,
        seed: h.seed,
        include_mlp: h.lora_include_mlp,
    }
}

/// The job's sample prompts with their seeds and sampling, each setting the prompt
/// leaves out taken from the job (the seed) or the pipeline (steps, guidance); the
/// default prompts when the job has none.
fn sample_prompts<B: AutodiffBackend>(
    given: &[SamplePrompt],
    h: &ResolvedHyperparameters,
    captions: &[&str],
    defaults: &PipelineDefaults,
    pipeline: &FluxPipeline<B>,
) -> Vec<(String, u64, Sampling)> {
    let default_sampling = Sampling {
        steps: defaults.steps(&pipeline.transformer_config),
        guidance: defaults.guidance(),
    };
    let given: Vec<(String, u64, Sampling)> = given
        .iter()
        .filter_map(|p| {
            let text = p.prompt.clone()?;
            let sampling = Sampling {
                steps: p.steps.map_or(default_sampling.steps, |s| s as usize),
                guidance: p.guidance.map_or(default_sampling.guidance, |g| g as f32),
            };
            Some((text, p.seed.unwrap_or(h.seed), sampling))
        })
        .collect();
    if !given.is_empty() {
        return given;
    }
    default_sample_prompts(h.trigger_word.as_deref(), captions)
        .into_iter()
        .map(|text| (text, h.seed, default_sampling))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_resolution_is_the_pipelines_size_rounded_up_to_64() {
        let size = |width, height| PipelineDefaults {
            width,
            height,
            ..Default::default()
        };
        assert_eq!(default_resolution(&size(None, None)), 1024);
        assert_eq!(default_resolution(&size(Some(32), Some(32))), 64);
        assert_eq!(default_resolution(&size(Some(768), Some(1000))), 1024);
        assert_eq!(default_resolution(&size(Some(512), Some(512))), 512);
    }
}
