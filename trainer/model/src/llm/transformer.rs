//! The decoder: embeddings, a stack of pre-norm attention + MLP blocks, a final
//! norm, and the language-model head (tied to the embeddings or not).

use burn::module::Param;
use burn::nn::{Embedding, RmsNorm};
use burn::prelude::*;
use burn::tensor::DType;

use super::attention::{Attention, LayerCache};
use super::mlp::Mlp;
use super::packing::{AttentionTables, Layout};
use super::precision::{cast, rms_norm};
use super::rope::{Rope, RopeTables};

#[derive(Module, Debug)]
pub struct DecoderLayer<B: Backend> {
    pub self_attn: Attention<B>,
    pub mlp: Mlp<B>,
    pub input_layernorm: RmsNorm<B>,
    pub post_attention_layernorm: RmsNorm<B>,
}

impl<B: Backend> DecoderLayer<B> {
    /// The device the layer's weights are on (see [`super::placement`]).
    pub fn device(&self) -> B::Device {
        self.input_layernorm.gamma.device()
    }

    /// `x` `[batch, seq, hidden]` after what `cache` holds.
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        rope: &RopeTables<B>,
        attention: &AttentionTables<B>,
        cache: Option<LayerCache<B>>,
    ) -> (Tensor<B, 3>, LayerCache<B>) {
        let (attended, cache) = self.self_attn.forward(
            rms_norm(&self.input_layernorm, x.clone()),
            rope,
            attention,
            cache,
        );
        let x = x + attended;
        let x = x.clone()
            + self
                .mlp
                .forward(rms_norm(&self.post_attention_layernorm, x));
        (x, cache)
    }
}

/// A Qwen2 or Llama causal language model.
#[derive(Module, Debug)]
pub struct CausalLm<B: Backend> {
    pub embed_tokens: Embedding<B>,
    pub layers: Vec<DecoderLayer<B>>,
    pub norm: RmsNorm<B>,
    /// `[hidden, vocab]`; `None` when the head is tied to the embeddings.
    pub lm_head: Option<Param<Tensor<B, 2>>>,
    #[module(skip)]
    pub rope: Rope,
    /// The dtype activations flow between layers in (and the KV cache is kept in):
    /// see `backend::compute_dtype` and [`super::precision`].
    #[module(skip)]
    pub compute: DType,
    /// With the layers placed on several devices ([`super::placement`]), the first
    /// layer of each device after the first: where the hidden states move. Empty on
    /// one device.
    #[module(skip)]
    pub stage_starts: Vec<usize>,
}

/// The per-layer keys and values of one `forward_hidden` pass: a prompt's, which
/// generation then moves into its slot of a [`KvSlots`](super::KvSlots).
#[derive(Clone, Debug)]
pub struct KvCache<B: Backend> {
    layers: Vec<LayerCache<B>>,
}

impl<B: Backend> KvCache<B> {
    /// Positions cached so far.
    pub fn len(&self) -> usize {
        self.layers.first().map_or(0, |l| l.keys.dims()[2])
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Each layer's keys and values, `[batch, kv_heads, seq, head_dim]`.
    pub fn into_layers(self) -> Vec<LayerCache<B>> {
        self.layers
    }
}

impl<B: Backend> CausalLm<B> {
    /// Hidden states after the final norm, `[batch, seq, hidden]`, for `ids` placed after
    /// what `cache` holds; returns the extended cache.
    pub fn forward_hidden(
        &self,
        ids: Tensor<B, 2, Int>,
        cache: Option<KvCache<B>>,
    ) -> (Tensor<B, 3>, KvCache<B>) {
        self.forward_laid_out(ids, cache, Layout::OneSequencePerRow)
    }

