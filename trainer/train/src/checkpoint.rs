//! Checkpoints in storage: `checkpoints/ckpt-{step}/` holds the PEFT adapter
//! (`adapter_config.json`, `adapter_model.safetensors`), or in full training a
//! whole model folder (`config.json`, `model.safetensors`, tokenizer files), and
//! `trainer_state.json`,
//! `optimizer.safetensors` and `samples.json` (and with `checkpoints.evaluation`,
//! `evaluation.json` and `evaluation.html`). A checkpoint is staged in a local
//! folder, uploaded, and only then marked complete (the storage layer writes its
//! `COMPLETE` object last), so a pod killed mid-upload never leaves a folder that a
//! resume would take for whole.

use std::path::{Path, PathBuf};

use anneal_crds::finetunejob::{CheckpointStatus, SamplePrompt, TrainingType};
use anneal_crds::modelevaluation::MetricScore;
use burn::nn::Dropout;
use burn::tensor::DType;
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use super::optimizer::SftOptimizer;
use super::optimizer_state::{OPTIMIZER_FILE, load_optimizer_state, save_optimizer_state};
use super::state::{STATE_FILE, TrainerState};
use super::{ResumeError, TrainError};
use anneal_crds::storage::Storage;
use anneal_model::backend::LayerStorage;
use anneal_model::llm::save::save_model_folder;
use anneal_model::llm::{CausalLm, load_model_placed};
use anneal_model::lora::peft::{load_adapter, save_adapter};
use anneal_model::lora::{LoraSettings, projections_mut};

pub const CHECKPOINTS: &str = "checkpoints";
pub const FINAL: &str = "final";
pub const SAMPLES_FILE: &str = "samples.json";

/// `samples.json`: each sample prompt with the checkpoint's answer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SampleAnswer {
    pub prompt: SamplePrompt,
    pub answer: String,
}

pub fn checkpoint_name(step: u64) -> String {
    format!("ckpt-{step}")
}

fn checkpoint_step(name: &str) -> Option<u64> {
    name.strip_prefix("ckpt-")?.parse().ok()
}

/// What goes into a checkpoint besides the model and optimizer.
pub struct CheckpointContents<'a> {
    /// LoRA checkpoints hold the adapter; full ones a whole model folder.
    pub training: TrainingType,
    /// Where the full model folder's config and tokenizer files come from.
    pub base_model_dir: &'a Path,
    pub settings: &'a LoraSettings,
    pub base_model_name: &'a str,
    pub samples: Vec<SampleAnswer>,
    /// More files by name: the report of `checkpoints.evaluation`.
    pub files: Vec<(&'static str, String)>,
}

/// Writes the adapter, optimizer state, `state` and samples to `{relative}/` in
/// `output` through a local staging folder under `work_dir`.
pub fn store_checkpoint<B: AutodiffBackend>(
    model: &mut CausalLm<B>,
    optimizer: &SftOptimizer<B>,
    state: &TrainerState,
    contents: &CheckpointContents<'_>,
    output: &Storage,
    relative: &str,
    work_dir: &Path,
) -> Result<(), TrainError> {
    let staging = work_dir.join("staging").join(relative.replace('/', "_"));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(|e| TrainError::io(&staging, e))?;
    match contents.training {
        TrainingType::Lora => {
            save_adapter(model, contents.settings, contents.base_model_name, &staging)?
        }
        TrainingType::Full => save_model_folder(model, contents.base_model_dir, &staging)?,
    }
    save_optimizer_state(model, optimizer, &staging.join(OPTIMIZER_FILE))?;
    write_json(&staging.join(STATE_FILE), &state.to_json())?;
    let samples = serde_json::to_string_pretty(&contents.samples).expect("samples serialize");
    write_json(&staging.join(SAMPLES_FILE), &samples)?;
    for (name, text) in &contents.files {
        write_json(&staging.join(name), text)?;
    }
    output.upload_dir_complete(&staging, relative)?;
    std::fs::remove_dir_all(&staging).map_err(|e| TrainError::io(&staging, e))?;
    Ok(())
}

fn write_json(path: &Path, text: &str) -> Result<(), TrainError> {
    std::fs::write(path, text).map_err(|e| TrainError::io(path, e))
}

