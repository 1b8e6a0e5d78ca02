//! FLUX's rotary position embedding over three axes. Each token has a position id
//! `(t, row, column)`: text tokens are all `(0, 0, 0)`, image token `(0, r, c)` sits
//! at its row and column of the packed latent grid. The head dimension is split per
//! axis (16 + 56 + 56 for FLUX.1) and each part rotates by its own axis' position, in
//! interleaved pairs `(x[2i], x[2i+1])`, as diffusers' `FluxPosEmbed` and
//! `apply_rotary_emb(use_real_unbind_dim=-1)` do.

use burn::prelude::*;
use burn::tensor::DType;

use anneal_model::llm::precision::cast;

/// Rotary base of every axis.
const THETA: f64 = 10_000.0;

/// `cos` and `sin` for every token and head dimension: `[1, seq, 1, head_dim]`, f32,
/// each value repeated for the two elements of its pair.
#[derive(Clone, Debug)]
pub struct RopeTables<B: Backend> {
    pub cos: Tensor<B, 4>,
    pub sin: Tensor<B, 4>,
}

impl<B: Backend> RopeTables<B> {
    /// Tables for the position ids `ids` (`[seq][3]`), computed on the host in f64 and
    /// stored in f32 as diffusers does.
    pub fn new(ids: &[[f32; 3]], axes: &[usize], device: &B::Device) -> Self {
        let dim: usize = axes.iter().sum();
        let mut cos = Vec::with_capacity(ids.len() * dim);
        let mut sin = Vec::with_capacity(ids.len() * dim);
        for id in ids {
            for (axis, &size) in axes.iter().enumerate() {
                let position = f64::from(id[axis]);
                for i in (0..size).step_by(2) {
                    let frequency = 1.0 / THETA.powf(i as f64 / size as f64);
                    let angle = position * frequency;
                    let (c, s) = (angle.cos() as f32, angle.sin() as f32);
                    cos.extend([c, c]);
                    sin.extend([s, s]);
                }
            }
        }
        let shape = [1, ids.len(), 1, dim];
        Self {
            cos: Tensor::from_data(TensorData::new(cos, shape), device),
            sin: Tensor::from_data(TensorData::new(sin, shape), device),
        }
    }

    /// `x`: `[batch, seq, heads, head_dim]`, rotated in f32 and returned in its dtype.
    pub fn apply(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let dtype = x.dtype();
        let x = cast(x, DType::F32);
        let [batch, seq, heads, dim] = x.dims();
        // Each pair (a, b) becomes (−b, a): the rotation by 90° that sin multiplies.
        let pairs = x.clone().reshape([batch, seq, heads, dim / 2, 2]);
        let first = pairs.clone().narrow(4, 0, 1);
        let second = pairs.narrow(4, 1, 1);
        let turned = Tensor::cat(vec![second.neg(), first], 4).reshape([batch, seq, heads, dim]);
        cast(x * self.cos.clone() + turned * self.sin.clone(), dtype)
    }
}

/// Position ids of a prompt's `text` tokens followed by a `rows` x `columns` grid of
/// packed image tokens (row-major), as FluxPipeline builds `txt_ids` and `img_ids`.
pub fn position_ids(text: usize, rows: usize, columns: usize) -> Vec<[f32; 3]> {
    let mut ids = vec![[0.0; 3]; text];
    for r in 0..rows {
        for c in 0..columns {
            ids.push([0.0, r as f32, c as f32]);
        }
    }
    ids
}
