//! A linear projection of the base model with room for a LoRA adapter beside it:
//! `y = x·W (+ b) + s·(dropout(x)·A)·B`. The base weight stays as loaded; the
//! adapter is the only thing LoRA training changes. The base product runs in the
//! weight's dtype (bf16 on CUDA), the adapter in f32 (see [`super::precision`]).

use burn::module::Param;
use burn::nn::{Dropout, Linear};
use burn::prelude::*;
use burn::tensor::module::linear;
use burn::tensor::{DType, Distribution};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::precision::cast;
use crate::backend::on_cpu_backend;

#[derive(Module, Debug)]
pub struct Projection<B: Backend> {
    /// The checkpoint's weight `[in, out]` (a transposed view of its `[out, in]`) and
    /// bias, in the dtype they were loaded in.
    pub base: Linear<B>,
    pub lora: Option<LoraAdapter<B>>,
}

/// The low-rank update of one projection.
#[derive(Module, Debug)]
pub struct LoraAdapter<B: Backend> {
    /// `[in, rank]`, f32; PEFT stores its transpose as `lora_A.weight`.
    pub a: Param<Tensor<B, 2>>,
    /// `[rank, out]`, f32; PEFT stores its transpose as `lora_B.weight`.
    pub b: Param<Tensor<B, 2>>,
    /// `alpha / rank`, or `alpha / sqrt(rank)` with rsLoRA.
    pub scale: f64,
    pub dropout: Dropout,
}

impl<B: Backend> Projection<B> {
    pub fn new(base: Linear<B>) -> Self {
        Self { base, lora: None }
    }

    /// `x`: `[batch, seq, in]` to `[batch, seq, out]`, in `x`'s dtype.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        // As one [batch * seq, in] matrix: one matrix product per weight instead of one
        // per batch row, and the adapter's gradients need no sum over the batch.
        let [batch, seq, input] = x.dims();
        let dtype = x.dtype();
        let x = x.reshape([batch * seq, input]);
        let base = |x: Tensor<B, 2>| {
            let weight = self.base.weight.val().dtype();
            if widened_at_use::<B>(weight, dtype) {
                // Held half, computed in f32 (`LayerStorage::Stored`): a widened copy
                // for this product alone (its backward keeps it until then).
                let widen = |t: Tensor<B, 2>| cast(t, dtype);
                let bias = self.base.bias.as_ref().map(|b| cast(b.val(), dtype));
                return linear(x, widen(self.base.weight.val()), bias); // [tokens, out]
            }
            // The product in the weight's dtype: the weight is never copied to another
            // dtype, and backward keeps the weight it already holds.
            cast(self.base.forward(cast(x, weight)), dtype) // [tokens, out]
        };
        let y = match &self.lora {
            None => base(x),
            Some(lora) => {
                // In f32, where the adapter's weights and gradients are.
                let update = cast(lora.forward(cast(x.clone(), DType::F32)), dtype); // [tokens, out]
                base(x) + update
            }
        };
        let output = y.dims()[1];
        y.reshape([batch, seq, output])
    }
}

/// Whether a base weight held in `weight` is widened for each product with inputs of
/// `compute`: a half weight with f32 inputs on the CPU, whose half products would
/// widen both operands to f32 on every call anyway and round the result to half.
fn widened_at_use<B: Backend>(weight: DType, compute: DType) -> bool {
    matches!(weight, DType::BF16 | DType::F16) && compute == DType::F32 && on_cpu_backend::<B>()
}

impl<B: Backend> LoraAdapter<B> {
    /// `x`: `[tokens, in]` to `[tokens, out]`, in the adapter's dtype (f32).
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        // Rank-first order keeps the cost at r·(in + out) per token instead of in·out, and
        // the scale goes on the rank-sized product, the smallest tensor on the way.
        let down = dropout(&self.dropout, x).matmul(self.a.val()) * self.scale; // [tokens, r]
        down.matmul(self.b.val()) // [tokens, out]
    }
}

/// The adapter's input dropout. Burn's `Dropout` draws its keep mask one element at a
/// time through a ChaCha generator and a per-element Bernoulli sampler; on the CPU
/// backend that costs more than the rest of the adapter. There the mask is drawn on the
/// host with a small fast generator instead, seeded from the backend's generator so a
/// run seeded with `Backend::seed` still repeats. Other backends (CUDA draws on the
/// device) keep burn's.
fn dropout<B: Backend>(dropout: &Dropout, x: Tensor<B, 2>) -> Tensor<B, 2> {
    let device = x.device();
    if dropout.prob == 0.0 || !B::ad_enabled(&device) {
        return x;
    }
    // With gradients on (checked above), the Flex device means `Autodiff<Flex>`.
    if !on_cpu_backend::<B>() {
        return dropout.forward(x);
    }
    // 64 bits of seed as four 16-bit draws: the backend's int type may be 32 bits.
    let seed = Tensor::<B, 1, Int>::random([4], Distribution::Uniform(0.0, 65536.0), &device)
        .into_data()
        .convert::<i64>()
        .to_vec::<i64>()
        .expect("i64 data")
        .into_iter()
        .fold(0u64, |seed, part| (seed << 16) | part as u64);
    let [rows, cols] = x.dims();
    let mask = keep_mask(seed, rows * cols, 1.0 - dropout.prob);
    x * Tensor::from_data(TensorData::new(mask, [rows, cols]), &device)
}

/// `len` dropout multipliers drawn from `seed`: 0 with probability `1 - keep`, else
/// `1 / keep`, so the expected output is the input (as burn and PyTorch scale it).
fn keep_mask(seed: u64, len: usize, keep: f64) -> Vec<f32> {
    let mut rng = SmallRng::seed_from_u64(seed);
    // Kept when a uniform u32 falls below keep·2^32; one 64-bit draw serves two elements.
    let threshold = (keep * 4_294_967_296.0) as u64;
    let kept = (1.0 / keep) as f32;
    let pick = |bits: u64| if bits < threshold { kept } else { 0.0 };
    let mut mask = vec![0f32; len];
    for pair in mask.chunks_mut(2) {
        let bits = rng.next_u64();
        pair[0] = pick(bits & 0xFFFF_FFFF);
        if let Some(second) = pair.get_mut(1) {
            *second = pick(bits >> 32);
        }
    }
    mask
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::CpuBackend;

    #[test]
    fn the_mask_drops_its_share_scales_the_rest_and_repeats_with_its_seed() {
        let mask = keep_mask(7, 100_000, 0.75);
        let dropped = mask.iter().filter(|v| **v == 0.0).count() as f64 / mask.len() as f64;
        assert!((dropped - 0.25).abs() < 0.01, "dropped {dropped}");
        assert!(mask.iter().all(|v| *v == 0.0 || *v == 1.0 / 0.75));
        assert_eq!(mask, keep_mask(7, 100_000, 0.75));
        assert_ne!(mask, keep_mask(8, 100_000, 0.75));
        assert!(keep_mask(7, 1000, 1.0).iter().all(|v| *v == 1.0));
    }

    #[test]
    fn dropout_is_off_without_gradients() {
        let x = Tensor::<CpuBackend, 2>::ones([4, 4], &Default::default());
        let out = dropout(&Dropout { prob: 0.5 }, x);
        assert_eq!(out.into_data().to_vec::<f32>().unwrap(), vec![1.0; 16]);
    }
}
