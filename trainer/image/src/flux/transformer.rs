//! The FLUX transformer: packed image latents and T5 token states in, the predicted
//! flow (velocity) of the image latents out.

use burn::prelude::*;
use burn::tensor::DType;

use anneal_model::llm::precision::cast;

use super::blocks::{DoubleStreamBlock, OutputHead, SingleStreamBlock};
use super::embed::TimeTextEmbed;
use super::linear::Linear2;
use super::rope::{RopeTables, position_ids};

#[derive(Module, Debug)]
pub struct FluxTransformer<B: Backend> {
    /// `x_embedder`: packed latent channels to the model width.
    pub x_embedder: Linear2<B>,
    /// `context_embedder`: T5 width to the model width.
    pub context_embedder: Linear2<B>,
    pub time_text_embed: TimeTextEmbed<B>,
    pub double_blocks: Vec<DoubleStreamBlock<B>>,
    pub single_blocks: Vec<SingleStreamBlock<B>>,
    pub head: OutputHead<B>,
    /// Rotary dimensions per position axis.
    pub axes: Vec<usize>,
    /// The dtype activations flow in (f32 on the CPU, bf16 on CUDA).
    pub compute: DType,
}

/// One denoising step's inputs beside the latents.
pub struct Conditioning<'a, B: Backend> {
    /// T5 token states `[batch, text_tokens, joint_attention_dim]`.
    pub context: Tensor<B, 3>,
    /// CLIP pooled embedding `[batch, pooled_projection_dim]`.
    pub pooled: Tensor<B, 2>,
    /// The sampler's sigma per image, in [0, 1].
    pub timestep: &'a [f32],
    /// FLUX.1-dev's guidance scale per image; ignored by a model without the embedding.
    pub guidance: Option<&'a [f32]>,
}

/// What the blocks start from: the image and text tokens in the model's width, the
/// conditioning vector every block modulates with, and the rotary tables.
pub struct BlockInputs<B: Backend> {
    /// `[batch, image_tokens, dim]`
    pub image: Tensor<B, 3>,
    /// `[batch, text_tokens, dim]`
    pub text: Tensor<B, 3>,
    /// `[batch, dim]`: timestep, guidance and pooled text.
    pub temb: Tensor<B, 2>,
    /// Covers the text tokens, then the image tokens.
    pub rope: RopeTables<B>,
}

impl<B: Backend> FluxTransformer<B> {
    /// `latents`: packed `[batch, rows · columns, in_channels]` on a `rows` x `columns`
    /// grid. Returns the velocity, same shape, in f32.
    pub fn forward(
        &self,
        latents: Tensor<B, 3>,
        grid: (usize, usize),
        cond: &Conditioning<'_, B>,
    ) -> Tensor<B, 3> {
        let BlockInputs {
            image,
            text,
            temb,
            rope,
        } = self.block_inputs(latents, grid, cond);
        let [_, text_len, _] = text.dims();
        let (mut text, mut image) = (text, image);
        for block in &self.double_blocks {
            (text, image) = block.forward(image, text, &temb, &rope);
        }
        let mut joined = Tensor::cat(vec![text, image], 1); // [b, t + n, dim]
        for block in &self.single_blocks {
            joined = block.forward(joined, &temb, &rope);
        }
        self.velocity(joined, text_len, &temb)
    }

    /// The latents and the conditioning embedded for the blocks.
    pub fn block_inputs(
        &self,
        latents: Tensor<B, 3>,
        grid: (usize, usize),
        cond: &Conditioning<'_, B>,
    ) -> BlockInputs<B> {
        let device = latents.device();
        let [_, text_len, _] = cond.context.dims();
        let image = self.x_embedder.forward(cast(latents, self.compute)); // [b, n, dim]
        let temb = self.time_text_embed.forward(
            cond.timestep,
            cond.guidance,
            cond.pooled.clone(),
            self.compute,
        ); // [b, dim]
        let text = self
            .context_embedder
            .forward(cast(cond.context.clone(), self.compute)); // [b, t, dim]
        let rope = RopeTables::new(&position_ids(text_len, grid.0, grid.1), &self.axes, &device);
        BlockInputs {
            image,
            text,
            temb,
            rope,
        }
    }

    /// The velocity, `[batch, image_tokens, out_channels]` f32, from the last single
    /// block's joined output `[batch, text_len + image_tokens, dim]`.
    pub fn velocity(
        &self,
        joined: Tensor<B, 3>,
        text_len: usize,
        temb: &Tensor<B, 2>,
    ) -> Tensor<B, 3> {
        let [_, tokens, _] = joined.dims();
        let image = joined.narrow(1, text_len, tokens - text_len);
        cast(self.head.forward(image, temb), DType::F32)
    }
}
