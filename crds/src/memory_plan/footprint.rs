//! The byte formulas: one function per part of a training step's peak memory on one
//! device that holds `layers` decoder layers. Activations, gradients of activations,
//! optimizer state, norms, softmax and the loss are f32 (4 bytes) on every backend;
//! only the frozen base weights keep the checkpoint's dtype.
//!
//! Letters in the comments: `h` hidden size, `L` layers on the device, `T` tokens of
//! a sequence (`maxTokens`), `d` head dim, `nh`/`nkv` query/key-value heads, `f` the
//! MLP width, `V` the vocabulary, `r` the LoRA rank.

use super::byte_size::GIB;
use super::inputs::{DeviceKind, PlanInputs, TrainedWeights, WeightDtype};

/// Bytes of an f32 element.
pub const F32_BYTES: u64 = 4;
/// An f32 trainable parameter: its value (4), its gradient (4) and AdamW's two
/// moments (4 + 4). A LoRA adapter is this and nothing else.
pub const TRAINABLE_BYTES_PER_PARAM: u64 = 16;
/// The f32 logits the chunked cross-entropy makes at once: the `[T, V]` logits of a
/// whole batch are never held, only a chunk of about 128 MiB and its gradient
/// ([`logits_chunk_tokens`]).
pub const LOGITS_CHUNK_BYTES: u64 = 128 * 1024 * 1024;
/// Chunks have 64 to 1,024 tokens: fewer rows make the head's product inefficient,
/// and a small vocabulary needs no chunking.
pub const LOGITS_CHUNK_TOKENS_MIN: u64 = 64;
pub const LOGITS_CHUNK_TOKENS_MAX: u64 = 1024;
/// `[chunk, V]` f32 tensors alive in the loss: the chunk's logits and their gradient.
pub const LOGITS_CHUNK_COPIES: u64 = 2;
/// Block-sized `[nh, rows, T]` f32 tensors alive while attention's backward works on
/// one query block: the recomputed softmax `P`, the gradient `dP`, `dP − rowsum(dP·P)`
/// and the scores' gradient `dS`. Attention keeps only q, k and v for its backward
/// pass (trainer/train/src/blocked_attention.rs): no score-sized tensor outlives a
/// block.
pub const ATTENTION_BLOCK_COPIES_IN_BACKWARD: u64 = 4;
/// `[T, f]` gradients alive while one layer's MLP runs backward (gate's and up's).
pub const MLP_GRADIENT_COPIES: u64 = 2;
/// The trainer's attention runs queries in blocks of 64 to 128 rows (at most 8 blocks
/// up to 1,024 tokens, then 128 rows each), each block against the keys up to its
/// last row only (trainer/model/src/llm/blocked_attention.rs asks [`attention_block_rows`]).
pub const ATTENTION_BLOCK_ROWS_MIN: u64 = 64;
pub const ATTENTION_BLOCK_ROWS_MAX: u64 = 128;
pub const ATTENTION_BLOCKS_UP_TO_MAX_ROWS: u64 = 8;
/// Workspace and fragmentation: the allocator's pools and kernels' scratch grow with
/// the tensors (10% of everything else), plus a fixed 1 GiB for the CUDA context,
/// kernel caches and the process itself.
pub const MARGIN_PERCENT: u64 = 10;
pub const MARGIN_FIXED_BYTES: u64 = GIB;

/// Bytes of the base weights on the device: `L` layers' parameters in
/// [`layer_weight_dtype`] and, on the same device (conservatively, with layer
/// placement too), the embedding, the output head and the final norm in the base
/// dtype (bf16: 2 bytes, f32: 4); with layers held narrower than they compute, one
/// layer's widened copy besides ([`widened_layer_bytes`]).
pub fn base_weight_bytes(inputs: &PlanInputs, layers: u64) -> u64 {
    let shape = &inputs.shape;
    layers * shape.layer_params() * layer_weight_dtype(inputs).bytes()
        + shape.outside_layer_params() * inputs.base_dtype.bytes()
        + widened_layer_bytes(inputs)
}

