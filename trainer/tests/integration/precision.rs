//! Mixed precision on the CPU: the tiny Qwen2 fixture with its frozen base loaded in
//! bf16 (as CUDA trains it) against the f32 base (as the CPU trains it). The adapter
//! stays f32 (its values and gradients), and its gradients stay within a bf16
//! tolerance of the f32 base's, through the plain and the recomputed backward.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::prelude::*;
use burn::tensor::DType;

use anneal_model::backend::CpuBackend;
use anneal_model::llm::CausalLm;
use anneal_model::llm::recompute::backward_recomputed;
use anneal_train::chunked_loss::{TargetScores, batch_scores, chunk_tokens};
use anneal_train::sft::loss::masked_nll;
use anneal_train::tensor_batch::Batch;
use anneal_train::train_backend::CpuTrainBackend;

use crate::support::{lora_with_nonzero_b, qwen_for_training, two_row_batch};

type A = CpuTrainBackend;

/// Relative gap (max |bf16 − f32| / max |f32|) accepted for the loss and for each
/// adapter gradient. bf16 keeps 8 significant bits (rounding error up to 2^-9, 0.2%
/// per operation); the base's weights, every projection's input and output, and
/// the activations between layers are rounded to it, two layers deep. Measured:
/// 0.09% on the loss and at most 4.0% on an adapter's gradient (relative to that
/// gradient's largest entry); 8% leaves room. The dtypes are asserted exactly: an
/// adapter or gradient in bf16 fails on its dtype, not on a tolerance.
const GRADIENT_TOLERANCE: f32 = 8e-2;

fn model(dtype: DType) -> CausalLm<A> {
    lora_with_nonzero_b(qwen_for_training(dtype), 0.0)
}

/// Each trained parameter's dtype, its gradient's dtype and values, in module order.
struct Collect<'a> {
    grads: &'a GradientsParams,
    out: Vec<(String, DType, DType, Vec<f32>)>,
}

impl ModuleVisitor<A> for Collect<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<A, D>>) {
        if let Some(grad) = self.grads.get::<CpuBackend, D>(param.id) {
            let grad_dtype = grad.dtype();
            let values = grad.into_data().convert::<f32>().to_vec::<f32>().unwrap();
            let name = format!("{:?} {:?}", param.id, param.val().dims());
            self.out
                .push((name, param.val().dtype(), grad_dtype, values));
        }
    }
}

fn collect(model: &CausalLm<A>, grads: &GradientsParams) -> Vec<(String, DType, DType, Vec<f32>)> {
    let mut visitor = Collect {
        grads,
        out: Vec::new(),
    };
    model.visit(&mut visitor);
    visitor.out
}

fn plain(model: &CausalLm<A>, batch: &Batch<A>) -> (f32, GradientsParams) {
    let loss = masked_nll(batch_scores(model, batch), batch).0;
    let grads = GradientsParams::from_grads(loss.backward(), model);
    (loss.into_scalar(), grads)
}

fn recomputed(model: &CausalLm<A>, batch: &Batch<A>) -> (f32, GradientsParams) {
    let mut accumulator = GradientsAccumulator::new();
    let loss = backward_recomputed(
        model,
        batch.inputs.clone(),
        batch.layout(),
        &mut accumulator,
        |hidden| {
            let scores = TargetScores::from_hidden(
                hidden,
                model.head(),
                batch.targets.clone(),
                chunk_tokens(model),
            );
            let loss = masked_nll(scores, batch).0;
            (loss.clone(), loss)
        },
    );
    (loss.into_scalar(), accumulator.grads())
}

/// max |a − b| / max |b|.
fn relative_gap(a: &[f32], b: &[f32]) -> f32 {
    let scale = b
        .iter()
        .fold(0f32, |m, v| m.max(v.abs()))
        .max(f32::MIN_POSITIVE);
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
        / scale
}

