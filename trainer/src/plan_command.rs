//! `trainer plan JOB.yaml`: what one training step of a job needs on each device
//! (base weights, trainable state, activations, logits, margin, peak) and the
//! micro-batch and gradient accumulation that fit, before any GPU time is spent.
//! The same plan the operator checks in Validating (docs/memory.md).
//!
//! The model's shape comes from a `config.json`: `--base-model DIR`, else the
//! manifest's `file://` base model; else from the built-in table of the names users
//! write (`Qwen/Qwen2.5-7B-Instruct`, ...), so a cluster job can be planned on a laptop.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anneal_crds::FineTuneJob;
use anneal_crds::manifest::parse_finetunejob;
use anneal_crds::memory_plan::{
    ByteSize, DeviceMemory, HfConfigError, ModelShape, known_shape, plan_for_job,
};
use anneal_sources::local_paths::resolve_file_uri;

use crate::memory_arg::memory_size;
use crate::plan_estimate::{EstimateSettings, estimate_lines};
use anneal_crds::estimate::Throughput;

#[derive(clap::Args, Debug, Clone)]
pub struct PlanArgs {
    /// The FineTuneJob manifest, or a FLUX pipeline folder (its configs are enough) for
    /// what making images with it needs.
    pub manifest: PathBuf,
    /// Memory of one GPU: 80GiB (H100, A100 80GB), 141GiB (H200), 24GiB, ...
    #[arg(long, default_value = "80GiB", value_parser = memory_size)]
    pub gpu_memory: ByteSize,
    /// GPUs in the trainer pod. Default: the manifest's `spec.resources.gpus`.
    #[arg(long)]
    pub gpus: Option<u32>,
    /// Plan for the CPU backend (f32 weights) with this much RAM instead of GPUs;
    /// what a job with `resources.gpus: 0` or `trainer train --device cpu` runs on.
    #[arg(long, conflicts_with = "gpus", value_parser = memory_size)]
    pub cpu_memory: Option<ByteSize>,
    /// A local model folder whose `config.json` gives the shape (as `trainer train
    /// --base-model`).
    #[arg(long)]
    pub base_model: Option<PathBuf>,
    /// For a FLUX pipeline: the image size, WIDTHxHEIGHT (default the pipeline's
    /// anneal_pipeline.json, else 1024x1024).
    #[arg(long, value_parser = crate::generate_image_command::parse_size)]
    pub size: Option<(usize, usize)>,
    /// For a FLUX pipeline: images made at once.
    #[arg(long = "n", default_value_t = 1)]
    pub count: usize,
    /// Peak dense bf16 TFLOPS of one device, for the estimated duration. Default for
    /// GPUs 989 (H100 and H200 SXM); A100 312, L40S 362. None by default on the CPU.
    #[arg(long)]
    pub tflops: Option<f64>,
    /// The share of the peak training reaches (model FLOPs utilization).
    #[arg(long, default_value_t = 0.4)]
    pub utilization: f64,
    /// Price of one GPU-hour, for the estimated cost (in your currency).
    #[arg(long)]
    pub price_per_gpu_hour: Option<f64>,
    /// Time the job's first steps and a checkpoint on this machine's CPU (a short
    /// real run into a temporary folder) and estimate the whole run's duration from
    /// them; the job's data and model must be on this machine.
    #[arg(long)]
    pub measure: bool,
}

/// Peak dense bf16 FLOPS of an H100 or H200 SXM: the default GPU of an estimate.
pub const DEFAULT_GPU_TFLOPS: f64 = 989.0;

/// Why no plan could be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanCommandError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: invalid FineTuneJob\n{source}", path.display())]
    Manifest {
        path: PathBuf,
        source: anneal_crds::manifest::ManifestError,
    },
    #[error("{}: {source}", path.display())]
    Config {
        path: PathBuf,
        source: HfConfigError,
    },
    #[error(
        "{name} is not a built-in model and {model_source} is not a local folder: \
         give its folder with --base-model DIR (its config.json is enough)"
    )]
    UnknownShape { name: String, model_source: String },
    #[error("{flag}: the plan needs at least one device")]
    NoDevice { flag: &'static str },
}

