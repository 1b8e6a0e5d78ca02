//! The peak of a training step on the CPU backend, as measured rather than bounded:
//! `benches/scale_cpu.py` at three shapes (Qwen2.5-0.5B's; a small body with Qwen's
//! 152k vocabulary, where the loss dominates; a small body with 14 heads at up to
//! 8,192 tokens, where attention dominates; benches/RESULTS.md) showed three things
//! the GPU plan's bounds do not assume:
//! - the loss and the layers' backward never hold their working sets at once: the
//!   chunked loss runs (and frees its chunk) before the first layer is recomputed;
//! - a layer's backward goes through its MLP first and frees the MLP's saved tensors
//!   before attention's backward works through its query blocks;
//! - burn's CPU backend computes a chunk's softmax in the logits' own buffer, so one
//!   logits-sized tensor is made, not two.
//!
//! The GPU plan keeps its bounds until a GPU run measures them.

use super::byte_size::MIB;
use super::footprint::{
    F32_BYTES, MLP_GRADIENT_COPIES, block_score_elements, head_activation_bytes, layer_input_bytes,
    layer_saved_bytes,
};
use super::inputs::{PlanInputs, TrainedWeights};
use crate::hyperparameters::TargetModule;

/// Block-sized `[nh, rows, T]` f32 tensors alive while attention's backward works on
/// one query block on the CPU.
pub const CPU_ATTENTION_BLOCK_COPIES_IN_BACKWARD: u64 = 3;
/// Logits-sized tensors alive in the chunked loss on the CPU.
pub const CPU_LOGITS_CHUNK_COPIES: u64 = 1;
/// The allocator's slack (10% of the rest) and the process itself (64 MiB).
pub const CPU_MARGIN_PERCENT: u64 = 10;
pub const CPU_MARGIN_FIXED_BYTES: u64 = 64 * MIB;

const ATTENTION: [TargetModule; 4] = [
    TargetModule::QProj,
    TargetModule::KProj,
    TargetModule::VProj,
    TargetModule::OProj,
];

/// What attention keeps for its backward per sequence: the first norm's output, q
/// after RoPE and the attention output (`2 * nh * d`), k and v (`2 * nkv * d`), and
/// the attention adapters' own activations.
fn attention_saved_bytes(inputs: &PlanInputs) -> u64 {
    let shape = &inputs.shape;
    let lora = match &inputs.trained {
        TrainedWeights::Lora {
            rank,
            targets,
            dropout,
        } => shape
            .linears()
            .iter()
            .filter(|l| ATTENTION.contains(&l.module) && targets.contains(&l.module))
            .map(|l| rank + if *dropout { l.inputs } else { 0 })
            .sum(),
        TrainedWeights::Full => 0,
    };
    let per_token = shape.hidden_size + 2 * shape.query_width() + 2 * shape.kv_width() + lora;
    inputs.max_tokens * per_token * F32_BYTES
}

/// The layers' phase per sequence on a device with `layers` layers: the kept inputs
/// (every layer's, with recomputation; every layer's saved tensors without) and the
/// head's activations, plus the larger of the two moments of one layer's backward:
/// its MLP's (everything the layer saved, and the MLP's gradients) and its
/// attention's (what attention saved, and one query block's working set).
pub fn cpu_layer_phase_bytes(inputs: &PlanInputs, layers: u64) -> u64 {
    let shape = &inputs.shape;
    let whole_layer = layer_saved_bytes(inputs);
    let mlp_gradients =
        MLP_GRADIENT_COPIES * inputs.max_tokens * shape.intermediate_size * F32_BYTES;
    let block_working_set = CPU_ATTENTION_BLOCK_COPIES_IN_BACKWARD
        * shape.attention_heads
        * block_score_elements(inputs.max_tokens)
        * F32_BYTES;
    let mlp_moment = whole_layer + mlp_gradients;
    let attention_moment = attention_saved_bytes(inputs) + block_working_set;
    let other_layers = if inputs.gradient_checkpointing {
        layers * layer_input_bytes(inputs)
    } else {
        layers.saturating_sub(1) * whole_layer
    };
    other_layers + head_activation_bytes(inputs) + mlp_moment.max(attention_moment)
}

/// The loss's phase for a micro-batch, less what the layers' phase shares with it:
/// one chunk of logits; the kept inputs and head activations are the layers' phase's.
pub fn cpu_logits_bytes(inputs: &PlanInputs, micro_batch: u64) -> u64 {
    super::footprint::logits_chunk_tokens_of(inputs, micro_batch)
        * inputs.shape.vocab_size
        * F32_BYTES
        * CPU_LOGITS_CHUNK_COPIES
}

/// The loss phase's activations: every layer's input and the head's, per sequence.
pub fn cpu_loss_phase_activation_bytes(inputs: &PlanInputs, layers: u64) -> u64 {
    layers * layer_input_bytes(inputs) + head_activation_bytes(inputs)
}

pub fn cpu_margin_bytes(subtotal: u64) -> u64 {
    subtotal * CPU_MARGIN_PERCENT / 100 + CPU_MARGIN_FIXED_BYTES
}
