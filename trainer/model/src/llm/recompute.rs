//! Layer recomputation (gradient checkpointing) for a training step's backward pass:
//! a first pass runs the decoder layers without a graph and keeps only each layer's
//! input; the loss's backward stops at the last layer's output; then, from the last
//! layer to the first, each layer is run again with a graph from its kept input and
//! backpropagated on its own with the gradient the layer above passed down. Only one
//! layer's activations (its attention scores included) are alive at a time.
//!
//! Why not one autodiff op per layer whose backward rebuilds the layer's graph: in
//! burn 0.21 a backward pass called inside another one deadlocks. The outer pass holds
//! its graph's mutex while it runs the ops' backward steps
//! (burn-autodiff `runtime/graph.rs:119`), and every `backward()` ends by locking each
//! graph to free orphaned nodes (`GraphCleaner::cleanup_orphaned_entries`,
//! `runtime/graph.rs:125` and `:165`), the outer one included; burn's own
//! `BalancedCheckpointing` recomputes only element-wise ops and still keeps every
//! matmul's inputs (`ops/tensor.rs:612`), so every layer's. Hence this driver, where
//! every backward is a top-level one and the gradients meet in the step's
//! accumulator.
//!
//! LoRA dropout draws its masks from the backend's generator, so each layer's
//! forward starts from a seed of its own, drawn once per call: the first pass and the
//! recomputation see the same masks.

use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::backend::AutodiffBackend;

use super::packing::{AttentionTables, Layout};
use super::rope::RopeTables;
use super::transformer::CausalLm;

/// One seed per decoder layer, from the backend's generator (so a seeded step repeats).
pub fn layer_seeds<B: Backend>(layers: usize, device: &B::Device) -> Vec<u64> {
    // 30-bit draws: the backend's int type may be a signed 32 bits.
    Tensor::<B, 1, Int>::random(
        [layers],
        Distribution::Uniform(0.0, 1_073_741_824.0),
        device,
    )
    .into_data()
    .convert::<i64>()
    .to_vec::<i64>()
    .expect("i64 data")
    .into_iter()
    .map(|seed| seed as u64)
    .collect()
}

/// Runs `model` on `ids` (laid out as `layout` says) and backpropagates `loss_of(hidden)` layer by layer, adding
/// every parameter's gradient to `accumulator`. `loss_of` gets the hidden states after
/// the final norm, `[batch, seq, hidden]`, and returns the scalar loss to
/// differentiate and what the caller wants back (e.g. the step's statistics).
///
/// With the layers placed on several devices, each layer's input is kept and
/// recomputed on its own device, and the gradient passed down crosses back to the
/// device below at each stage boundary.
pub fn backward_recomputed<B: AutodiffBackend, T>(
    model: &CausalLm<B>,
    ids: Tensor<B, 2, Int>,
    layout: Layout<'_>,
    accumulator: &mut GradientsAccumulator<CausalLm<B>>,
    loss_of: impl FnOnce(Tensor<B, 3>) -> (Tensor<B, 1>, T),
) -> T {
    let [_, seq] = ids.dims();
    let stages = StageTables::new(model, seq, layout, &ids.device());
    let seeds = layer_seeds::<B>(model.layers.len(), &ids.device());

    // First pass: no parameter or input tracked, so no op keeps a tensor for backward;
    // still on the autodiff backend, where LoRA dropout is on.
    let embedded = model.embed(ids); // [batch, seq, hidden], compute dtype
    let mut inputs = Vec::with_capacity(model.layers.len());
    let mut x = embedded.clone().inner();
    for (i, (layer, seed)) in model.layers.iter().zip(&seeds).enumerate() {
        let (device, rope, attention) = stages.of(i);
        if model.starts_stage(i) {
            x = x.to_device(device);
        }
        B::seed(device, *seed);
        let frozen = layer.clone().no_grad();
        let (y, _) = frozen.forward(Tensor::from_inner(x.clone()), rope, attention, None);
        inputs.push(x);
        x = y.inner();
    }

    // The head: final norm, head and loss, from the last layer's output as a leaf.
    let last = Tensor::<B, 3>::from_inner(x).require_grad();
    let (loss, output) = loss_of(model.final_norm(last.clone()));
    let mut grads = loss.backward();
    let mut upstream = last
        .grad_remove(&mut grads)
        .expect("the loss depends on the layers");
    accumulator.accumulate(model, GradientsParams::from_grads(grads, model));

    // The layers, last to first, each recomputed with its seed and backpropagated with
    // `upstream`, the gradient of the loss for its output.
    for (i, ((layer, seed), input)) in model
        .layers
        .iter()
        .zip(&seeds)
        .zip(inputs)
        .enumerate()
        .rev()
    {
        let (device, rope, attention) = stages.of(i);
        B::seed(device, *seed);
        let input = Tensor::<B, 3>::from_inner(input).require_grad();
        let (y, _) = layer.forward(input.clone(), rope, attention, None);
        // d/dy of Σ y·upstream is `upstream`, exactly.
        let mut grads = (y * Tensor::from_inner(upstream)).sum().backward();
        upstream = input
            .grad_remove(&mut grads)
            .expect("a layer's output depends on its input");
        if model.starts_stage(i) {
            let below = stages.of(i - 1).0;
            upstream = upstream.to_device(below);
        }
        accumulator.accumulate(model, GradientsParams::from_grads(grads, layer));
    }

    // The embeddings, when trained (full training).
    if model.embed_tokens.weight.is_require_grad() {
        let grads = (embedded * Tensor::from_inner(upstream)).sum().backward();
        accumulator.accumulate(
            model,
            GradientsParams::from_grads(grads, &model.embed_tokens),
        );
    }
    output
}

/// One device's rotation tables and causal-mask blocks.
type Tables<B> = (burn::tensor::Device<B>, RopeTables<B>, AttentionTables<B>);

/// Each device's rotation tables and causal-mask blocks for one batch's layout,
/// built once per device and shared by its layers.
struct StageTables<B: Backend> {
    /// Per stage.
    stages: Vec<Tables<B>>,
    /// Per layer: its stage.
    stage_of_layer: Vec<usize>,
}

impl<B: Backend> StageTables<B> {
    fn new(model: &CausalLm<B>, seq: usize, layout: Layout<'_>, first: &B::Device) -> Self {
        let tables = |device: B::Device| {
            let (rope, attention) = layout.tables::<B>(&model.rope, seq, 0, &device);
            (device, rope, attention)
        };
        let mut stages = vec![tables(first.clone())];
        let mut stage_of_layer = Vec::with_capacity(model.layers.len());
        for (i, layer) in model.layers.iter().enumerate() {
            if model.starts_stage(i) {
                stages.push(tables(layer.device()));
            }
            stage_of_layer.push(stages.len() - 1);
        }
        Self {
            stages,
            stage_of_layer,
        }
    }

    /// The device and tables of decoder layer `layer`.
    fn of(&self, layer: usize) -> (&B::Device, &RopeTables<B>, &AttentionTables<B>) {
        let (device, rope, attention) = &self.stages[self.stage_of_layer[layer]];
        (device, rope, attention)
    }
}