fn compare(step: fn(&CausalLm<A>, &Batch<A>) -> (f32, GradientsParams)) {
    let _generator = crate::support::generator_turn();
    let batch = two_row_batch();
    let (half, full) = (model(DType::BF16), model(DType::F32));
    // The frozen base really is bf16, its norms f32.
    let q = &half.layers[0].self_attn.q_proj;
    assert_eq!(q.base.weight.val().dtype(), DType::BF16);
    assert_eq!(half.embed_tokens.weight.val().dtype(), DType::BF16);
    assert_eq!(half.norm.gamma.val().dtype(), DType::F32);
    let ((half_loss, half_grads), (full_loss, full_grads)) =
        (step(&half, &batch), step(&full, &batch));
    let loss_gap = relative_gap(&[half_loss], &[full_loss]);
    println!("loss bf16 {half_loss} f32 {full_loss}: gap {loss_gap}");
    assert!(loss_gap < GRADIENT_TOLERANCE);
    let (half, full) = (collect(&half, &half_grads), collect(&full, &full_grads));
    // 2 layers × 7 projections × (A, B), and nothing of the base.
    assert_eq!(half.len(), 28);
    assert_eq!(full.len(), 28);
    let mut worst = 0f32;
    for ((name, value, grad, h), (_, _, _, f)) in half.iter().zip(&full) {
        assert_eq!((*value, *grad), (DType::F32, DType::F32), "{name}");
        let gap = relative_gap(h, f);
        assert!(gap < GRADIENT_TOLERANCE, "{name}: relative gap {gap}");
        worst = worst.max(gap);
    }
    println!("worst adapter gradient gap {worst}");
}

#[test]
fn lora_gradients_with_a_bf16_base_are_near_the_f32_base_and_f32() {
    compare(plain);
}

#[test]
fn recomputed_lora_gradients_with_a_bf16_base_are_near_the_f32_base() {
    compare(recomputed);
}

/// `model` with each decoder layer's projection weights and biases passed through
/// `f` (the same parameter ids, still frozen).
fn with_layer_weights(mut model: CausalLm<A>, f: impl Fn(DType) -> DType) -> CausalLm<A> {
    for (_, _, projection) in anneal_model::lora::projections_mut(&mut model) {
        let weight = projection.base.weight.clone();
        projection.base.weight = weight.map(|w| {
            let dtype = f(w.dtype());
            w.cast(dtype)
        });
        if let Some(bias) = projection.base.bias.take() {
            projection.base.bias = Some(bias.map(|b| {
                let dtype = f(b.dtype());
                b.cast(dtype)
            }));
        }
    }
    model
}

/// The decoder layers held in bf16 and widened to f32 at each product
/// (`LayerStorage::Stored`, how CPU LoRA training with recomputation holds its base)
/// give the loss and adapter gradients of the same bf16 values held in f32, to the
/// bit: bf16 to f32 is exact, so nothing but the bytes held changes.
#[test]
fn layers_held_in_bf16_train_as_the_same_values_held_in_f32_to_the_bit() {
    let _generator = crate::support::generator_turn();
    let batch = two_row_batch();
    // The f32 base with every layer weight rounded to bf16 values, still held in f32.
    let rounded = with_layer_weights(model(DType::F32), |_| DType::BF16);
    let rounded = with_layer_weights(rounded, |_| DType::F32);
    let held_half = with_layer_weights(rounded.clone(), |_| DType::BF16);
    let q = &held_half.layers[0].self_attn.q_proj;
    assert_eq!(q.base.weight.val().dtype(), DType::BF16);
    assert_eq!(q.base.bias.as_ref().unwrap().val().dtype(), DType::BF16);
    assert_eq!(held_half.embed_tokens.weight.val().dtype(), DType::F32);

    let (half_loss, half_grads) = recomputed(&held_half, &batch);
    let (full_loss, full_grads) = recomputed(&rounded, &batch);
    assert_eq!(
        half_loss.to_bits(),
        full_loss.to_bits(),
        "{half_loss} vs {full_loss}"
    );
    let (half, full) = (
        collect(&held_half, &half_grads),
        collect(&rounded, &full_grads),
    );
    assert_eq!(half.len(), 28);
    for ((name, _, grad, h), (_, _, _, f)) in half.iter().zip(&full) {
        assert_eq!(*grad, DType::F32, "{name}");
        assert!(
            h.iter().zip(f).all(|(a, b)| a.to_bits() == b.to_bits()),
            "{name}"
        );
    }
    // And the rounding is real: the rounded base's loss is not the f32 base's.
    let (original_loss, _) = recomputed(&model(DType::F32), &batch);
    assert_ne!(original_loss.to_bits(), full_loss.to_bits());
}
