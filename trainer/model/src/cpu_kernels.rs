//! Fused elementwise kernels for the Flex CPU backend, where its own ops are slowest:
//! the exponentials of the attention softmax, the MLP's SwiGLU and the loss.
//!
//! Flex computes `exp` one element at a time through libm (3.5 ns each), and runs a
//! composite such as SwiGLU's backward as a chain of whole-tensor passes, each
//! allocating its result. At Qwen2.5-0.5B's shape a training step of 2,048 tokens
//! takes about two billion exponentials and a dozen passes over each layer's
//! `[tokens, ffn]` activations. Here each op is one pass over its inputs, split
//! across rayon's threads, with an exponential that the compiler vectorizes (pulp
//! compiles the loops for the widest instruction set the CPU has, as gemm does for
//! the matrix products).
//!
//! Every function takes and returns burn tensors: on Flex with f32 tensors it runs the
//! kernel, on every other backend or dtype burn's own ops, which give the same values
//! to within a few units in the last place.

use std::any::{Any, TypeId};

use burn::prelude::*;
use burn::tensor::activation::{sigmoid, silu, softmax};
use burn::tensor::{DType, TensorPrimitive};
use burn_flex::{Flex, FlexTensor};
use rayon::prelude::*;

/// Elements per rayon task: large enough that scheduling costs nothing, small enough
/// that two threads split a `[tokens, ffn]` tensor evenly.
const CHUNK: usize = 1 << 15;

/// `exp(x)` elementwise.
pub fn exp<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    match to_flex(x) {
        Ok(x) => {
            let x = contiguous(x);
            let x_values = slice(&x);
            let mut out = vec![0f32; x_values.len()];
            out.par_chunks_mut(CHUNK)
                .zip(x_values.par_chunks(CHUNK))
                .for_each(|(out, x)| Task::Exp { out, x }.run());
            from_flex(out, &x)
        }
        Err(x) => x.exp(),
    }
}

/// `silu(gate) · up`, elementwise.
pub fn swiglu<B: Backend, const D: usize>(gate: Tensor<B, D>, up: Tensor<B, D>) -> Tensor<B, D> {
    match (to_flex(gate), to_flex(up)) {
        (Ok(gate), Ok(up)) => {
            let (gate, up) = (contiguous(gate), contiguous(up));
            let (g, u) = (slice(&gate), slice(&up));
            let mut out = vec![0f32; g.len()];
            out.par_chunks_mut(CHUNK)
                .zip(g.par_chunks(CHUNK).zip(u.par_chunks(CHUNK)))
                .for_each(|(out, (g, u))| Task::SwiGlu { out, g, u }.run());
            from_flex(out, &gate)
        }
        (gate, up) => silu(from_either(gate)) * from_either(up),
    }
}

/// The gradients of `silu(gate) · up` for the output's gradient `grad`:
/// `(d_gate, d_up)`, with `s = σ(gate)`:
///
/// ```text
/// d_up = grad · gate·s    d_gate = grad · up · s·(1 + gate·(1 − s))
/// ```
pub fn swiglu_backward<B: Backend, const D: usize>(
    gate: Tensor<B, D>,
    up: Tensor<B, D>,
    grad: Tensor<B, D>,
) -> (Tensor<B, D>, Tensor<B, D>) {
    match (to_flex(gate), to_flex(up), to_flex(grad)) {
        (Ok(gate), Ok(up), Ok(grad)) => {
            let (gate, up, grad) = (contiguous(gate), contiguous(up), contiguous(grad));
            let (g, u, dy) = (slice(&gate), slice(&up), slice(&grad));
            let mut d_gate = vec![0f32; g.len()];
            let mut d_up = vec![0f32; g.len()];
            d_gate
                .par_chunks_mut(CHUNK)
                .zip(d_up.par_chunks_mut(CHUNK))
                .zip(g.par_chunks(CHUNK).zip(u.par_chunks(CHUNK)))
                .zip(dy.par_chunks(CHUNK))
                .for_each(|(((d_gate, d_up), (g, u)), dy)| {
                    Task::SwiGluBackward {
                        d_gate,
                        d_up,
                        g,
                        u,
                        dy,
                    }
                    .run()
                });
            (from_flex(d_gate, &gate), from_flex(d_up, &gate))
        }
        (gate, up, grad) => {
            let (gate, up, grad) = (from_either(gate), from_either(up), from_either(grad));
            let s = sigmoid(gate.clone());
            let d_up = grad.clone() * gate.clone() * s.clone();
            let slope = s.clone() * ((s.neg() + 1.0) * gate + 1.0);
            (grad * up * slope, d_up)
        }
    }
}

