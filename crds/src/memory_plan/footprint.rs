//! The byte formulas: one function per part of a training step's peak memory on one
//! device that holds `layers` decoder layers. Activations, gradients of activations,
//! optimizer state, norms, softmax and the loss are f32 (4 bytes) on every backend;
//! only the frozen base weights keep the checkpoint's dtype.
//!
//! Letters in the comments: `h` hidden size, `L` layers on the device, `T` tokens of
//! a sequence (`maxTokens`), `d` head dim, `nh`/`nkv` query/key-value heads, `f` the
//! MLP width, `V` the vocabulary, `r` the LoRA rank.

use super::byte_size::GIB;
use super::inputs::{PlanInputs, TrainedWeights, WeightDtype};

/// Bytes of an f32 element.
pub const F32_BYTES: u64 = 4;
/// An f32 trainable parameter: its value (4), its gradient (4) and AdamW's two
/// moments (4 + 4). A LoRA adapter is this and nothing else.
pub const TRAINABLE_BYTES_PER_PARAM: u64 = 16;
/// Tokens the chunked cross-entropy turns into logits at once: the `[T, V]` logits
/// of a whole batch are never held, only a `[1024, V]` chunk and its gradient.
pub const LOGITS_CHUNK_TOKENS: u64 = 1024;
/// `[1024, V]` f32 tensors alive in the loss: the chunk's logits and their gradient.
pub const LOGITS_CHUNK_COPIES: u64 = 2;
/// Score-sized `[nh, T, T]` f32 tensors a layer keeps for its backward pass: the
/// softmax output, with a softmax whose backward needs only its output.
pub const SCORE_COPIES_KEPT: u64 = 1;
/// Score-sized gradients alive while one layer's attention runs backward: the
/// gradient of the softmax output and of the scores.
pub const SCORE_COPIES_IN_BACKWARD: u64 = 2;
/// `[T, f]` gradients alive while one layer's MLP runs backward (gate's and up's).
pub const MLP_GRADIENT_COPIES: u64 = 2;
/// The trainer's attention runs queries in at most 8 blocks of at least 64 rows, each
/// block against the keys up to its last row only (trainer/src/model/attention.rs,
/// `query_blocks`): the scores cover about 9/16 of the `[T, T]` square, not all of it.
pub const ATTENTION_QUERY_BLOCKS_MAX: u64 = 8;
pub const ATTENTION_BLOCK_ROWS_MIN: u64 = 64;
/// Workspace and fragmentation: the allocator's pools and kernels' scratch grow with
/// the tensors (10% of everything else), plus a fixed 1 GiB for the CUDA context,
/// kernel caches and the process itself.
pub const MARGIN_PERCENT: u64 = 10;
pub const MARGIN_FIXED_BYTES: u64 = GIB;

/// Bytes of the base weights on the device: `L` layers' parameters and, on the same
/// device (conservatively, with layer placement too), the embedding, the output head
/// and the final norm, each parameter in the base dtype (bf16: 2 bytes, f32: 4).
pub fn base_weight_bytes(inputs: &PlanInputs, layers: u64) -> u64 {
    let shape = &inputs.shape;
    (layers * shape.layer_params() + shape.outside_layer_params()) * inputs.base_dtype.bytes()
}

/// Parameters that train on the device: LoRA's `r * (in + out)` per adapted
/// projection per layer, or with full training every parameter there.
pub fn trainable_params(inputs: &PlanInputs, layers: u64) -> u64 {
    let shape = &inputs.shape;
    match &inputs.trained {
        TrainedWeights::Lora { rank, targets, .. } => {
            layers * shape.lora_params_per_layer(*rank, targets)
        }
        TrainedWeights::Full => layers * shape.layer_params() + shape.outside_layer_params(),
    }
}

/// Bytes per trainable parameter beyond the base weights. LoRA: 16 (f32 value,
/// gradient, two AdamW moments). Full training keeps an f32 master copy of every
/// weight for the optimizer to update, so with a bf16 base it is also 16 on top of the
/// base's 2 (18 in all); with an f32 base (the CPU) the base is the master copy, and
/// only the gradient and moments are added: 12 on top of 4.
pub fn trainable_bytes_per_param(inputs: &PlanInputs) -> u64 {
    match (&inputs.trained, inputs.base_dtype) {
        (TrainedWeights::Lora { .. }, _) => TRAINABLE_BYTES_PER_PARAM,
        (TrainedWeights::Full, WeightDtype::F32) => TRAINABLE_BYTES_PER_PARAM - F32_BYTES,
        (TrainedWeights::Full, _) => TRAINABLE_BYTES_PER_PARAM,
    }
}

/// Bytes of the trainable state on the device.
pub fn trainable_state_bytes(inputs: &PlanInputs, layers: u64) -> u64 {
    trainable_params(inputs, layers) * trainable_bytes_per_param(inputs)
}

/// Score elements of one head of one sequence of `tokens`: the sum over the query
/// blocks of `rows * keys seen`, as the trainer computes them.
pub fn score_elements(tokens: u64) -> u64 {
    let block = tokens
        .div_ceil(ATTENTION_QUERY_BLOCKS_MAX)
        .max(ATTENTION_BLOCK_ROWS_MIN);
    (0..tokens)
        .step_by(block as usize)
        .map(|first| {
            let end = (first + block).min(tokens);
            (end - first) * end
        })
        .sum()
}

/// One layer's input `[T, h]` f32: what recomputation keeps of each layer (and what
/// RMSNorm's backward keeps without it).
pub fn layer_input_bytes(inputs: &PlanInputs) -> u64 {
    inputs.max_tokens * inputs.shape.hidden_size * F32_BYTES
}

