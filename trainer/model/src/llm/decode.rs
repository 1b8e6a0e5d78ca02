//! One decoding step for many generations at once, against the preallocated cache
//! ([`KvSlots`]): each row is one new token after what its slot holds. The
//! projections run on all rows together (one product per weight; rows of different
//! LoRA adapters add their own adapter's update, see [`crate::lora::bank`]), and
//! attention runs once for all rows, each against its own slot, the slots'
//! different lengths masked. Prompts run through `CausalLm::forward_hidden` and are
//! moved into a slot with [`KvSlots::fill`]. With the layers placed on several
//! devices, the hidden states move to each stage's device as `forward_hidden`'s do,
//! and each layer's keys and values stay on its own.

use anneal_crds::hyperparameters::TargetModule;
use burn::prelude::*;
use burn::tensor::activation::{silu, softmax};
use burn::tensor::{DType, IndexingUpdateOp};

use super::attention::Attention;
use super::kv_slots::{KvSlots, Writes};
use super::precision::{cast, rms_norm};
use super::projection::Projection;
use super::rope::RopeTables;
use super::transformer::{CausalLm, DecoderLayer};
use crate::lora::bank::RowAdapters;

impl<B: Backend> CausalLm<B> {
    /// One decoding step: `tokens[i]` follows what slot `slots[i]` of `cache` holds
    /// (the slots distinct, of any lengths). Returns the next-token logits `[rows,
    /// vocab]` in f32; each slot is one position longer. `adapters`: each row's LoRA
    /// adapter when they differ (a model with its adapter attached needs none).
    pub fn decode_rows(
        &self,
        tokens: &[u32],
        slots: &[usize],
        cache: &mut KvSlots<B>,
        adapters: Option<&RowAdapters<B>>,
    ) -> Tensor<B, 2> {
        assert_eq!(tokens.len(), slots.len(), "a token per slot");
        let rows = tokens.len();
        let longest = slots.iter().map(|&s| cache.len(s)).max().unwrap_or(0);
        cache.reserve(longest + 1);
        let device = self.embed_tokens.weight.device();
        let mut step = DecodeStep::new(self, slots, cache, &device);
        let ids: Vec<i64> = tokens.iter().map(|&t| i64::from(t)).collect();
        let ids = Tensor::<B, 1, Int>::from_data(TensorData::new(ids, [rows]), &device)
            .reshape([rows, 1]);
        let mut x = self.embed(ids); // [rows, 1, hidden]
        for (i, layer) in self.layers.iter().enumerate() {
            if self.starts_stage(i) {
                // The next device's layers: the hidden states and the step's tables move there.
                let device = layer.device();
                x = x.to_device(&device);
                step = DecodeStep::new(self, slots, cache, &device);
            }
            x = layer.decode(i, x, &step, cache, adapters);
        }
        cache.advance(&step.writes);
        let logits = self.logits(self.final_norm(x)); // [rows, 1, vocab]
        let vocab = logits.dims()[2];
        logits.reshape([rows, vocab])
    }
}

/// What every layer of one step shares, built once per step (and per device).
struct DecodeStep<B: Backend> {
    rows: usize,
    rope: RopeTables<B>,
    writes: Writes<B>,
    /// Attention runs over slots `0..span`...
    span: usize,
    /// ...and positions `0..seen`: up to the longest row's new token.
    seen: usize,
    /// Each row's slot, when the rows are not slots `0..span` in order: the queries
    /// are spread to their slots and the outputs gathered back (cheap: one token each).
    spread: Option<Tensor<B, 1, Int>>,
    /// `[span, 1, seen]` in f32: 0 where a slot's query may look, -inf past its own
    /// new token.
    bias: Tensor<B, 3>,
}

