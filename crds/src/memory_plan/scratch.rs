//! The trainer pod's scratch disk (its `/work` emptyDir): what a run writes there and
//! so the volume's `sizeLimit`, which keeps one job from filling its node's disk (the
//! kubelet evicts a pod that writes past it). A run holds at once:
//!
//! - the base model, downloaded in the checkpoint's dtype (bf16 for the hub models
//!   users name: 2 bytes a parameter);
//! - one checkpoint staged for upload and, after a restart, the one it resumed from:
//!   each the f32 trainable weights and AdamW's two moments, 12 bytes a trainable
//!   parameter (gradients are not saved);
//! - the datasets, whose size the operator does not know before the pod reads them:
//!   a fixed allowance;
//! - a margin for logs, tokenizer files and the file system's own blocks.
//!
//! At Qwen2.5-7B with LoRA r8 on all projections this is 14.2 GiB of weights, 2 x 0.2
//! GiB of checkpoints, 16 GiB for datasets: 35.7 GiB with the margin. At 72B: 171 GiB;
//! a full fine-tune of 7B: 222 GiB.

use super::byte_size::{ByteSize, GIB};
use super::footprint::trainable_params;
use super::inputs::{DeviceMemory, PlanInputs};
use super::model_shape::ModelShape;
use crate::finetunejob::FineTuneJobSpec;

/// Bytes a parameter of a hub checkpoint takes on disk (bf16).
pub const CHECKPOINT_BYTES_PER_PARAM: u64 = 2;
/// Bytes a trainable parameter takes in a saved checkpoint: its f32 value and AdamW's
/// two f32 moments.
pub const SAVED_BYTES_PER_TRAINABLE_PARAM: u64 = 12;
/// Checkpoints on the scratch disk at once: the one being uploaded and the one a
/// restarted run resumed from.
pub const CHECKPOINTS_ON_DISK: u64 = 2;
/// Room for the datasets: hosted fine-tuning services cap a training file well below
/// this, and a larger one can name its own `spec.resources.scratch`.
pub const DATASET_ALLOWANCE: ByteSize = ByteSize::gib(16);
/// Margin: 10% of the rest plus 2 GiB.
pub const MARGIN_PERCENT: u64 = 10;
pub const MARGIN_FIXED_BYTES: u64 = 2 * GIB;

/// The scratch disk a run of `spec` on a model of `shape` needs, part by part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScratchPlan {
    pub weights: ByteSize,
    pub checkpoints: ByteSize,
    pub datasets: ByteSize,
    pub margin: ByteSize,
    pub total: ByteSize,
}

/// Plans the scratch disk of a run of `spec` on a model of `shape`.
pub fn scratch_plan(spec: &FineTuneJobSpec, shape: ModelShape) -> ScratchPlan {
    // The device only decides the dtype weights are held in on it, not on disk; every
    // layer is on the one pod's disk.
    let inputs = PlanInputs::for_job(spec, shape, DeviceMemory::cpu(ByteSize::gib(1)));
    let layers = shape.layers;
    let weights = shape.params() * CHECKPOINT_BYTES_PER_PARAM;
    let checkpoints =
        CHECKPOINTS_ON_DISK * trainable_params(&inputs, layers) * SAVED_BYTES_PER_TRAINABLE_PARAM;
    let datasets = DATASET_ALLOWANCE.bytes();
    let subtotal = weights + checkpoints + datasets;
    let margin = subtotal * MARGIN_PERCENT / 100 + MARGIN_FIXED_BYTES;
    ScratchPlan {
        weights: ByteSize(weights),
        checkpoints: ByteSize(checkpoints),
        datasets: ByteSize(datasets),
        margin: ByteSize(margin),
        total: ByteSize(subtotal + margin),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory_plan::known_shape;

    fn spec(training: &str) -> FineTuneJobSpec {
        serde_yaml_ng::from_str(&format!(
            "baseModel: {{name: Qwen2.5-7B-Instruct, source: s3://m/q}}\n\
             dataset: {{train: s3://d/train.jsonl}}\n\
             training: {training}\n\
             hyperparameters: {{loraRank: 8, targetModules: [q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj]}}\n\
             output: {{uri: s3://o/runs}}\n"
        ))
        .unwrap()
    }

    #[test]
    fn a_7b_lora_run_needs_its_bf16_weights_two_adapters_and_the_dataset_allowance() {
        let shape = known_shape("Qwen2.5-7B-Instruct").unwrap();
        let plan = scratch_plan(&spec("lora"), shape);
        // 7.62e9 parameters in bf16.
        assert_eq!(plan.weights.bytes(), shape.params() * 2);
        assert_eq!(format!("{}", plan.weights), "14.2 GiB");
        // r8 on all seven projections of 28 layers: 20.2M parameters, 12 bytes each, twice.
        assert_eq!(plan.checkpoints.bytes(), 2 * 20_185_088 * 12);
        assert_eq!(plan.datasets, ByteSize::gib(16));
        assert_eq!(format!("{}", plan.checkpoints), "462.0 MiB");
        assert_eq!(format!("{}", plan.total), "35.7 GiB");
    }

    #[test]
    fn full_training_saves_every_parameter_and_72b_fits_a_node_disk() {
        let seven = known_shape("Qwen2.5-7B-Instruct").unwrap();
        let full = scratch_plan(&spec("full"), seven);
        assert_eq!(full.checkpoints.bytes(), 2 * seven.params() * 12);
        assert_eq!(format!("{}", full.checkpoints), "170.2 GiB");
        assert_eq!(format!("{}", full.total), "222.4 GiB");
        let seventy_two = known_shape("Qwen2.5-72B-Instruct").unwrap();
        let plan = scratch_plan(&spec("lora"), seventy_two);
        assert_eq!(format!("{}", plan.weights), "135.4 GiB");
        assert_eq!(format!("{}", plan.checkpoints), "2.4 GiB");
        assert_eq!(format!("{}", plan.total), "171.2 GiB");
    }
}
