//! FLUX's linear layers are the chat models' [`Projection`]: a frozen base weight with
//! room for a LoRA adapter beside it, so the next step (LoRA training on images) adapts
//! the very modules this crate loads.

use anneal_model::llm::projection::Projection;
use burn::prelude::*;

/// A linear layer of the FLUX transformer.
pub type Linear2<B> = Projection<B>;

/// `x`: `[batch, in]` to `[batch, out]` (one row per image: the conditioning vector).
pub fn project<B: Backend>(layer: &Linear2<B>, x: Tensor<B, 2>) -> Tensor<B, 2> {
    layer.forward(x.unsqueeze_dim::<3>(1)).squeeze_dim::<2>(1)
}
