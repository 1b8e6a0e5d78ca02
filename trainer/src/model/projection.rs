//! A linear projection of the base model with room for a LoRA adapter beside it:
//! `y = x·W (+ b) + s·(dropout(x)·A)·B`. The base weight stays as loaded; the
//! adapter is the only thing LoRA training changes.

use burn::module::Param;
use burn::nn::{Dropout, Linear};
use burn::prelude::*;

#[derive(Module, Debug)]
pub struct Projection<B: Backend> {
    /// The checkpoint's weight `[in, out]` and bias.
    pub base: Linear<B>,
    pub lora: Option<LoraAdapter<B>>,
}

/// The low-rank update of one projection.
#[derive(Module, Debug)]
pub struct LoraAdapter<B: Backend> {
    /// `[in, rank]`; PEFT stores its transpose as `lora_A.weight`.
    pub a: Param<Tensor<B, 2>>,
    /// `[rank, out]`; PEFT stores its transpose as `lora_B.weight`.
    pub b: Param<Tensor<B, 2>>,
    /// `alpha / rank`, or `alpha / sqrt(rank)` with rsLoRA.
    pub scale: f64,
    pub dropout: Dropout,
}

impl<B: Backend> Projection<B> {
    pub fn new(base: Linear<B>) -> Self {
        Self { base, lora: None }
    }

    /// `x`: `[batch, seq, in]` to `[batch, seq, out]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        match &self.lora {
            None => self.base.forward(x),
            Some(lora) => self.base.forward(x.clone()) + lora.forward(x),
        }
    }
}

impl<B: Backend> LoraAdapter<B> {
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        // Rank-first order keeps the cost at r·(in + out) per token instead of in·out.
        let down = self.dropout.forward(x).matmul(self.a.val().unsqueeze()); // [b, s, r]
        down.matmul(self.b.val().unsqueeze()) * self.scale // [b, s, out]
    }
}