/// The softmax of each row of `scores` `[rows, keys]`.
pub fn softmax_rows<B: Backend>(scores: Tensor<B, 2>) -> Tensor<B, 2> {
    match to_flex(scores) {
        Ok(scores) => {
            let scores = contiguous(scores);
            let keys = scores.layout().shape()[1];
            let x = slice(&scores);
            let mut out = vec![0f32; x.len()];
            // No rows to do when there are no keys.
            if let Some(rows_per_task) = CHUNK.checked_div(keys) {
                let rows_per_task = rows_per_task.max(1);
                out.par_chunks_mut(rows_per_task * keys)
                    .zip(x.par_chunks(rows_per_task * keys))
                    .for_each(|(out, x)| Task::Softmax { out, x, keys }.run());
            }
            from_flex(out, &scores)
        }
        Err(scores) => softmax(scores, 1),
    }
}

/// The causal softmax of each row of `scores` `[n * rows, keys]`, read as `n` blocks of
/// `rows` queries whose own positions are the last `rows` keys: row `i` of a block sees
/// its first `keys - rows + i + 1` keys and gives the later ones exactly 0, as a −∞
/// mask would. On Flex the mask is never built and the hidden exponentials never
/// computed; elsewhere this gives `scores` back for the caller to mask.
pub fn causal_softmax_rows<B: Backend>(
    scores: Tensor<B, 2>,
    rows: usize,
) -> Result<Tensor<B, 2>, Tensor<B, 2>> {
    let scores = to_flex(scores)?;
    let scores = contiguous(scores);
    let keys = scores.layout().shape()[1];
    let x = slice(&scores);
    let mut out = vec![0f32; x.len()];
    if keys > 0 && rows > 0 {
        // Whole blocks per task, so that each task knows its rows' places in a block.
        let rows_per_task = (CHUNK / (keys * rows)).max(1) * rows;
        out.par_chunks_mut(rows_per_task * keys)
            .zip(x.par_chunks(rows_per_task * keys))
            .for_each(|(out, x)| Task::CausalSoftmax { out, x, keys, rows }.run());
    }
    Ok(from_flex(out, &scores))
}

/// One rayon task's share of a kernel: its slices of the outputs and inputs.
enum Task<'a> {
    Exp {
        out: &'a mut [f32],
        x: &'a [f32],
    },
    SwiGlu {
        out: &'a mut [f32],
        g: &'a [f32],
        u: &'a [f32],
    },
    SwiGluBackward {
        d_gate: &'a mut [f32],
        d_up: &'a mut [f32],
        g: &'a [f32],
        u: &'a [f32],
        dy: &'a [f32],
    },
    Softmax {
        out: &'a mut [f32],
        x: &'a [f32],
        keys: usize,
    },
    CausalSoftmax {
        out: &'a mut [f32],
        x: &'a [f32],
        keys: usize,
        rows: usize,
    },
}

impl Task<'_> {
    /// Runs the task's loop compiled for the CPU's widest instruction set (AVX-512 or
    /// AVX2 on x86-64), picked at run time.
    fn run(self) {
        pulp::Arch::new().dispatch(self)
    }
}

/// pulp compiles `with_simd` once per instruction set; the loops below are
/// `inline(always)` so that they are compiled, and vectorized, inside it. (A closure
/// passed to `dispatch` need not be inlined there, and was not: its loops ran on SSE2.)
impl pulp::WithSimd for Task<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        match self {
            Task::Exp { out, x } => exp_chunk(out, x),
            Task::SwiGlu { out, g, u } => swiglu_chunk(out, g, u),
            Task::SwiGluBackward {
                d_gate,
                d_up,
                g,
                u,
                dy,
            } => swiglu_backward_chunk(d_gate, d_up, g, u, dy),
            Task::Softmax { out, x, keys } => softmax_chunk(out, x, keys),
            Task::CausalSoftmax { out, x, keys, rows } => causal_softmax_chunk(out, x, keys, rows),
        }
    }
}

#[inline(always)]
fn exp_chunk(out: &mut [f32], x: &[f32]) {
    for (out, x) in out.iter_mut().zip(x) {
        *out = exp_f32(*x);
    }
}

