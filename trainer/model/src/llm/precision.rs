//! Mixed precision: where a tensor changes dtype on its way through the model.
//!
//! Activations flow between layers in the model's compute dtype (`CausalLm::compute`,
//! bf16 on CUDA, f32 on the CPU; see `backend::compute_dtype`). A frozen projection's
//! weight may be in another dtype (the checkpoint's bf16 or f16): its input is cast
//! to the weight's dtype for the product and the product back. LoRA's A and B, their
//! gradients and AdamW's moments are f32; the adapter's path runs in f32 and its
//! output is cast back. RMSNorm, RoPE, attention's softmax and the loss compute in
//! f32 and cast back (cast in, cast out).
//!
//! A cast to the dtype a tensor already has is skipped, not recorded: on the f32
//! path the model runs exactly the operations it ran before dtypes mattered, so its
//! results are the same to the bit.

use burn::nn::RmsNorm;
use burn::prelude::*;
use burn::tensor::DType;

/// `x` in `dtype`; `x` itself when it already is.
pub fn cast<B: Backend, const D: usize>(x: Tensor<B, D>, dtype: DType) -> Tensor<B, D> {
    if x.dtype() == dtype { x } else { x.cast(dtype) }
}

/// `f` computed in f32, its result back in `x`'s dtype.
pub fn in_f32<B: Backend, const D: usize, const E: usize>(
    x: Tensor<B, D>,
    f: impl FnOnce(Tensor<B, D>) -> Tensor<B, E>,
) -> Tensor<B, E> {
    let dtype = x.dtype();
    cast(f(cast(x, DType::F32)), dtype)
}

/// RMSNorm in f32 (its weight is loaded in f32), in and out in `x`'s dtype:
/// burn's `RmsNorm` would divide and scale in `x`'s dtype.
pub fn rms_norm<B: Backend, const D: usize>(norm: &RmsNorm<B>, x: Tensor<B, D>) -> Tensor<B, D> {
    in_f32(x, |x| norm.forward(x))
}
