//! What both text encoders share: embedding lookup, LayerNorm with weights, and
//! multi-head attention with an additive score bias (CLIP's causal mask, T5's
//! relative position bias).

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::DType;

use anneal_model::llm::precision::{cast, in_f32};
use anneal_model::llm::projection::Projection;
use anneal_model::llm::softmax::row_softmax;

/// Rows of `table` `[vocab, dim]` for `ids` `[batch][seq]`: `[batch, seq, dim]`.
pub fn embed<B: Backend>(table: &Tensor<B, 2>, ids: &[Vec<u32>]) -> Tensor<B, 3> {
    let (batch, seq) = (ids.len(), ids.first().map_or(0, Vec::len));
    let flat: Vec<i64> = ids.iter().flatten().map(|&id| i64::from(id)).collect();
    let index =
        Tensor::<B, 1, Int>::from_data(TensorData::new(flat, [batch * seq]), &table.device());
    let dim = table.dims()[1];
    table.clone().select(0, index).reshape([batch, seq, dim])
}

/// LayerNorm with weight and bias, in f32.
#[derive(Module, Debug)]
pub struct LayerNorm<B: Backend> {
    pub gamma: Param<Tensor<B, 1>>,
    pub beta: Param<Tensor<B, 1>>,
    pub epsilon: f64,
}

impl<B: Backend> LayerNorm<B> {
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let dim = x.dims()[2];
        in_f32(x, |x| {
            let (var, mean) = x.clone().var_mean_bias(2);
            (x - mean) / (var + self.epsilon).sqrt() * self.gamma.val().reshape([1, 1, dim])
                + self.beta.val().reshape([1, 1, dim])
        })
    }
}

/// Multi-head self-attention `o(softmax(scale·q·kᵀ + bias)·v)`.
#[derive(Module, Debug)]
pub struct SelfAttention<B: Backend> {
    pub q: Projection<B>,
    pub k: Projection<B>,
    pub v: Projection<B>,
    pub o: Projection<B>,
    pub heads: usize,
    pub head_dim: usize,
    /// CLIP scales by `1/sqrt(head_dim)`; T5 folds the scale into its weights (1).
    pub scale: f64,
}

impl<B: Backend> SelfAttention<B> {
    /// `x`: `[batch, seq, dim]`; `bias`: `[1 or batch, heads or 1, seq, seq]` in f32.
    pub fn forward(&self, x: Tensor<B, 3>, bias: &Tensor<B, 4>) -> Tensor<B, 3> {
        let [batch, seq, _] = x.dims();
        let (h, d) = (self.heads, self.head_dim);
        let split = |t: Tensor<B, 3>| t.reshape([batch, seq, h, d]).swap_dims(1, 2); // [b, h, s, d]
        let q = split(self.q.forward(x.clone())) * self.scale;
        let k = split(self.k.forward(x.clone()));
        let v = split(self.v.forward(x));
        let dtype = v.dtype();
        let scores = cast(q.matmul(k.swap_dims(2, 3)), DType::F32) + bias.clone(); // [b, h, s, s]
        let weights = cast(row_softmax(scores.reshape([batch * h * seq, seq])), dtype);
        let out = weights.reshape([batch, h, seq, seq]).matmul(v); // [b, h, s, d]
        self.o
            .forward(out.swap_dims(1, 2).reshape([batch, seq, h * d]))
    }
}