    /// Hidden states after the final norm, `[batch, seq, hidden]`, for `ids` laid out
    /// as `layout` says (for packed rows, without a cache); returns the extended cache.
    pub fn forward_laid_out(
        &self,
        ids: Tensor<B, 2, Int>,
        cache: Option<KvCache<B>>,
        layout: Layout<'_>,
    ) -> (Tensor<B, 3>, KvCache<B>) {
        let [_, seq] = ids.dims();
        let start = cache.as_ref().map_or(0, KvCache::len);
        // The rotation tables and the causal mask are the same for every layer: built once.
        let (mut rope, mut attention) = layout.tables::<B>(&self.rope, seq, start, &ids.device());
        let mut x = self.embed(ids);
        let mut old = cache.map(|c| c.layers.into_iter().map(Some).collect::<Vec<_>>());
        let mut layers = Vec::with_capacity(self.layers.len());
        for (i, layer) in self.layers.iter().enumerate() {
            if self.starts_stage(i) {
                // The next device's layers: the hidden states and the tables move there.
                let device = layer.device();
                x = x.to_device(&device);
                (rope, attention) = layout.tables::<B>(&self.rope, seq, start, &device);
            }
            let layer_cache = old.as_mut().and_then(|caches| caches[i].take());
            let (next, cache) = layer.forward(x, &rope, &attention, layer_cache);
            x = next;
            layers.push(cache);
        }
        (self.final_norm(x), KvCache { layers })
    }

    /// Whether decoder layer `layer` is the first on a device other than the first.
    pub fn starts_stage(&self, layer: usize) -> bool {
        self.stage_starts.contains(&layer)
    }

    /// Whether the layers are placed on more than one device.
    pub fn is_placed(&self) -> bool {
        !self.stage_starts.is_empty()
    }

    /// The language-model head as `[hidden, vocab]`: its own weight, or the embeddings'
    /// transpose when tied (a view: no copy, and its gradient goes to the embeddings).
    pub fn head(&self) -> Tensor<B, 2> {
        match &self.lm_head {
            Some(head) => head.val(),
            None => self.embed_tokens.weight.val().transpose(),
        }
    }

    /// The embeddings of `ids` `[batch, seq]` in the compute dtype: `[batch, seq, hidden]`.
    pub fn embed(&self, ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        cast(self.embed_tokens.forward(ids), self.compute)
    }

    /// The final norm (in f32, like every norm), its output in the compute dtype, of
    /// the last layer's output `x`; with placed layers, moved back to the first device
    /// (where the norm, the head and the batch's labels are) first.
    pub fn final_norm(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let x = match self.is_placed() {
            true => x.to_device(&self.embed_tokens.weight.device()),
            false => x,
        };
        rms_norm(&self.norm, x)
    }

    /// Logits `[batch, seq, vocab]` in f32 from hidden states: the product in the
    /// head's dtype, the logits widened for the softmax and sampling that follow.
    pub fn logits(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        let head = self.head(); // [hidden, vocab]
        let hidden = cast(hidden, head.dtype());
        cast(hidden.matmul(head.unsqueeze()), DType::F32)
    }

    /// Logits for every position of `ids` (no cache): `[batch, seq, vocab]`.
    pub fn forward(&self, ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let (hidden, _) = self.forward_hidden(ids, None);
        self.logits(hidden)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use burn::tensor::DType;

    use super::*;
    use crate::backend::CpuBackend;
    use crate::llm::load_model;

    /// Attention runs in blocks of query rows (see `attention::query_blocks`); how a
    /// sequence is split must not change any position's logits. The same 150 positions
    /// in one pass (blocks at 0, 64, 128) and in two passes with the cache (50, then 100
    /// as blocks at 50 and 114) must agree, and so must a prefix alone (later tokens are
    /// never seen).
    #[test]
    fn logits_do_not_depend_on_the_block_split_or_later_tokens() {
        let dir =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/reference/qwen2-tiny");
        let device = Default::default();
        let (config, model) = load_model::<CpuBackend>(&dir, &device, DType::F32).unwrap();
        let ids: Vec<i64> = (0..150)
            .map(|i| (i * 37 % config.vocab_size) as i64)
            .collect();
        let input = |range: std::ops::Range<usize>| {
            let n = range.len();
            Tensor::<CpuBackend, 1, Int>::from_data(
                TensorData::new(ids[range].to_vec(), [n]),
                &device,
            )
            .reshape([1, n])
        };
        let values = |t: Tensor<CpuBackend, 3>| t.into_data().to_vec::<f32>().unwrap();
        let whole = values(model.forward(input(0..150)));
        let (first, cache) = model.forward_hidden(input(0..50), None);
        let (rest, _) = model.forward_hidden(input(50..150), Some(cache));
        let mut in_two = values(model.logits(first));
        in_two.extend(values(model.logits(rest)));
        let prefix = values(model.forward(input(0..100)));
        let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5);
        assert_eq!(whole.len(), in_two.len());
        assert!(close(&whole, &in_two), "one pass and two passes differ");
        assert!(close(&whole[..prefix.len()], &prefix), "a prefix differs");
    }
}
