//! The estimate part of `trainer plan`: the job's tokens counted as training reads
//! them (each line through the model's chat template and tokenizer, samples over
//! `maxTokens` dropped, the validation share held out, `dataset.mix` draws added),
//! then steps, FLOPs, duration and cost from `anneal_crds::estimate`.

use std::path::{Path, PathBuf};

use anneal_crds::FineTuneJob;
use anneal_crds::estimate::{
    EpochTokens, Estimate, Throughput, TrainingWork, estimate, rough_duration,
};
use anneal_crds::finetunejob::{DEFAULT_VALIDATION_SPLIT, TrainingMethod};
use anneal_crds::memory_plan::ModelShape;
use anneal_model::chat::ModelTokenizer;
use anneal_model::llm::ModelConfig;
use anneal_sources::local_paths::resolve_file_uri;
use anneal_train::dpo::data::prepare_pairs;
use anneal_train::sft::data::prepare;

/// The devices and price the duration and cost are for.
pub struct EstimateSettings {
    /// `None`: the devices' speed is unknown (the CPU without `--tflops`).
    pub throughput: Option<Throughput>,
    pub gpus: bool,
    pub price_per_gpu_hour: Option<f64>,
}

/// The estimate's lines, or why there is none (what would make one).
pub fn estimate_lines(
    job: &FineTuneJob,
    shape: ModelShape,
    manifest_dir: &Path,
    model_dir: Option<&Path>,
    settings: &EstimateSettings,
) -> Vec<String> {
    let per_epoch = match model_dir
        .ok_or_else(|| {
            "the model's tokenizer is not on this machine: give its folder with --base-model DIR"
                .to_owned()
        })
        .and_then(|dir| epoch_tokens(job, manifest_dir, dir))
    {
        Ok(tokens) => tokens,
        Err(why) => return vec![format!("estimate: none, {why}")],
    };
    let work = TrainingWork::of_job(job, shape, per_epoch);
    let throughput = (settings.throughput).unwrap_or(Throughput::parallel(1, 0.0, 1.0));
    let found = estimate(
        &work,
        &throughput,
        settings.gpus,
        settings.price_per_gpu_hour,
    );
    render(&work, &found, settings)
}

fn render(work: &TrainingWork, found: &Estimate, settings: &EstimateSettings) -> Vec<String> {
    let mut lines = vec![
        format!(
            "estimate: {} samples and {} tokens an epoch (after the chat template), {} steps, {} epochs",
            work.per_epoch.samples, work.per_epoch.positions, found.steps, work.epochs
        ),
        format!(
            "  compute: {:.3e} FLOPs ({} forward passes' worth per token)",
            found.flops,
            work.passes()
        ),
    ];
    let Some(Throughput {
        devices,
        computing,
        peak_flops,
        utilization,
    }) = settings.throughput
    else {
        lines.push("  duration: give --tflops (this CPU's peak) for one".to_owned());
        return lines;
    };
    let noun = if settings.gpus { "GPU" } else { "CPU" };
    lines.push(format!(
        "  duration: {} of training steps on {devices} {noun}{} of {} TFLOPS at {:.0}% utilization{}",
        rough_duration(found.seconds),
        if devices == 1 { "" } else { "s" },
        peak_flops / 1e12,
        utilization * 100.0,
        match (devices, computing) {
            (1, _) => "",
            (_, 1) => ", one computing at a time (the layers placed across them)",
            _ => ", data-parallel",
        }
    ));
    if settings.gpus {
        lines.push(match found.cost {
            Some(cost) => format!(
                "  cost: {cost:.2} for {:.2} GPU-hours at {:.2} per GPU-hour",
                found.gpu_hours,
                settings.price_per_gpu_hour.unwrap_or_default()
            ),
            None => format!(
                "  cost: {:.2} GPU-hours (give --price-per-gpu-hour for the cost)",
                found.gpu_hours
            ),
        });
    }
    lines
}

/// An epoch's tokens: the training file's samples less the validation share, plus
/// each mixed set's draws.
fn epoch_tokens(
    job: &FineTuneJob,
    manifest_dir: &Path,
    model_dir: &Path,
) -> Result<EpochTokens, String> {
    let config = ModelConfig::from_model_dir(model_dir).map_err(|e| e.to_string())?;
    let tokenizer = ModelTokenizer::from_model_dir(model_dir, &config.architecture)
        .map_err(|e| e.to_string())?;
    let dataset = &job.spec.dataset;
    let max_tokens = job.resolved_hyperparameters().max_tokens as usize;
    let train = local_file(dataset.train.as_deref(), "spec.dataset.train", manifest_dir)?;
    let all = read_tokens(job.spec.method, &train, &tokenizer, max_tokens)?;
    let main = match dataset.validation {
        Some(_) => all,
        None => {
            let split = dataset.validation_split.unwrap_or(DEFAULT_VALIDATION_SPLIT);
            let held_out = (all.samples as f64 * split).round() as u64;
            all.scaled_to(all.samples - held_out.min(all.samples))
        }
    };
    let mut epoch = main;
    for (index, mixed) in dataset.mix.iter().enumerate() {
        let field = format!("spec.dataset.mix[{index}].uri");
        let path = local_file(Some(&mixed.uri), &field, manifest_dir)?;
        let set = read_tokens(job.spec.method, &path, &tokenizer, max_tokens)?;
        let draws = ((mixed.weight * main.samples as f64).round() as u64).max(1);
        epoch = epoch.plus(&set.scaled_to(draws));
    }
    Ok(epoch)
}

fn local_file(uri: Option<&str>, field: &str, manifest_dir: &Path) -> Result<PathBuf, String> {
    uri.and_then(|uri| resolve_file_uri(uri, manifest_dir))
        .ok_or_else(|| format!("{field} is not a local file (a path or file:// URI)"))
}

fn read_tokens(
    method: TrainingMethod,
    path: &Path,
    tokenizer: &ModelTokenizer,
    max_tokens: usize,
) -> Result<EpochTokens, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let named = |e: anneal_train::data::DataError| format!("{}: {e}", path.display());
    let mut tokens = EpochTokens::default();
    match method {
        TrainingMethod::Sft => {
            for sample in prepare(file, tokenizer, max_tokens).map_err(named)?.samples {
                tokens.add(sample.ids.len() as u64 - 1, true);
            }
        }
        TrainingMethod::Dpo => {
            for pair in prepare_pairs(file, tokenizer, max_tokens)
                .map_err(named)?
                .pairs
            {
                tokens.add(pair.chosen.ids.len() as u64 - 1, true);
                tokens.add(pair.rejected.ids.len() as u64 - 1, false);
            }
        }
    }
    Ok(tokens)
}