impl<B: Backend> DecodeStep<B> {
    fn new(model: &CausalLm<B>, slots: &[usize], cache: &KvSlots<B>, device: &B::Device) -> Self {
        let writes = cache.writes(slots, device);
        let span = slots.iter().max().map_or(0, |s| s + 1);
        let seen = writes.at.iter().map(|&(_, pos)| pos + 1).max().unwrap_or(0);
        // Rows stand in the tables' sequence dimension: each meets its own position.
        let rope = model
            .rope
            .tables_at::<B>(writes.at.iter().map(|&(_, pos)| pos), device);
        let spread = (!slots.iter().copied().eq(0..span)).then(|| {
            let ids: Vec<i64> = slots.iter().map(|&s| s as i64).collect();
            Tensor::from_data(TensorData::new(ids, [slots.len()]), device)
        });
        // Each slot's last visible position is its new token's. A slot with no row in
        // this step sees position 0 only: its output is dropped, and its softmax stays
        // finite.
        let mut last = vec![0i64; span];
        for &(slot, pos) in &writes.at {
            assert_eq!(last[slot], 0, "slot {slot} twice in one step");
            last[slot] = pos as i64;
        }
        let positions = Tensor::<B, 1, Int>::arange(0..seen as i64, device)
            .reshape([1, seen])
            .expand([span, seen]);
        let last = Tensor::<B, 1, Int>::from_data(TensorData::new(last, [span]), device)
            .reshape([span, 1])
            .expand([span, seen]);
        let bias = Tensor::<B, 2>::zeros([span, seen], (device, DType::F32))
            .mask_fill(positions.greater(last), f32::NEG_INFINITY)
            .reshape([span, 1, seen]);
        Self {
            rows: slots.len(),
            rope,
            writes,
            span,
            seen,
            spread,
            bias,
        }
    }
}

impl<B: Backend> DecoderLayer<B> {
    /// The block of `forward` for one token per row: `x` `[rows, 1, hidden]`.
    fn decode(
        &self,
        layer: usize,
        x: Tensor<B, 3>,
        step: &DecodeStep<B>,
        cache: &mut KvSlots<B>,
        adapters: Option<&RowAdapters<B>>,
    ) -> Tensor<B, 3> {
        let normed = rms_norm(&self.input_layernorm, x.clone());
        let x = x + self.self_attn.decode(layer, normed, step, cache, adapters);
        // The MLP as `Mlp::forward` computes it, each projection with the rows' adapters.
        let h = rms_norm(&self.post_attention_layernorm, x.clone());
        let mlp = &self.mlp;
        let gate = silu(project(
            &mlp.gate_proj,
            layer,
            TargetModule::GateProj,
            h.clone(),
            adapters,
        ));
        let up = project(&mlp.up_proj, layer, TargetModule::UpProj, h, adapters);
        x + project(
            &mlp.down_proj,
            layer,
            TargetModule::DownProj,
            gate * up,
            adapters,
        )
    }
}

impl<B: Backend> Attention<B> {
    /// `x` `[rows, 1, hidden]`, each row at its slot's length; writes the rows' keys
    /// and values into `cache` and attends over their slots. Returns `[rows, 1, hidden]`.
    fn decode(
        &self,
        layer: usize,
        x: Tensor<B, 3>,
        step: &DecodeStep<B>,
        cache: &mut KvSlots<B>,
        adapters: Option<&RowAdapters<B>>,
    ) -> Tensor<B, 3> {
        let (rows, span, seen) = (step.rows, step.span, step.seen);
        let (h, kv, d) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let groups = h / kv;
        let proj = |p: &Projection<B>, module, x| project(p, layer, module, x, adapters);
        // RoPE as in `forward` (the query tables carry the score scale).
        let q = step
            .rope
            .q
            .apply(proj(&self.q_proj, TargetModule::QProj, x.clone()).reshape([1, rows, h, d]));
        let k = step
            .rope
            .k
            .apply(proj(&self.k_proj, TargetModule::KProj, x.clone()).reshape([1, rows, kv, d]));
        let v = proj(&self.v_proj, TargetModule::VProj, x).reshape([rows, kv, 1, d]);
        cache.write(layer, &step.writes, k.reshape([rows, kv, 1, d]), v);
        let cached = cache.view(layer, span, seen); // [span, kv, seen, d]

        // Each key/value head serves `groups` query heads in a row (transformers'
        // `repeat_kv` layout): those heads are the rows of one product with their keys,
        // so the keys are neither repeated nor broadcast.
        let q = q.reshape([rows, kv, groups, d]);
        let dtype = q.dtype();
        let q = match &step.spread {
            // Onto zeros, so the add is a placement.
            Some(slots) => Tensor::zeros([span, kv, groups, d], (&q.device(), dtype))
                .select_assign(0, slots.clone(), q, IndexingUpdateOp::Add),
            None => q,
        }; // [span, kv, groups, d]
        let scores = q.matmul(cached.keys.swap_dims(2, 3)); // [span, kv, groups, seen]
        // The products in the compute dtype, masking and softmax in f32 (as `forward`).
        let scores = cast(scores, DType::F32).reshape([span, h, seen]) + step.bias.clone();
        let weights = cast(softmax(scores, 2), dtype).reshape([span, kv, groups, seen]);
        let out = weights.matmul(cached.values); // [span, kv, groups, d]
        let out = match &step.spread {
            Some(slots) => out.select(0, slots.clone()), // [rows, kv, groups, d]
            None => out,
        };
        proj(
            &self.o_proj,
            TargetModule::OProj,
            out.reshape([rows, 1, h * d]),
        )
    }
}

