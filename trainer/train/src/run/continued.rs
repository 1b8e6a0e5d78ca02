//! A run that trains another job's LoRA adapter further (`spec.baseModel.fineTuneJob`
//! naming a LoRA checkpoint): the adapter is loaded onto the base after checking that
//! it is the adapter this job's settings would train. Training it further, rather than
//! merging it into the base and starting a new one, keeps the result a plain adapter
//! of the original base (served, evaluated and published like any other) and costs
//! no copy of the base weights; DPO's reference is then the model with the loaded
//! adapter, the SFT result the run starts from.

use std::path::Path;

use anneal_crds::finetunejob::TrainingType;
use anneal_model::llm::CausalLm;
use anneal_model::lora::LoraSettings;
use anneal_model::lora::peft::{load_adapter, read_adapter_config};
use burn::tensor::backend::Backend;

use crate::TrainError;
use crate::checkpoint::with_dropout;

/// `base` with the adapter in `dir` (`what`: where it came from, for messages), ready
/// to train with the job's dropout; an error naming the setting when the job would
/// train another kind of adapter.
pub(super) fn continue_adapter<B: Backend>(
    base: CausalLm<B>,
    dir: &Path,
    what: &str,
    training: TrainingType,
    lora: &LoraSettings,
) -> Result<CausalLm<B>, TrainError> {
    let refused = |message: String| Err(TrainError::StartingPoint(message));
    if training == TrainingType::Full {
        return refused(
            "spec.training: full training cannot start from a LoRA checkpoint; train its adapter further (training: lora), or publish it merged (trainer publish --merge) and start from that folder as spec.baseModel.source".to_owned(),
        );
    }
    let config = read_adapter_config(dir)?;
    let mut ours: Vec<&str> = lora.target_modules.iter().map(|m| m.hf_name()).collect();
    let mut theirs: Vec<&str> = config.target_modules.iter().map(String::as_str).collect();
    ours.sort_unstable();
    theirs.sort_unstable();
    let differences = [
        (
            "rank",
            lora.rank.to_string(),
            config.r.to_string(),
            lora.rank == config.r,
        ),
        (
            "alpha",
            lora.alpha.to_string(),
            config.lora_alpha.to_string(),
            (lora.alpha - config.lora_alpha).abs() < 1e-9,
        ),
        (
            "targetModules",
            ours.join(", "),
            theirs.join(", "),
            ours == theirs,
        ),
        (
            "useRslora",
            lora.use_rslora.to_string(),
            config.use_rslora.to_string(),
            lora.use_rslora == config.use_rslora,
        ),
    ];
    if let Some((field, ours, theirs, _)) = differences.iter().find(|d| !d.3) {
        return refused(format!(
            "spec.hyperparameters.lora.{field}: {ours}, but the adapter of {what} has {theirs}; a job that starts from a LoRA checkpoint trains that adapter further, so its rank, alpha, targetModules and useRslora must be the same"
        ));
    }
    Ok(with_dropout(load_adapter(base, dir)?, lora.dropout))
}