/// The dtype the decoder layers' weights are held in. The CPU computes in f32, but a
/// frozen base recomputed layer by layer keeps its layers in the checkpoint's own
/// half dtype there (bf16 or f16; an f32 checkpoint's stay f32) and widens one
/// layer's weights at a time (the trainer's `LayerStorage::Stored`); everywhere else
/// the base dtype.
pub fn layer_weight_dtype(inputs: &PlanInputs) -> WeightDtype {
    let frozen = matches!(inputs.trained, TrainedWeights::Lora { .. });
    let cpu = inputs.device.kind == DeviceKind::Cpu;
    match (
        cpu && frozen && inputs.gradient_checkpointing,
        inputs.base_dtype,
    ) {
        (true, WeightDtype::F32) => inputs.shape.stored_dtype,
        (_, dtype) => dtype,
    }
}

/// One layer's weights widened to the base dtype, when the layers are held narrower:
/// the widened copies of the layer being recomputed live until its backward ends.
pub fn widened_layer_bytes(inputs: &PlanInputs) -> u64 {
    match layer_weight_dtype(inputs) == inputs.base_dtype {
        true => 0,
        false => inputs.shape.layer_params() * inputs.base_dtype.bytes(),
    }
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

/// Query rows per attention block for a sequence of `tokens`, as the trainer splits it.
pub fn attention_block_rows(tokens: u64) -> u64 {
    tokens
        .div_ceil(ATTENTION_BLOCKS_UP_TO_MAX_ROWS)
        .clamp(ATTENTION_BLOCK_ROWS_MIN, ATTENTION_BLOCK_ROWS_MAX)
}

/// Each query block of a sequence of `tokens`: (rows, keys seen).
fn attention_blocks(tokens: u64) -> impl Iterator<Item = (u64, u64)> {
    let block = attention_block_rows(tokens);
    (0..tokens).step_by(block as usize).map(move |first| {
        let end = (first + block).min(tokens);
        (end - first, end)
    })
}

/// Score elements of one head of one sequence of `tokens`: the sum over the query
/// blocks of `rows * keys seen`, as the trainer computes them.
pub fn score_elements(tokens: u64) -> u64 {
    attention_blocks(tokens)
        .map(|(rows, keys)| rows * keys)
        .sum()
}

/// Score elements of one head in the largest query block of a sequence of `tokens`:
/// what attention's backward holds at once, one block at a time.
pub fn block_score_elements(tokens: u64) -> u64 {
    attention_blocks(tokens)
        .map(|(rows, keys)| rows * keys)
        .max()
        .unwrap_or(0)
}

/// One layer's input `[T, h]` f32: what recomputation keeps of each layer (and what
/// RMSNorm's backward keeps without it).
pub fn layer_input_bytes(inputs: &PlanInputs) -> u64 {
    inputs.max_tokens * inputs.shape.hidden_size * F32_BYTES
}

/// What one layer keeps for its backward pass besides its input, per sequence:
/// per token the first norm's output `h` (q/k/v's input), q after RoPE `nh*d`, k after
/// RoPE and v `2*nkv*d` (the attention matmuls' operands), the attention output `nh*d`
/// (o's input), the residual sum and second norm's output `2h`, gate, up and
/// `silu(gate) · up` `3f` (the MLP's operands: its SwiGLU keeps only gate and up, see
/// trainer/train/src/swiglu.rs); for each LoRA adapter its `[T, r]`
/// down-projection and, with dropout, the dropped copy of its input `in`. No scores:
/// attention's backward recomputes them block by block.
pub fn layer_saved_bytes(inputs: &PlanInputs) -> u64 {
    let shape = &inputs.shape;
    let per_token = 3 * shape.hidden_size
        + 2 * shape.query_width()
        + 2 * shape.kv_width()
        + 3 * shape.intermediate_size
        + lora_saved_per_token(inputs);
    inputs.max_tokens * per_token * F32_BYTES
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
/// attention's working set for its largest query block
/// ([`ATTENTION_BLOCK_COPIES_IN_BACKWARD`] `[nh, rows, T]`) or, at another moment, two
/// `[T, f]` (gate's and up's); both are counted, as the allocator may still hold one
/// while the other is made.
pub fn backward_working_bytes(inputs: &PlanInputs) -> u64 {
    let shape = &inputs.shape;
    let scores = ATTENTION_BLOCK_COPIES_IN_BACKWARD
        * shape.attention_heads
        * block_score_elements(inputs.max_tokens);
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
/// mask's triangles (one `[rows, rows]` f32 per block height, at most two) and RoPE's
/// cos and sin for queries and keys (`4 * [T, d]` f32).
pub fn shared_table_bytes(inputs: &PlanInputs) -> u64 {
    let block = attention_block_rows(inputs.max_tokens).min(inputs.max_tokens);
    let mask = 2 * block * block;
    let rope = 4 * inputs.max_tokens * inputs.shape.head_dim;
    (mask + rope) * F32_BYTES
}

/// Tokens per chunk of the chunked cross-entropy for a vocabulary of `vocab`: as many
/// as fit [`LOGITS_CHUNK_BYTES`] of f32 logits, within 64..=1,024 (220 at Qwen2.5's
/// 151,936, 261 at Llama 3's 128,256). The trainer chunks by this function too.
pub fn logits_chunk_tokens(vocab: u64) -> u64 {
    (LOGITS_CHUNK_BYTES / (vocab.max(1) * F32_BYTES))
        .clamp(LOGITS_CHUNK_TOKENS_MIN, LOGITS_CHUNK_TOKENS_MAX)
}

/// The tokens of one logits chunk for a micro-batch: fewer when the micro-batch has
/// fewer.
pub fn logits_chunk_tokens_of(inputs: &PlanInputs, micro_batch: u64) -> u64 {
    let tokens = micro_batch * inputs.sequences_per_sample * inputs.max_tokens;
    logits_chunk_tokens(inputs.shape.vocab_size).min(tokens)
}

/// The loss's logits for a micro-batch: one chunk ([`logits_chunk_tokens_of`]) times
/// `V`, f32, with its gradient.
pub fn logits_bytes(inputs: &PlanInputs, micro_batch: u64) -> u64 {
    logits_chunk_tokens_of(inputs, micro_batch)
        * inputs.shape.vocab_size
        * F32_BYTES
        * LOGITS_CHUNK_COPIES
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
        assert_eq!(block_score_elements(10), 100);
        // 200 tokens: blocks of 64 rows seeing 64, 128, 192 and 200 keys.
        assert_eq!(score_elements(200), 64 * 64 + 64 * 128 + 64 * 192 + 8 * 200);
        assert_eq!(block_score_elements(200), 64 * 192);
        // 4096 tokens: 32 blocks of 128 rows, (1 + ... + 32) x 128 x 128 = 33/64 of
        // 4096²; the largest block is 128 x 4096, 1/32 of the square.
        assert_eq!(score_elements(4096), 528 * 128 * 128);
        assert_eq!(score_elements(4096) * 64, 33 * 4096 * 4096);
        assert_eq!(block_score_elements(4096), 128 * 4096);
    }

    #[test]
    fn logits_chunks_hold_about_128_mib_within_64_to_1024_tokens() {
        assert_eq!(logits_chunk_tokens(151_936), 220);
        assert_eq!(logits_chunk_tokens(128_256), 261);
        assert!(logits_chunk_tokens(151_936) * 151_936 * 4 <= LOGITS_CHUNK_BYTES);
        assert_eq!(logits_chunk_tokens(2_048), 1024);
        assert_eq!(logits_chunk_tokens(4_000_000), 64);
    }

    #[test]
    fn the_margin_is_ten_percent_and_a_gib() {
        assert_eq!(margin_bytes(10 * GIB), 2 * GIB);
        assert_eq!(margin_bytes(0), GIB);
    }
}
