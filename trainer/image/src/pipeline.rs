//! A whole FLUX.1 pipeline from a diffusers folder (`model_index.json`, then
//! `transformer/`, `vae/`, `text_encoder/`, `tokenizer/`, `text_encoder_2/`,
//! `tokenizer_2/`, `scheduler/`): prompts to embeddings, seeded noise, denoising and
//! decoding, as FluxPipeline does. The text encoders can be dropped once the prompts
//! are encoded (T5-XXL is 9.5 GB in bf16).

use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::tensor::DType;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::flux::lora::{FluxLora, FluxLoraError, attach_loras};
use crate::flux::{FluxConfig, FluxLoadError, FluxTransformer, load_flux_transformer};
use crate::latents::token_grid;
use crate::sample::{PromptEmbeddings, Sampling, generate_images};
use crate::schedule::{ScheduleError, SchedulerConfig};
use crate::text::TextEncoderError;
use crate::text::clip::{ClipTextModel, load_clip_text};
use crate::text::t5::{T5Encoder, load_t5_encoder};
use crate::text::tokenize::{PromptTokenizer, TokenizeError};
use crate::vae::{VaeConfig, VaeLoadError, VaeParts, load_vae};

/// Why a pipeline could not be loaded or an image not generated.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(
        "{}: not a diffusers FLUX pipeline folder (no model_index.json naming FluxPipeline): {message}",
        path.display()
    )]
    NotAPipeline { path: PathBuf, message: String },
    #[error(transparent)]
    Transformer(#[from] FluxLoadError),
    #[error(transparent)]
    Vae(#[from] VaeLoadError),
    #[error(transparent)]
    TextEncoder(#[from] TextEncoderError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizeError),
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    #[error(transparent)]
    Lora(#[from] FluxLoraError),
    #[error("{}: {message}", path.display())]
    Defaults { path: PathBuf, message: String },
    #[error("{0}")]
    Request(String),
    #[error(
        "the text encoders were dropped after encoding; load the pipeline again to encode new prompts"
    )]
    TextEncodersDropped,
}

/// What a pipeline folder says it was made for (`anneal_pipeline.json`, Anneal's own
/// file beside diffusers' `model_index.json`; absent in pipelines from elsewhere):
/// each setting applies when the user gives none. A tiny model trained on 32x32
/// pictures with 16-token prompts needs them, since T5's states depend on the padding
/// (FluxPipeline passes no attention mask) and the picture size on its training.
#[derive(Clone, Debug, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineDefaults {
    pub max_sequence_length: Option<usize>,
    pub width: Option<usize>,
    pub height: Option<usize>,
    pub num_inference_steps: Option<usize>,
    pub guidance_scale: Option<f32>,
}

/// The defaults file's name.
pub const DEFAULTS_FILE: &str = "anneal_pipeline.json";

impl PipelineDefaults {
    /// `dir/anneal_pipeline.json`, or no defaults when there is none.
    pub fn read(dir: &Path) -> Result<Self, PipelineError> {
        let path = dir.join(DEFAULTS_FILE);
        if !path.exists() {
            return Ok(Self::default());
        }
        let not_read = |message: String| PipelineError::Defaults {
            path: path.clone(),
            message,
        };
        let text = std::fs::read_to_string(&path).map_err(|e| not_read(e.to_string()))?;
        serde_json::from_str(&text).map_err(|e| not_read(e.to_string()))
    }

    /// The steps to take when the user gives none: the file's, else 28 for a model with
    /// a guidance embedding (FLUX.1-dev), 4 without (schnell).
    pub fn steps(&self, config: &FluxConfig) -> usize {
        self.num_inference_steps
            .unwrap_or(if config.guidance_embeds { 28 } else { 4 })
    }

    /// `(width, height)` when the user gives none: the file's, else FLUX.1's 1024x1024.
    pub fn size(&self) -> (usize, usize) {
        (self.width.unwrap_or(1024), self.height.unwrap_or(1024))
    }

    pub fn guidance(&self) -> f32 {
        self.guidance_scale.unwrap_or(3.5)
    }

    /// T5 tokens a prompt is padded or cut to: the file's, else FluxPipeline's 512.
    pub fn prompt_tokens(&self) -> usize {
        self.max_sequence_length.unwrap_or(512)
    }
}

/// One generation's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageRequest {
    pub width: usize,
    pub height: usize,
    pub steps: usize,
    /// The embedded guidance scale (FLUX.1-dev; schnell ignores it).
    pub guidance: f32,
    /// Images per prompt.
    pub count: usize,
    pub seed: u64,
}

