//! The VAE's building blocks: convolutions, group norms, ResNet blocks and the
//! single-head spatial attention of its middle block, as diffusers computes them.
//! Group norms run in f32, everything else in the weights' compute dtype.

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::activation::silu;
use burn::tensor::module::conv2d;
use burn::tensor::ops::{ConvOptions, PadMode};

use anneal_model::llm::precision::in_f32;

use crate::blocked_attention::attend_in_blocks;

/// A 2-D convolution with bias; `stride` 2 pads only the bottom and right edge by one
/// (diffusers' `Downsample2D` with `padding=0`).
#[derive(Module, Debug)]
pub struct Conv<B: Backend> {
    /// `[out, in, k, k]`, as stored.
    pub weight: Param<Tensor<B, 4>>,
    pub bias: Param<Tensor<B, 1>>,
    pub stride: usize,
}

impl<B: Backend> Conv<B> {
    /// `x`: `[batch, in, h, w]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let kernel = self.weight.dims()[2];
        let (x, padding) = if self.stride == 2 {
            (x.pad((0, 1, 0, 1), PadMode::Constant(0.0)), 0)
        } else {
            (x, kernel / 2)
        };
        let options = ConvOptions::new([self.stride; 2], [padding; 2], [1, 1], 1);
        conv2d(x, self.weight.val(), Some(self.bias.val()), options)
    }
}

/// GroupNorm with weight and bias (eps 1e-6), in f32.
#[derive(Module, Debug)]
pub struct GroupNorm<B: Backend> {
    pub gamma: Param<Tensor<B, 1>>,
    pub beta: Param<Tensor<B, 1>>,
    pub groups: usize,
}

impl<B: Backend> GroupNorm<B> {
    /// `x`: `[batch, channels, h, w]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [batch, channels, h, w] = x.dims();
        let groups = self.groups;
        in_f32(x, |x| {
            let grouped = x.reshape([batch, groups, (channels / groups) * h * w]);
            let (var, mean) = grouped.clone().var_mean_bias(2);
            let normed = ((grouped - mean) / (var + 1e-6).sqrt()).reshape([batch, channels, h, w]);
            normed * self.gamma.val().reshape([1, channels, 1, 1])
                + self.beta.val().reshape([1, channels, 1, 1])
        })
    }
}

/// `conv2(silu(norm2(conv1(silu(norm1(x)))))) + shortcut(x)`.
#[derive(Module, Debug)]
pub struct ResnetBlock<B: Backend> {
    pub norm1: GroupNorm<B>,
    pub conv1: Conv<B>,
    pub norm2: GroupNorm<B>,
    pub conv2: Conv<B>,
    /// A 1x1 convolution where the block changes the channel count.
    pub conv_shortcut: Option<Conv<B>>,
}

impl<B: Backend> ResnetBlock<B> {
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let h = self.conv1.forward(silu(self.norm1.forward(x.clone())));
        let h = self.conv2.forward(silu(self.norm2.forward(h)));
        let shortcut = match &self.conv_shortcut {
            Some(conv) => conv.forward(x),
            None => x,
        };
        shortcut + h
    }
}

/// A linear layer over channels: `[.., in]` to `[.., out]`.
#[derive(Module, Debug)]
pub struct ChannelLinear<B: Backend> {
    /// `[in, out]` (a transposed view of the stored `[out, in]`).
    pub weight: Param<Tensor<B, 2>>,
    pub bias: Param<Tensor<B, 1>>,
}

impl<B: Backend> ChannelLinear<B> {
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let out = self.bias.dims()[0];
        x.matmul(self.weight.val().unsqueeze_dim(0)) + self.bias.val().reshape([1, 1, out])
    }
}

/// Single-head self-attention over the pixels of a latent image, with a group norm
/// in front and the input added back (the middle block's `Attention`).
#[derive(Module, Debug)]
pub struct SpatialAttention<B: Backend> {
    pub group_norm: GroupNorm<B>,
    pub to_q: ChannelLinear<B>,
    pub to_k: ChannelLinear<B>,
    pub to_v: ChannelLinear<B>,
    pub to_out: ChannelLinear<B>,
}

impl<B: Backend> SpatialAttention<B> {
    /// `x`: `[batch, channels, h, w]`. The scores are `[h·w, h·w]` per image: 1 GiB in
    /// f32 for a 1024x1024 image's 128x128 latents, so they are computed in blocks of
    /// rows of at most 64 MiB.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [batch, channels, h, w] = x.dims();
        let tokens = self
            .group_norm
            .forward(x.clone())
            .reshape([batch, channels, h * w])
            .swap_dims(1, 2); // [b, hw, c]
        let scale = 1.0 / (channels as f64).sqrt();
        // One head: [b, 1, hw, c].
        let q = (self.to_q.forward(tokens.clone()) * scale).unsqueeze_dim::<4>(1);
        let k_t = self
            .to_k
            .forward(tokens.clone())
            .swap_dims(1, 2)
            .unsqueeze_dim::<4>(1); // [b, 1, c, hw]
        let v = self.to_v.forward(tokens).unsqueeze_dim::<4>(1);
        let attended = attend_in_blocks(q, k_t, v, 64 << 20).squeeze_dim::<3>(1); // [b, hw, c]
        let out = self.to_out.forward(attended); // [b, hw, c]
        out.swap_dims(1, 2).reshape([batch, channels, h, w]) + x
    }
}

/// Nearest-neighbour 2x upsampling: each pixel becomes a 2x2 square.
pub fn upsample_nearest<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [batch, channels, h, w] = x.dims();
    x.reshape([batch, channels, h, 1, w, 1])
        .expand([batch, channels, h, 2, w, 2])
        .reshape([batch, channels, 2 * h, 2 * w])
}