/// The complete checkpoints in `output`, oldest first.
pub fn complete_checkpoints(output: &Storage) -> Result<Vec<String>, TrainError> {
    let mut named: Vec<(u64, String)> = output
        .list_children(CHECKPOINTS)?
        .into_iter()
        .filter_map(|name| checkpoint_step(&name).map(|step| (step, name)))
        .collect();
    named.sort();
    let mut complete = Vec::new();
    for (_, name) in named {
        if output.is_complete(&format!("{CHECKPOINTS}/{name}"))? {
            complete.push(name);
        }
    }
    Ok(complete)
}

/// A checkpoint fetched for resuming.
pub struct ResumePoint {
    pub name: String,
    pub dir: PathBuf,
    pub state: TrainerState,
}

/// Downloads the newest complete checkpoint, if there is one.
pub fn fetch_newest_checkpoint(
    output: &Storage,
    work_dir: &Path,
) -> Result<Option<ResumePoint>, TrainError> {
    let Some(name) = complete_checkpoints(output)?.pop() else {
        return Ok(None);
    };
    let dir = work_dir.join("resume").join(&name);
    let _ = std::fs::remove_dir_all(&dir);
    output.download_dir(&format!("{CHECKPOINTS}/{name}"), &dir)?;
    let path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
    let state = TrainerState::from_json(&text).map_err(|source| ResumeError::State {
        checkpoint: name.clone(),
        source,
    })?;
    Ok(Some(ResumePoint { name, dir, state }))
}

/// The model as the checkpoint left it, trainable (the base with the checkpoint's
/// adapter, or the checkpoint's full weights), and AdamW with its moments.
pub fn restore_training<B: AutodiffBackend>(
    base: CausalLm<B>,
    point: &ResumePoint,
    training: TrainingType,
    settings: &LoraSettings,
    weight_decay: f64,
    devices: &[B::Device],
) -> Result<(CausalLm<B>, SftOptimizer<B>), TrainError> {
    if training == TrainingType::Full {
        drop(base);
        let (_, mut model) =
            load_model_placed::<B>(&point.dir, devices, DType::F32, LayerStorage::Computed)?;
        let optimizer =
            load_optimizer_state(&mut model, weight_decay, &point.dir.join(OPTIMIZER_FILE))?;
        return Ok((model, optimizer));
    }
    let mut model = with_dropout(load_adapter(base, &point.dir)?, settings.dropout);
    let optimizer =
        load_optimizer_state(&mut model, weight_decay, &point.dir.join(OPTIMIZER_FILE))?;
    Ok((model, optimizer))
}

/// `model`'s adapters with LoRA dropout `prob`: the loader builds inference adapters,
/// without dropout, and training wants the job's.
pub fn with_dropout<B: burn::tensor::backend::Backend>(
    mut model: CausalLm<B>,
    prob: f64,
) -> CausalLm<B> {
    for (_, _, projection) in projections_mut(&mut model) {
        if let Some(lora) = &mut projection.lora {
            lora.dropout = Dropout { prob };
        }
    }
    model
}

/// Removes the oldest checkpoints beyond `keep`, sparing `spare` (the best one)
/// and always the newest (the one a resume continues from).
pub fn prune_checkpoints(
    output: &Storage,
    keep: usize,
    spare: Option<&str>,
) -> Result<Vec<String>, TrainError> {
    let complete = complete_checkpoints(output)?;
    let newest = complete.last().cloned();
    let excess = complete.len().saturating_sub(keep.max(1));
    let removable = complete
        .iter()
        .filter(|name| Some(name.as_str()) != spare && Some(*name) != newest.as_ref())
        .take(excess);
    let mut removed = Vec::new();
    for name in removable {
        output.delete_dir(&format!("{CHECKPOINTS}/{name}"))?;
        removed.push(name.clone());
    }
    Ok(removed)
}

/// The checkpoint a status lists for `name`.
pub fn checkpoint_status(
    output: &Storage,
    state: &TrainerState,
    valid_loss: Option<f64>,
    evaluation: Vec<MetricScore>,
    samples: &[SampleAnswer],
) -> CheckpointStatus {
    let name = checkpoint_name(state.step);
    CheckpointStatus {
        uri: output
            .child(&format!("{CHECKPOINTS}/{name}"))
            .uri()
            .to_owned(),
        name,
        step: state.step,
        epoch: state.epoch,
        valid_loss,
        evaluation,
        samples: samples.iter().map(|s| s.answer.clone()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_step() {
        assert_eq!(checkpoint_name(12), "ckpt-12");
        assert_eq!(checkpoint_step("ckpt-12"), Some(12));
        assert_eq!(checkpoint_step("final"), None);
        assert_eq!(checkpoint_step("ckpt-x"), None);
    }
}