#[inline(always)]
fn swiglu_chunk(out: &mut [f32], g: &[f32], u: &[f32]) {
    for ((out, g), u) in out.iter_mut().zip(g).zip(u) {
        *out = g * sigmoid_f32(*g) * u;
    }
}

#[inline(always)]
fn swiglu_backward_chunk(d_gate: &mut [f32], d_up: &mut [f32], g: &[f32], u: &[f32], dy: &[f32]) {
    let outs = d_gate.iter_mut().zip(d_up.iter_mut());
    for ((d_gate, d_up), ((g, u), dy)) in outs.zip(g.iter().zip(u).zip(dy)) {
        let s = sigmoid_f32(*g);
        *d_up = dy * g * s;
        // σ'(g)·g + σ(g) = s·(1 + g·(1 − s)).
        *d_gate = dy * u * (s * (1.0 + g * (1.0 - s)));
    }
}

#[inline(always)]
fn softmax_chunk(out: &mut [f32], x: &[f32], keys: usize) {
    for (out, x) in out.chunks_exact_mut(keys).zip(x.chunks_exact(keys)) {
        softmax_row(x, out);
    }
}

/// Whole blocks of `rows` rows: row `i` of each over its first `keys - rows + i + 1`
/// keys; the rest of `out` stays 0.
#[inline(always)]
fn causal_softmax_chunk(out: &mut [f32], x: &[f32], keys: usize, rows: usize) {
    let rows_out = out.chunks_exact_mut(keys).zip(x.chunks_exact(keys));
    for (row, (out, x)) in rows_out.enumerate() {
        let seen = keys - rows + row % rows + 1;
        softmax_row(&x[..seen], &mut out[..seen]);
    }
}

/// One row's softmax into `out`: the max, the exponentials and their sum, the scaling.
#[inline(always)]
fn softmax_row(x: &[f32], out: &mut [f32]) {
    let max = lanes(x, f32::NEG_INFINITY, f32::max)
        .into_iter()
        .fold(f32::NEG_INFINITY, f32::max);
    for (out, x) in out.iter_mut().zip(x) {
        *out = exp_f32(x - max);
    }
    let sum: f32 = lanes(out, 0.0, |a, b| a + b).iter().sum();
    let scale = 1.0 / sum;
    for out in out.iter_mut() {
        *out *= scale;
    }
}

/// `combine` over `values` in 16 interleaved lanes (the reduction the compiler can
/// vectorize: one lane per SIMD slot), the tail folded into the first lanes.
#[inline(always)]
fn lanes(values: &[f32], start: f32, combine: impl Fn(f32, f32) -> f32) -> [f32; 16] {
    let mut acc = [start; 16];
    let mut chunks = values.chunks_exact(16);
    for chunk in &mut chunks {
        for (acc, v) in acc.iter_mut().zip(chunk) {
            *acc = combine(*acc, *v);
        }
    }
    for (acc, v) in acc.iter_mut().zip(chunks.remainder()) {
        *acc = combine(*acc, *v);
    }
    acc
}

/// `exp(x)` to within 2 units in the last place for `-86.6 ≤ x ≤ 88.7`; 0 below (where
/// exp is under 2.5e-38, and −∞ lands), +∞ above, NaN for NaN. Written so that a loop
/// of it vectorizes: the range reduction `x = n·ln 2 + r` with `|r| ≤ ln 2 / 2`, a
/// degree-7 polynomial for `exp(r)` (Cephes' `expf` coefficients), and `2^n` built in
/// the exponent bits.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LOW: f32 = -86.6;
    const HIGH: f32 = 88.72;
    // ln 2 in two parts: `n · LN2_HI` is exact for the n that occur.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding 1.5·2^23 rounds to an integer, which then sits in the low mantissa bits:
    // n as a float and as an integer without a rounding instruction or a conversion,
    // which SSE2 (the baseline every x86-64 build may assume) lacks.
    const ROUND: f32 = 12_582_912.0;
    let clamped = x.clamp(LOW, HIGH); // NaN stays NaN, and is answered below
    let shifted = clamped * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND; // the nearest integer to x·log2(e), -125..=128
    let n_bits = shifted.to_bits() as i32 - ROUND.to_bits() as i32;
    let r = clamped - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    // 2^n as 2 · 2^(n−1): 2^128 itself is past f32's exponents.
    let half_scale = f32::from_bits(((n_bits + 126) as u32) << 23);
    let y = e * 2.0 * half_scale;
    if x.is_nan() {
        x
    } else if x < LOW {
        0.0
    } else if x > HIGH {
        f32::INFINITY
    } else {
        y
    }
}

