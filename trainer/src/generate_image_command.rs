//! `trainer generate-image`: a FLUX.1 pipeline folder and a prompt to PNG files.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anneal_image::flux::lora::{FluxLora, FluxLoraError};
use anneal_image::pipeline::{FluxPipeline, ImageRequest, PipelineDefaults, PipelineError};
use anneal_image::png_out::{PngError, encode_png};
use anneal_model::backend::{BackendError, BackendJob, run_on};
use anneal_sources::{SourceError, check_local_folder};
use burn::prelude::Backend;
use burn::tensor::DType;

use crate::device_arg::DeviceArg;

#[derive(clap::Args, Debug, Clone)]
pub struct GenerateImageArgs {
    /// A diffusers FLUX.1 pipeline folder (model_index.json, transformer/, vae/,
    /// text_encoder/, text_encoder_2/, tokenizer/, tokenizer_2/, scheduler/).
    #[arg(long)]
    pub model: PathBuf,
    /// A LoRA adapter in diffusers' FLUX format: a folder holding
    /// pytorch_lora_weights.safetensors, or the file (repeatable: updates add up).
    #[arg(long)]
    pub adapter: Vec<PathBuf>,
    #[arg(long)]
    pub prompt: String,
    /// WIDTHxHEIGHT in pixels, multiples of 16 for FLUX.1; default the pipeline's
    /// anneal_pipeline.json, else 1024x1024.
    #[arg(long, value_parser = parse_size)]
    pub size: Option<(usize, usize)>,
    /// Denoising steps; default the pipeline's anneal_pipeline.json, else 28 for a model
    /// with a guidance embedding (FLUX.1-dev), 4 without (FLUX.1-schnell).
    #[arg(long)]
    pub steps: Option<usize>,
    /// The embedded guidance scale (FLUX.1-dev; schnell has none); default the
    /// pipeline's anneal_pipeline.json, else 3.5.
    #[arg(long)]
    pub guidance: Option<f32>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Images to make from the prompt.
    #[arg(long = "n", default_value_t = 1)]
    pub count: usize,
    /// T5 tokens the prompt is padded or cut to (FluxPipeline's max_sequence_length);
    /// default the pipeline's anneal_pipeline.json, else 512.
    #[arg(long)]
    pub max_sequence_length: Option<usize>,
    /// The folder the PNGs are written to (created if missing): image-0.png, image-1.png, ...
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
}

/// `WIDTHxHEIGHT` as `(width, height)`.
pub fn parse_size(text: &str) -> Result<(usize, usize), String> {
    let (w, h) = text
        .split_once('x')
        .ok_or_else(|| format!("{text:?}: expected WIDTHxHEIGHT, e.g. 1024x1024"))?;
    let parse = |s: &str| {
        s.parse::<usize>()
            .map_err(|_| format!("{text:?}: expected WIDTHxHEIGHT, e.g. 1024x1024"))
    };
    Ok((parse(w)?, parse(h)?))
}

/// Why no image was written; each message names the flag or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum GenerateImageError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error(transparent)]
    Png(#[from] PngError),
    #[error("--adapter {0}")]
    Adapter(#[from] FluxLoraError),
    #[error(
        "--model {}: no model_index.json there; a diffusers FLUX.1 pipeline folder is expected",
        .0.display()
    )]
    NotAPipeline(PathBuf),
    #[error("--max-sequence-length must be between 1 and 512, got {0}")]
    SequenceLength(usize),
    #[error("--n must be between 1 and 16, got {0}")]
    Count(usize),
    #[error("--out {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Runs the command: 0 when every image was written, 2 when none could be.
pub fn run(args: GenerateImageArgs) -> ExitCode {
    match check_and_generate(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("trainer generate-image: {error}");
            ExitCode::from(2)
        }
    }
}

fn check_and_generate(args: GenerateImageArgs) -> Result<(), GenerateImageError> {
    if let Some(tokens) = args.max_sequence_length.filter(|&n| n == 0 || n > 512) {
        return Err(GenerateImageError::SequenceLength(tokens));
    }
    if args.count == 0 || args.count > 16 {
        return Err(GenerateImageError::Count(args.count));
    }
    if !args.model.join("model_index.json").is_file() {
        return Err(GenerateImageError::NotAPipeline(args.model.clone()));
    }
    check_local_folder(&args.model, "--model")?;
    for adapter in &args.adapter {
        check_local_folder(adapter, "--adapter")?;
    }
    run_on(args.device.into(), GenerateImageJob(args))?
}

struct GenerateImageJob(GenerateImageArgs);

impl BackendJob for GenerateImageJob {
    type Output = Result<(), GenerateImageError>;

    fn run<B: Backend>(self, device: B::Device, dtype: DType) -> Self::Output {
        let args = self.0;
        let started = Instant::now();
        // Read before the model loads: a bad adapter file fails in a moment.
        let adapters = args
            .adapter
            .iter()
            .map(|path| FluxLora::read(path))
            .collect::<Result<Vec<_>, _>>()?;
        let defaults = PipelineDefaults::read(&args.model)?;
        let prompt_tokens = args
            .max_sequence_length
            .unwrap_or_else(|| defaults.prompt_tokens());
        let mut pipe = FluxPipeline::<B>::load(&args.model, &device, dtype, prompt_tokens)?;
        if !adapters.is_empty() {
            pipe.set_adapters(&adapters)?;
        }
        let (width, height) = args.size.unwrap_or_else(|| defaults.size());
        let request = ImageRequest {
            width,
            height,
            steps: args
                .steps
                .unwrap_or_else(|| defaults.steps(&pipe.transformer_config)),
            guidance: args.guidance.unwrap_or_else(|| defaults.guidance()),
            count: args.count,
            seed: args.seed,
        };
        pipe.check_request(&request)?;
        let prompt = pipe.encode_prompts(&[&args.prompt])?;
        pipe.drop_text_encoders();
        let noise = pipe.noise(&request)?;
        let steps = request.steps;
        let images = pipe.generate(&request, &prompt, noise, |i| {
            eprintln!("step {}/{steps}", i + 1);
        })?;
        let values = images
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .expect("f32 image values");
        std::fs::create_dir_all(&args.out).map_err(|source| GenerateImageError::Write {
            path: args.out.clone(),
            source,
        })?;
        let per_image = 3 * width * height;
        for (i, chw) in values.chunks(per_image).enumerate() {
            let path = args.out.join(format!("image-{i}.png"));
            std::fs::write(&path, encode_png(chw, width, height)?).map_err(|source| {
                GenerateImageError::Write {
                    path: path.clone(),
                    source,
                }
            })?;
            println!("{}", path.display());
        }
        eprintln!(
            "{} image(s) of {width}x{height}, {steps} steps, seed {}, in {:.1} s",
            args.count,
            args.seed,
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }
}
