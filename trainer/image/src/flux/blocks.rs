//! FLUX's two kinds of transformer block. A double-stream block keeps text and image
//! tokens apart (own norms, projections and MLPs) and joins them only inside
//! attention; a single-stream block runs attention and its MLP side by side on the
//! joined sequence. Both modulate their norms with the conditioning vector
//! (adaLN-Zero: shift, scale and a gate on each residual branch).

use burn::prelude::*;
use burn::tensor::activation::{gelu_approximate, silu};

use anneal_model::llm::precision::in_f32;

use super::attention::{Qkv, QkvStream};
use super::linear::{Linear2, project};
use super::rope::RopeTables;

/// LayerNorm without weights (eps 1e-6), in f32.
pub fn layer_norm<B: Backend>(x: Tensor<B, 3>) -> Tensor<B, 3> {
    in_f32(x, |x| {
        let (var, mean) = x.clone().var_mean_bias(2);
        (x - mean) / (var + 1e-6).sqrt()
    })
}

/// `x·(1 + scale) + shift`, with `shift` and `scale` `[batch, dim]` broadcast over the
/// sequence.
fn modulate<B: Backend>(
    x: Tensor<B, 3>,
    shift: &Tensor<B, 2>,
    scale: &Tensor<B, 2>,
) -> Tensor<B, 3> {
    x * (scale.clone().unsqueeze_dim::<3>(1) + 1.0) + shift.clone().unsqueeze_dim::<3>(1)
}

/// `gate·x`, the gate `[batch, dim]` broadcast over the sequence.
fn gated<B: Backend>(gate: &Tensor<B, 2>, x: Tensor<B, 3>) -> Tensor<B, 3> {
    x * gate.clone().unsqueeze_dim::<3>(1)
}

/// The `parts` modulation vectors `[batch, dim]` of an adaLN layer: `linear(silu(temb))`
/// split in order.
fn modulation<B: Backend>(
    linear: &Linear2<B>,
    temb: &Tensor<B, 2>,
    parts: usize,
) -> Vec<Tensor<B, 2>> {
    project(linear, silu(temb.clone())).chunk(parts, 1)
}

/// diffusers' `FeedForward(activation_fn="gelu-approximate")`: `net.2(gelu_tanh(net.0.proj(x)))`.
#[derive(Module, Debug)]
pub struct FeedForward<B: Backend> {
    pub up: Linear2<B>,
    pub down: Linear2<B>,
}

impl<B: Backend> FeedForward<B> {
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.down.forward(gelu_approximate(self.up.forward(x)))
    }
}

#[derive(Module, Debug)]
pub struct DoubleStreamBlock<B: Backend> {
    /// `norm1.linear`: the image stream's six modulation vectors.
    pub norm1: Linear2<B>,
    /// `norm1_context.linear`: the text stream's.
    pub norm1_context: Linear2<B>,
    /// `attn.to_q/k/v`, `attn.norm_q/k`.
    pub image_qkv: QkvStream<B>,
    /// `attn.add_q/k/v_proj`, `attn.norm_added_q/k`.
    pub text_qkv: QkvStream<B>,
    /// `attn.to_out.0`.
    pub to_out: Linear2<B>,
    /// `attn.to_add_out`.
    pub to_add_out: Linear2<B>,
    pub ff: FeedForward<B>,
    pub ff_context: FeedForward<B>,
    pub heads: usize,
}

impl<B: Backend> DoubleStreamBlock<B> {
    /// `image`: `[batch, image_tokens, dim]`, `text`: `[batch, text_tokens, dim]`,
    /// `temb`: `[batch, dim]`; `rope` covers text then image tokens. Returns the new
    /// `(text, image)`.
    pub fn forward(
        &self,
        image: Tensor<B, 3>,
        text: Tensor<B, 3>,
        temb: &Tensor<B, 2>,
        rope: &RopeTables<B>,
    ) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let [_, text_len, _] = text.dims();
        let [_, image_len, _] = image.dims();
        // shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp.
        let m = modulation(&self.norm1, temb, 6);
        let c = modulation(&self.norm1_context, temb, 6);

        let image_in = modulate(layer_norm(image.clone()), &m[0], &m[1]);
        let text_in = modulate(layer_norm(text.clone()), &c[0], &c[1]);
        let joined = Qkv::join(
            self.text_qkv.forward(text_in, self.heads),
            self.image_qkv.forward(image_in, self.heads),
        )
        .attend(rope); // [b, text + image, dim]
        let text_attn = self
            .to_add_out
            .forward(joined.clone().narrow(1, 0, text_len));
        let image_attn = self.to_out.forward(joined.narrow(1, text_len, image_len));

        let image = image + gated(&m[2], image_attn);
        let image_ff = self
            .ff
            .forward(modulate(layer_norm(image.clone()), &m[3], &m[4]));
        let image = image + gated(&m[5], image_ff);

        let text = text + gated(&c[2], text_attn);
        let text_ff = self
            .ff_context
            .forward(modulate(layer_norm(text.clone()), &c[3], &c[4]));
        let text = text + gated(&c[5], text_ff);
        (text, image)
    }
}

#[derive(Module, Debug)]
pub struct SingleStreamBlock<B: Backend> {
    /// `norm.linear`: shift, scale, gate.
    pub norm: Linear2<B>,
    /// `attn.to_q/k/v`, `attn.norm_q/k` (no output projection: `proj_out` mixes the
    /// attention and MLP outputs).
    pub qkv: QkvStream<B>,
    pub proj_mlp: Linear2<B>,
    pub proj_out: Linear2<B>,
    pub heads: usize,
}

impl<B: Backend> SingleStreamBlock<B> {
    /// `x`: the joined `[batch, text + image, dim]`.
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        temb: &Tensor<B, 2>,
        rope: &RopeTables<B>,
    ) -> Tensor<B, 3> {
        let m = modulation(&self.norm, temb, 3);
        let normed = modulate(layer_norm(x.clone()), &m[0], &m[1]);
        let mlp = gelu_approximate(self.proj_mlp.forward(normed.clone())); // [b, s, 4·dim]
        let attn = self.qkv.forward(normed, self.heads).attend(rope); // [b, s, dim]
        let mixed = self.proj_out.forward(Tensor::cat(vec![attn, mlp], 2));
        x + gated(&m[2], mixed)
    }
}

/// The final adaLN (`norm_out`, scale then shift) and projection to packed latents.
#[derive(Module, Debug)]
pub struct OutputHead<B: Backend> {
    pub norm_out: Linear2<B>,
    pub proj_out: Linear2<B>,
}

impl<B: Backend> OutputHead<B> {
    /// `image`: `[batch, tokens, dim]` to `[batch, tokens, out_channels]`.
    pub fn forward(&self, image: Tensor<B, 3>, temb: &Tensor<B, 2>) -> Tensor<B, 3> {
        let m = modulation(&self.norm_out, temb, 2);
        self.proj_out
            .forward(modulate(layer_norm(image), &m[1], &m[0]))
    }
}