/// `projection` of `x` `[rows, 1, in]` (with the adapter attached to it, if any),
/// plus each row's own adapter update when `adapters` are given: the adapter's path
/// in f32, added in `x`'s dtype, as `Projection::forward` adds its own.
fn project<B: Backend>(
    projection: &Projection<B>,
    layer: usize,
    module: TargetModule,
    x: Tensor<B, 3>,
    adapters: Option<&RowAdapters<B>>,
) -> Tensor<B, 3> {
    let Some(adapters) = adapters else {
        return projection.forward(x);
    };
    let [rows, seq, input] = x.dims();
    let y = projection.forward(x.clone());
    match adapters.update(layer, module, x.reshape([rows * seq, input])) {
        Some(update) => {
            let out = update.dims()[1];
            y.clone() + cast(update, y.dtype()).reshape([rows, seq, out])
        }
        None => y,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::backend::CpuBackend;
    use crate::llm::{KvCache, load_model};

    type B = CpuBackend;

    fn ids(v: &[i64]) -> Tensor<B, 2, Int> {
        Tensor::<B, 1, Int>::from_data(TensorData::new(v.to_vec(), [v.len()]), &Default::default())
            .reshape([1, v.len()])
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    /// Three sequences of different lengths decoding a token each, together in one
    /// cache, get the logits and keys each gets alone through `forward_hidden` (the
    /// forward pass training uses); in slots out of order (queries spread to their
    /// slots, an idle slot between them) as well as in slots `0..3`.
    #[test]
    fn decoding_rows_together_matches_each_alone() {
        let dir =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/reference/qwen2-tiny");
        let (_, model) = load_model::<B>(&dir, &Default::default(), DType::F32).unwrap();
        let prompts: [&[i64]; 3] = [&[1, 2, 3], &[40, 41, 42, 43, 44, 45, 46], &[9]];
        let next = [5u32, 77, 300];
        let prompt_cache = |p: &[i64]| model.forward_hidden(ids(p), None).1;
        for slots in [[0, 1, 2], [3, 0, 2]] {
            let mut cache = KvSlots::new(&model, 4, 64);
            cache.reserve(8);
            for (p, &slot) in prompts.iter().zip(&slots) {
                cache.fill(slot, prompt_cache(p));
            }
            let together = model
                .decode_rows(&next, &slots, &mut cache, None)
                .into_data()
                .to_vec::<f32>()
                .unwrap();
            let vocab = together.len() / 3;
            for (i, p) in prompts.iter().enumerate() {
                let (hidden, alone_cache): (_, KvCache<B>) =
                    model.forward_hidden(ids(&[i64::from(next[i])]), Some(prompt_cache(p)));
                let alone = model.logits(hidden).into_data().to_vec::<f32>().unwrap();
                let diff = max_diff(&together[i * vocab..(i + 1) * vocab], &alone);
                assert!(diff < 1e-5, "slots {slots:?} row {i}: {diff}");
                assert_eq!(cache.len(slots[i]), p.len() + 1);
                let len = p.len() + 1;
                let written = cache.view(1, 4, len).keys.narrow(0, slots[i], 1);
                let want = alone_cache.into_layers().swap_remove(1).keys; // [1, kv, len, d]
                let kd = max_diff(
                    &written.into_data().to_vec::<f32>().unwrap(),
                    &want.into_data().to_vec::<f32>().unwrap(),
                );
                assert!(kd < 1e-5, "slots {slots:?} row {i} keys: {kd}");
            }
            // The idle slot 1 in the second layout stays empty.
            if slots[0] == 3 {
                assert_eq!(cache.len(1), 0);
            }
        }
    }
}