/// The text encoders and their tokenizers.
struct TextSide<B: Backend> {
    clip_tokenizer: PromptTokenizer,
    clip: ClipTextModel<B>,
    t5_tokenizer: PromptTokenizer,
    t5: T5Encoder<B>,
}

pub struct FluxPipeline<B: Backend> {
    pub transformer: FluxTransformer<B>,
    pub transformer_config: FluxConfig,
    pub vae: crate::vae::Vae<B>,
    pub vae_config: VaeConfig,
    pub scheduler: SchedulerConfig,
    text: Option<TextSide<B>>,
    device: B::Device,
}

impl<B: Backend> FluxPipeline<B> {
    /// Loads the pipeline folder `dir` onto `device`, to compute in `dtype`; T5 prompts
    /// are `max_sequence_length` tokens (FluxPipeline's default is 512).
    pub fn load(
        dir: &Path,
        device: &B::Device,
        dtype: DType,
        max_sequence_length: usize,
    ) -> Result<Self, PipelineError> {
        Self::load_parts(
            dir,
            device,
            dtype,
            max_sequence_length,
            VaeParts::DecoderOnly,
        )
    }

    /// [`Self::load`] with the VAE's encoder as well, for training: images become
    /// latents through it (then [`Self::drop_vae_encoder`]).
    pub fn load_for_training(
        dir: &Path,
        device: &B::Device,
        dtype: DType,
        max_sequence_length: usize,
    ) -> Result<Self, PipelineError> {
        Self::load_parts(
            dir,
            device,
            dtype,
            max_sequence_length,
            VaeParts::EncoderAndDecoder,
        )
    }

    fn load_parts(
        dir: &Path,
        device: &B::Device,
        dtype: DType,
        max_sequence_length: usize,
        vae_parts: VaeParts,
    ) -> Result<Self, PipelineError> {
        check_model_index(dir)?;
        let (transformer_config, transformer) =
            load_flux_transformer::<B>(&dir.join("transformer"), device, dtype)?;
        let (vae_config, vae) = load_vae::<B>(&dir.join("vae"), vae_parts, device, dtype)?;
        let scheduler = SchedulerConfig::read(&dir.join("scheduler"))?;
        let (_, clip) = load_clip_text::<B>(&dir.join("text_encoder"), device, dtype)?;
        let (_, t5) = load_t5_encoder::<B>(&dir.join("text_encoder_2"), device, dtype)?;
        let text = TextSide {
            clip_tokenizer: PromptTokenizer::load_clip(&dir.join("tokenizer"))?,
            clip,
            t5_tokenizer: PromptTokenizer::load_t5(&dir.join("tokenizer_2"), max_sequence_length)?,
            t5,
        };
        Ok(Self {
            transformer,
            transformer_config,
            vae,
            vae_config,
            scheduler,
            text: Some(text),
            device: device.clone(),
        })
    }

    /// Attaches LoRA `adapters` (diffusers' FLUX format) to the transformer, replacing
    /// any attached before; several add their updates.
    pub fn set_adapters(&mut self, adapters: &[FluxLora]) -> Result<(), PipelineError> {
        Ok(attach_loras(&mut self.transformer, adapters)?)
    }

    /// The T5 states and CLIP pooled embedding of each prompt.
    pub fn encode_prompts(&self, prompts: &[&str]) -> Result<PromptEmbeddings<B>, PipelineError> {
        let text = self
            .text
            .as_ref()
            .ok_or(PipelineError::TextEncodersDropped)?;
        let pooled = text
            .clip
            .forward(&text.clip_tokenizer.encode(prompts)?)
            .pooled;
        let context = text.t5.forward(&text.t5_tokenizer.encode(prompts)?);
        Ok(PromptEmbeddings { context, pooled })
    }

    /// Frees the text encoders' memory; [`Self::encode_prompts`] fails after this.
    pub fn drop_text_encoders(&mut self) {
        self.text = None;
    }

    /// Frees the VAE encoder's memory once the images are latents.
    pub fn drop_vae_encoder(&mut self) {
        self.vae.encoder = None;
    }

    /// The T5 tokens of `prompt` before it is cut to the pipeline's length: a caption
    /// longer than that loses its end.
    pub fn t5_tokens_uncut(&self, prompt: &str) -> Result<usize, PipelineError> {
        let text = self
            .text
            .as_ref()
            .ok_or(PipelineError::TextEncodersDropped)?;
        Ok(text.t5_tokenizer.count_uncut(prompt)?)
    }

    /// The length T5 prompts are padded or cut to.
    pub fn t5_length(&self) -> Option<usize> {
        self.text.as_ref().map(|text| text.t5_tokenizer.max_length)
    }