/// `σ(x) = 1 / (1 + e^−x)`, from `e^−|x|` so that no exponential overflows.
#[inline(always)]
fn sigmoid_f32(x: f32) -> f32 {
    let e = exp_f32(-x.abs());
    let s = 1.0 / (1.0 + e); // σ(|x|)
    if x >= 0.0 { s } else { 1.0 - s }
}

/// The Flex tensor under `tensor` when `B` is Flex and the tensor f32; else the tensor.
fn to_flex<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> Result<FlexTensor, Tensor<B, D>> {
    if TypeId::of::<B>() != TypeId::of::<Flex>() || tensor.dtype() != DType::F32 {
        return Err(tensor);
    }
    let primitive: Box<dyn Any> = Box::new(tensor.into_primitive().tensor());
    Ok(*primitive
        .downcast::<FlexTensor>()
        .expect("Flex's float tensors are FlexTensors"))
}

/// A kernel's output `values` as a tensor of `like`'s shape on backend `B` (Flex).
fn from_flex<B: Backend, const D: usize>(values: Vec<f32>, like: &FlexTensor) -> Tensor<B, D> {
    let shape = like.layout().shape().clone();
    flex_tensor(FlexTensor::from_data(TensorData::new(values, shape)))
}

/// Back to a tensor of `B` whichever way [`to_flex`] went (for the fallback paths when
/// only some of an op's inputs are Flex f32).
fn from_either<B: Backend, const D: usize>(
    tensor: Result<FlexTensor, Tensor<B, D>>,
) -> Tensor<B, D> {
    tensor.map_or_else(|tensor| tensor, flex_tensor)
}

/// A Flex tensor as a tensor of `B`; only called with `B` = Flex.
fn flex_tensor<B: Backend, const D: usize>(tensor: FlexTensor) -> Tensor<B, D> {
    let tensor: Box<dyn Any> = Box::new(tensor);
    let primitive = *tensor
        .downcast::<B::FloatTensorPrimitive>()
        .expect("only called with B = Flex");
    Tensor::from_primitive(TensorPrimitive::Float(primitive))
}

fn contiguous(tensor: FlexTensor) -> FlexTensor {
    match tensor.as_slice::<f32>() {
        Some(_) => tensor,
        None => tensor.to_contiguous(),
    }
}