/// 0 when the job fits, 1 when it does not (the message says what would), 2 when no
/// plan could be made.
pub fn run(args: &PlanArgs) -> ExitCode {
    if args.manifest.join("model_index.json").is_file() {
        return crate::image_plan::run(args);
    }
    let (job, shape, device) = match plan_inputs(args) {
        Ok(inputs) => inputs,
        Err(error) => {
            eprintln!("trainer plan: {error}");
            return ExitCode::from(2);
        }
    };
    println!("{}", shape_line(&job, &shape, args));
    let (fits, computing) = match plan_for_job(&job.spec, shape, device) {
        Ok(plan) => {
            println!("{}", plan.to_string().trim_end());
            (true, plan.replicas as u32)
        }
        Err(does_not_fit) => {
            println!("does not fit: {does_not_fit}");
            (false, 1)
        }
    };
    let manifest_dir = args.manifest.parent().unwrap_or(Path::new("."));
    let model_dir = local_model_dir(&job, manifest_dir, args.base_model.as_deref());
    for line in estimate_lines(
        &job,
        shape,
        manifest_dir,
        model_dir.as_deref(),
        &estimate_settings(args, &device, computing),
    ) {
        println!("{line}");
    }
    if args.measure {
        match crate::plan_measure::measure_run(&args.manifest, &job, manifest_dir, args.cpu_memory)
        {
            Ok(measured) => {
                for line in crate::plan_measure::measured_lines(&job, &measured) {
                    println!("{line}");
                }
            }
            Err(why) => println!("  measured: none, {why}"),
        }
    }
    if fits {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The devices, their speed and the price the estimate is for.
/// `computing`: the devices that compute at once (the plan's data-parallel replicas).
fn estimate_settings(args: &PlanArgs, device: &DeviceMemory, computing: u32) -> EstimateSettings {
    let gpus = args.cpu_memory.is_none();
    let tflops = args.tflops.or(gpus.then_some(DEFAULT_GPU_TFLOPS));
    EstimateSettings {
        throughput: tflops.map(|tflops| Throughput {
            devices: if gpus { device.devices } else { 1 },
            computing: computing.max(1),
            peak_flops: tflops * 1e12,
            utilization: args.utilization,
        }),
        gpus,
        price_per_gpu_hour: args.price_per_gpu_hour,
    }
}

/// The model's local folder: `--base-model`, or the manifest's `file://` source.
fn local_model_dir(
    job: &FineTuneJob,
    manifest_dir: &Path,
    base_model: Option<&Path>,
) -> Option<PathBuf> {
    let source = job.spec.base_model.source_uri().unwrap_or_default();
    base_model
        .map(Path::to_path_buf)
        .or_else(|| resolve_file_uri(&source, manifest_dir))
}

/// The job, its model's shape and the devices the plan is for.
pub fn plan_inputs(
    args: &PlanArgs,
) -> Result<(FineTuneJob, ModelShape, DeviceMemory), PlanCommandError> {
    let text =
        std::fs::read_to_string(&args.manifest).map_err(|source| PlanCommandError::Read {
            path: args.manifest.clone(),
            source,
        })?;
    let job = parse_finetunejob(&text).map_err(|source| PlanCommandError::Manifest {
        path: args.manifest.clone(),
        source,
    })?;
    let manifest_dir = args.manifest.parent().unwrap_or(Path::new("."));
    let shape = model_shape(&job, manifest_dir, args.base_model.as_deref())?;
    let device = match args.cpu_memory {
        Some(memory) => DeviceMemory::cpu(memory),
        None => {
            let gpus = args.gpus.unwrap_or(job.spec.resources.gpus);
            if gpus == 0 {
                let flag = if args.gpus.is_some() {
                    "--gpus 0"
                } else {
                    "spec.resources.gpus is 0 (the CPU backend): pass --cpu-memory SIZE or --gpus N"
                };
                return Err(PlanCommandError::NoDevice { flag });
            }
            DeviceMemory::gpus(args.gpu_memory, gpus)
        }
    };
    Ok((job, shape, device))
}

/// The shape from a local `config.json` when there is one, else the built-in table.
fn model_shape(
    job: &FineTuneJob,
    manifest_dir: &Path,
    base_model: Option<&Path>,
) -> Result<ModelShape, PlanCommandError> {
    let source = job.spec.base_model.source_uri().unwrap_or_default();
    if let Some(folder) = local_model_dir(job, manifest_dir, base_model) {
        let path = folder.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|source| PlanCommandError::Read {
            path: path.clone(),
            source,
        })?;
        return ModelShape::from_config_json(&text)
            .map_err(|source| PlanCommandError::Config { path, source });
    }
    let name = &job.spec.base_model.name;
    known_shape(name).ok_or_else(|| PlanCommandError::UnknownShape {
        name: name.clone(),
        model_source: source,
    })
}

/// Which model the plan is for, and where its shape came from.
fn shape_line(job: &FineTuneJob, shape: &ModelShape, args: &PlanArgs) -> String {
    let from = match (
        &args.base_model,
        job.spec.base_model.source_uri().unwrap_or_default(),
    ) {
        (Some(dir), _) => format!("{}/config.json", dir.display()),
        (None, source) if source.starts_with("file://") => format!("{source}/config.json"),
        _ => "the built-in table".to_owned(),
    };
    format!(
        "model: {} ({} layers, hidden {}, vocab {}; shape from {from})",
        job.spec.base_model.name, shape.layers, shape.hidden_size, shape.vocab_size
    )
}