/// What one layer keeps for its backward pass besides its input, per sequence:
/// per token the first norm's output `h` (q/k/v's input), q after RoPE `nh*d`, k after
/// RoPE and v `2*nkv*d` (the attention matmuls' operands), the attention output `nh*d`
/// (o's input), the residual sum and second norm's output `2h`, gate, up, silu(gate)
/// and their product `4f` (the MLP's operands); for each LoRA adapter its `[T, r]`
/// down-projection and, with dropout, the dropped copy of its input `in`; and the
/// softmax output, `nh` heads of [`score_elements`].
pub fn layer_saved_bytes(inputs: &PlanInputs) -> u64 {
    let shape = &inputs.shape;
    let per_token = 3 * shape.hidden_size
        + 2 * shape.query_width()
        + 2 * shape.kv_width()
        + 4 * shape.intermediate_size
        + lora_saved_per_token(inputs);
    let scores = SCORE_COPIES_KEPT * shape.attention_heads * score_elements(inputs.max_tokens);
    (inputs.max_tokens * per_token + scores) * F32_BYTES
}

/// LoRA's own activations per token of one layer: `r` per adapter, plus `in` with dropout.
fn lora_saved_per_token(inputs: &PlanInputs) -> u64 {
    let TrainedWeights::Lora {
        rank,
        targets,
        dropout,
    } = &inputs.trained
    else {
        return 0;
    };
    inputs
        .shape
        .linears()
        .iter()
        .filter(|l| targets.contains(&l.module))
        .map(|l| rank + if *dropout { l.inputs } else { 0 })
        .sum()
}

/// Gradients alive at the worst moment of one layer's backward pass, per sequence:
/// two score-sized `[nh, T, T]` (the softmax output's and the scores') or, later, two
/// `[T, f]` (gate's and up's); both are counted, as the allocator may still hold one
/// while the other is made.
pub fn backward_working_bytes(inputs: &PlanInputs) -> u64 {
    let shape = &inputs.shape;
    let scores =
        SCORE_COPIES_IN_BACKWARD * shape.attention_heads * score_elements(inputs.max_tokens);
    let mlp = MLP_GRADIENT_COPIES * inputs.max_tokens * shape.intermediate_size;
    (scores + mlp) * F32_BYTES
}

/// The final norm's input and output and the output's gradient, `3 * [T, h]` f32
/// per sequence, on the device that holds the head.
pub fn head_activation_bytes(inputs: &PlanInputs) -> u64 {
    3 * inputs.max_tokens * inputs.shape.hidden_size * F32_BYTES
}

/// Activations of one sample (`sequences_per_sample` sequences of `maxTokens`) on a
/// device with `layers` layers. With recomputation: every layer's input, plus one layer
/// recomputed in full with its backward working set. Without: every layer's input and
/// everything it keeps (scores included), plus one layer's working set.
pub fn activation_bytes_per_sample(inputs: &PlanInputs, layers: u64) -> u64 {
    let inputs_kept = layers * layer_input_bytes(inputs);
    let layers_saved = if inputs.gradient_checkpointing {
        layer_saved_bytes(inputs)
    } else {
        layers * layer_saved_bytes(inputs)
    };
    let per_sequence =
        inputs_kept + layers_saved + backward_working_bytes(inputs) + head_activation_bytes(inputs);
    inputs.sequences_per_sample * per_sequence
}

/// Tables built once per length and shared by every layer and sample: the causal
/// mask blocks (one f32 per score element of a head) and RoPE's cos and sin for
/// queries and keys (`4 * [T, d]` f32).
pub fn shared_table_bytes(inputs: &PlanInputs) -> u64 {
    let mask = score_elements(inputs.max_tokens);
    let rope = 4 * inputs.max_tokens * inputs.shape.head_dim;
    (mask + rope) * F32_BYTES
}

/// The loss's logits for a micro-batch: one chunk of at most [`LOGITS_CHUNK_TOKENS`]
/// tokens (fewer when the micro-batch has fewer) times `V`, f32, with its gradient.
pub fn logits_bytes(inputs: &PlanInputs, micro_batch: u64) -> u64 {
    let tokens = micro_batch * inputs.sequences_per_sample * inputs.max_tokens;
    LOGITS_CHUNK_TOKENS.min(tokens) * inputs.shape.vocab_size * F32_BYTES * LOGITS_CHUNK_COPIES
}

/// The workspace and fragmentation margin on top of `subtotal` bytes.
pub fn margin_bytes(subtotal: u64) -> u64 {
    subtotal * MARGIN_PERCENT / 100 + MARGIN_FIXED_BYTES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_cover_the_causal_blocks_only() {
        // Up to 64 tokens: one block, the whole square.
        assert_eq!(score_elements(10), 100);
        // 200 tokens: blocks of 64 rows seeing 64, 128, 192 and 200 keys.
        assert_eq!(score_elements(200), 64 * 64 + 64 * 128 + 64 * 192 + 8 * 200);
        // 4096 tokens: 8 blocks of 512 rows, (1 + ... + 8) x 512 x 512 = 9/16 of 4096².
        assert_eq!(score_elements(4096), 36 * 512 * 512);
        assert_eq!(score_elements(4096) * 16, 9 * 4096 * 4096);
    }

    #[test]
    fn the_margin_is_ten_percent_and_a_gib() {
        assert_eq!(margin_bytes(10 * GIB), 2 * GIB);
        assert_eq!(margin_bytes(0), GIB);
    }
}