fn slice(tensor: &FlexTensor) -> &[f32] {
    tensor.as_slice::<f32>().expect("made contiguous, f32")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::CpuBackend;
    use burn::tensor::Distribution;

    #[test]
    fn exp_is_within_two_ulp_of_the_exact_value_and_saturates_outside_its_range() {
        let mut worst = 0f64;
        for i in 0..=2_000_000 {
            let x = -86.6 + (88.7 + 86.6) * i as f32 / 2_000_000.0;
            let exact = (x as f64).exp();
            let err = ((exp_f32(x) as f64 - exact) / exact).abs();
            worst = worst.max(err);
        }
        // An f32 ulp is at most 2^-23 = 1.19e-7 relative.
        assert!(worst < 2.0 * 1.2e-7, "worst relative error {worst:e}");
        assert_eq!(exp_f32(0.0), 1.0);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_f32(-100.0), 0.0);
        assert_eq!(exp_f32(89.0), f32::INFINITY);
        assert!(exp_f32(f32::NAN).is_nan());
        assert!(exp_f32(88.7).is_finite());
    }

    #[test]
    fn sigmoid_is_exact_at_the_extremes() {
        assert_eq!(sigmoid_f32(0.0), 0.5);
        assert_eq!(sigmoid_f32(200.0), 1.0);
        assert_eq!(sigmoid_f32(-200.0), 0.0);
        assert!((sigmoid_f32(-3.0) as f64 - 1.0 / (1.0 + 3f64.exp())).abs() < 1e-7);
    }

    fn values<const D: usize>(t: Tensor<CpuBackend, D>) -> Vec<f32> {
        t.into_data().to_vec::<f32>().unwrap()
    }

    /// Each kernel against burn's ops on the same backend, on tensors that span
    /// several rayon chunks and a strided (transposed) input.
    #[test]
    fn kernels_give_burns_values() {
        let device = Default::default();
        let normal = Distribution::Normal(0.0, 3.0);
        let close_to = |tolerance: f32, name: &str, ours: Vec<f32>, burns: Vec<f32>| {
            let scale = burns.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (i, (a, b)) in ours.iter().zip(&burns).enumerate() {
                assert!(
                    (a - b).abs() <= tolerance * scale,
                    "{name}[{i}]: {a} vs {b}"
                );
            }
            assert_eq!(ours.len(), burns.len(), "{name}");
        };
        let close = |name: &str, ours: Vec<f32>, burns: Vec<f32>| close_to(1e-6, name, ours, burns);
        let gate = Tensor::<CpuBackend, 3>::random([3, 70, 400], normal, &device);
        let up = Tensor::<CpuBackend, 3>::random([3, 400, 70], normal, &device).swap_dims(1, 2);
        let grad = Tensor::<CpuBackend, 3>::random([3, 70, 400], normal, &device);
        close("exp", values(exp(gate.clone())), values(gate.clone().exp()));
        close(
            "swiglu",
            values(swiglu(gate.clone(), up.clone())),
            values(silu(gate.clone()) * up.clone()),
        );
        let (d_gate, d_up) = swiglu_backward(gate.clone(), up.clone(), grad.clone());
        let s = sigmoid(gate.clone());
        let burn_d_up = grad.clone() * gate.clone() * s.clone();
        let burn_d_gate = grad * up * (s.clone() * ((s.neg() + 1.0) * gate.clone() + 1.0));
        close("d_up", values(d_up), values(burn_d_up));
        close("d_gate", values(d_gate), values(burn_d_gate));

        // Rows with a masked tail (−∞) as attention's blocks have, wider and narrower
        // than a chunk.
        for keys in [5, 37, 40_000] {
            let scores = Tensor::<CpuBackend, 2>::random([6, keys], normal, &device);
            let mask = Tensor::<CpuBackend, 1, Int>::arange(0..keys as i64, &device)
                .reshape([1, keys])
                .greater_equal_elem(keys as i64 - 2);
            let scores = scores.mask_fill(mask.expand([6, keys]), f32::NEG_INFINITY);
            let ours = values(softmax_rows(scores.clone()));
            // Against the softmax in f64: burn's sums a 40,000-key row one element at a
            // time in f32 and is off by 3e-5 itself there; ours sums in 16 lanes, each
            // of 2,500 terms.
            let exact: Vec<f32> = values(scores)
                .chunks(keys)
                .flat_map(|row| {
                    let max = row.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v)) as f64;
                    let exps: Vec<f64> = row.iter().map(|v| (*v as f64 - max).exp()).collect();
                    let sum: f64 = exps.iter().sum();
                    exps.into_iter().map(move |e| (e / sum) as f32)
                })
                .collect();
            close_to(4e-6, "softmax", ours.clone(), exact);
            assert!(ours.chunks(keys).all(|row| row[keys - 1] == 0.0));
        }
    }

    /// The causal kernel against the whole-row kernel over the same scores with the
    /// hidden keys set to −∞: blocks of 3 rows after 4 earlier keys, and tasks that
    /// hold several blocks.
    #[test]
    fn the_causal_softmax_equals_the_softmax_of_masked_rows() {
        let device = Default::default();
        let (blocks, rows, past) = (2_000, 3, 4);
        let keys = past + rows;
        let scores = Tensor::<CpuBackend, 2>::random(
            [blocks * rows, keys],
            Distribution::Normal(0.0, 3.0),
            &device,
        );
        let position = Tensor::<CpuBackend, 1, Int>::arange(0..(blocks * rows) as i64, &device)
            .remainder_scalar(rows as i64)
            .reshape([blocks * rows, 1]);
        let key = Tensor::<CpuBackend, 1, Int>::arange(0..keys as i64, &device).reshape([1, keys]);
        let hidden = key.greater(position.add_scalar(past as i64)); // [blocks * rows, keys]
        let masked = scores.clone().mask_fill(hidden, f32::NEG_INFINITY);
        let ours = values(causal_softmax_rows(scores, rows).unwrap());
        assert_eq!(ours, values(softmax_rows(masked)));
        // Row 0 of a block sees the 4 earlier keys and its own; row 2 sees all 7.
        assert!(ours[past + 1..keys].iter().all(|p| *p == 0.0));
        assert!(ours[2 * keys..3 * keys].iter().all(|p| *p > 0.0));
    }
}