    /// Checks `request` against the model and says what is wrong, naming the setting.
    pub fn check_request(&self, request: &ImageRequest) -> Result<(usize, usize), PipelineError> {
        let grid = token_grid(request.height, request.width, self.vae_config.scale())
            .map_err(|e| PipelineError::Request(format!("size {e}")))?;
        if request.steps == 0 || request.steps > 1000 {
            return Err(PipelineError::Request(format!(
                "steps {}: must be between 1 and 1000",
                request.steps
            )));
        }
        if !request.guidance.is_finite() || request.guidance < 0.0 {
            return Err(PipelineError::Request(format!(
                "guidance {}: must be a finite number, 0 or more",
                request.guidance
            )));
        }
        if request.count == 0 {
            return Err(PipelineError::Request("n must be at least 1".into()));
        }
        Ok(grid)
    }

    /// Seeded Gaussian noise for `count` images of `request`'s size, as unpacked VAE
    /// latents `[count, channels, h, w]`. Standard normal by Box–Muller from a
    /// ChaCha generator seeded with `seed`; not torch's generator, so the same seed
    /// gives another image than diffusers does.
    pub fn noise(&self, request: &ImageRequest) -> Result<Tensor<B, 4>, PipelineError> {
        let (rows, columns) = self.check_request(request)?;
        let channels = self.transformer_config.latent_channels();
        let shape = [request.count, channels, 2 * rows, 2 * columns];
        Ok(seeded_noise(shape, request.seed, &self.device))
    }

    /// Generates `noise.dims()[0]` images from `noise` (unpacked latents) and `prompt`
    /// (one row, or one per image): `[n, 3, height, width]` in [0, 1].
    pub fn generate(
        &self,
        request: &ImageRequest,
        prompt: &PromptEmbeddings<B>,
        noise: Tensor<B, 4>,
        on_step: impl FnMut(usize),
    ) -> Result<Tensor<B, 4>, PipelineError> {
        self.check_request(request)?;
        let count = noise.dims()[0];
        let prompt = repeat_rows(prompt, count);
        let settings = Sampling {
            steps: request.steps,
            guidance: request.guidance,
        };
        Ok(generate_images(
            &self.transformer,
            &self.vae,
            &self.scheduler,
            &prompt,
            noise,
            settings,
            on_step,
        )?)
    }
}

/// Standard normal latents of `shape` from `seed`, as FluxPipeline's seeded generator
/// would be replaced here: Box-Muller pairs from a seeded StdRng, on the host, so the
/// same seed gives the same image on every backend.
pub fn seeded_noise<B: Backend>(shape: [usize; 4], seed: u64, device: &B::Device) -> Tensor<B, 4> {
    let len: usize = shape.iter().product();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut values = Vec::with_capacity(len + 1);
    while values.len() < len {
        // u1 in (0, 1] keeps the logarithm finite.
        let u1 = 1.0 - rng.random::<f64>();
        let u2 = rng.random::<f64>();
        let radius = (-2.0 * u1.ln()).sqrt();
        let angle = std::f64::consts::TAU * u2;
        values.push((radius * angle.cos()) as f32);
        values.push((radius * angle.sin()) as f32);
    }
    values.truncate(len);
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// `prompt` with its single row repeated `count` times (as FluxPipeline's
/// `num_images_per_prompt`); as it is when it already has `count` rows.
fn repeat_rows<B: Backend>(prompt: &PromptEmbeddings<B>, count: usize) -> PromptEmbeddings<B> {
    if prompt.pooled.dims()[0] == count {
        return PromptEmbeddings {
            context: prompt.context.clone(),
            pooled: prompt.pooled.clone(),
        };
    }
    PromptEmbeddings {
        context: prompt.context.clone().repeat_dim(0, count),
        pooled: prompt.pooled.clone().repeat_dim(0, count),
    }
}

/// `model_index.json` must exist and name a FLUX pipeline class.
fn check_model_index(dir: &Path) -> Result<(), PipelineError> {
    let path = dir.join("model_index.json");
    let not_a_pipeline = |message: String| PipelineError::NotAPipeline {
        path: dir.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(&path).map_err(|e| not_a_pipeline(e.to_string()))?;
    let index: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| not_a_pipeline(e.to_string()))?;
    let class = index["_class_name"].as_str().unwrap_or("");
    if !class.starts_with("Flux") {
        return Err(not_a_pipeline(format!(
            "_class_name is {class:?}, not a FLUX pipeline"
        )));
    }
    Ok(())
}
