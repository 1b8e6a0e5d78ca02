//! The decoder: embeddings, a stack of pre-norm attention + MLP blocks, a final
//! norm, and the language-model head (tied to the embeddings or not).

use burn::module::Param;
use burn::nn::{Embedding, RmsNorm};
use burn::prelude::*;

use super::attention::{Attention, LayerCache};
use super::mlp::Mlp;
use super::rope::Rope;

#[derive(Module, Debug)]
pub struct DecoderLayer<B: Backend> {
    pub self_attn: Attention<B>,
    pub mlp: Mlp<B>,
    pub input_layernorm: RmsNorm<B>,
    pub post_attention_layernorm: RmsNorm<B>,
}

impl<B: Backend> DecoderLayer<B> {
    fn forward(
        &self,
        x: Tensor<B, 3>,
        cos: &Tensor<B, 2>,
        sin: &Tensor<B, 2>,
        cache: Option<LayerCache<B>>,
    ) -> (Tensor<B, 3>, LayerCache<B>) {
        let (attended, cache) =
            self.self_attn
                .forward(self.input_layernorm.forward(x.clone()), cos, sin, cache);
        let x = x + attended;
        let x = x.clone() + self.mlp.forward(self.post_attention_layernorm.forward(x));
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
}

/// The per-layer caches of one generation.
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
}

impl<B: Backend> CausalLm<B> {
    /// Hidden states after the final norm, `[batch, seq, hidden]`, for `ids` placed after
    /// what `cache` holds; returns the extended cache.
    pub fn forward_hidden(
        &self,
        ids: Tensor<B, 2, Int>,
        cache: Option<KvCache<B>>,
    ) -> (Tensor<B, 3>, KvCache<B>) {
        let [_, seq] = ids.dims();
        let start = cache.as_ref().map_or(0, KvCache::len);
        let device = ids.device();
        let (cos, sin) = self.rope.tables::<B>(start, seq, &device);
        let mut x = self.embed_tokens.forward(ids);
        let mut old = cache.map(|c| c.layers.into_iter().map(Some).collect::<Vec<_>>());
        let mut layers = Vec::with_capacity(self.layers.len());
        for (i, layer) in self.layers.iter().enumerate() {
            let layer_cache = old.as_mut().and_then(|caches| caches[i].take());
            let (next, cache) = layer.forward(x, &cos, &sin, layer_cache);
            x = next;
            layers.push(cache);
        }
        (self.norm.forward(x), KvCache { layers })
    }

    /// Logits `[batch, seq, vocab]` from hidden states.
    pub fn logits(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        let head = match &self.lm_head {
            Some(head) => head.val(),
            None => self.embed_tokens.weight.val().transpose(), // [hidden, vocab]
        };
        hidden.matmul(head.unsqueeze())
    }

    /// Logits for every position of `ids` (no cache): `[batch, seq, vocab]`.
    pub fn forward(&self, ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let (hidden, _) = self.forward_hidden(ids, None);
        self.logits(hidden)
    }
}
