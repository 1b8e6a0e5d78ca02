//! Block recomputation (gradient checkpointing) for a FLUX training step, as the
//! chat models' layers have it (`anneal_model::llm::recompute`, which says why each
//! backward is a top-level one): a first pass runs the blocks without a graph and
//! keeps only each block's input; the loss's backward stops at the last block's
//! output; then from the last block to the first each block runs again with a graph
//! from its kept input and is backpropagated on its own. Only one block's
//! activations are alive at a time.
//!
//! Every block also reads the conditioning vector `temb`. Its gradient is summed
//! over the blocks and the head, and carried into the embedders only when one of
//! them trains (a LoRA job adapts the blocks alone, so usually none does). LoRA
//! dropout draws its masks from the backend's generator: each block's forward
//! starts from a seed of its own, so the first pass and the recomputation agree.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use anneal_model::llm::recompute::layer_seeds;

use super::transformer::{BlockInputs, Conditioning, FluxTransformer};

/// Runs `model` on `latents` and backpropagates `loss_of(velocity)` block by block,
/// adding every parameter's gradient to `accumulator`. `loss_of` gets the velocity,
/// `[batch, image_tokens, out_channels]` f32, and returns the scalar loss to
/// differentiate and what the caller wants back.
pub fn backward_recomputed<B: AutodiffBackend, T>(
    model: &FluxTransformer<B>,
    latents: Tensor<B, 3>,
    grid: (usize, usize),
    cond: &Conditioning<'_, B>,
    accumulator: &mut GradientsAccumulator<FluxTransformer<B>>,
    loss_of: impl FnOnce(Tensor<B, 3>) -> (Tensor<B, 1>, T),
) -> T {
    let mut run = Recomputation::new(model, latents, grid, cond);
    let kept = run.first_pass();
    let (output, upstream) = run.head_backward(kept.last, accumulator, loss_of);
    let upstream = run.single_blocks_backward(kept.singles, upstream, accumulator);
    let (up_text, up_image) = run.double_blocks_backward(kept.doubles, upstream, accumulator);
    run.embedders_backward(up_text, up_image, accumulator);
    output
}

/// One step's recomputation: the blocks' inputs, each block's seed, and the
/// conditioning vector's gradient as the segments add to it.
struct Recomputation<'a, B: AutodiffBackend> {
    model: &'a FluxTransformer<B>,
    inputs: BlockInputs<B>,
    /// `inputs.temb` without its graph.
    temb: Tensor<B::InnerBackend, 2>,
    /// Whether an embedder trains, so the gradients of `temb` and the first block's
    /// inputs are wanted.
    embedders_train: bool,
    /// The double blocks' seeds, then the single blocks'.
    seeds: Vec<u64>,
    temb_grad: Option<Tensor<B::InnerBackend, 2>>,
    device: B::Device,
}

/// A hidden-state tensor without its graph, `[batch, tokens, dim]`.
type Inner<B> = Tensor<<B as AutodiffBackend>::InnerBackend, 3>;

/// What the first pass keeps: each block's input, and the last block's output.
struct KeptInputs<B: AutodiffBackend> {
    /// Per double block: (text, image).
    doubles: Vec<(Inner<B>, Inner<B>)>,
    /// Per single block: the joined text and image.
    singles: Vec<Inner<B>>,
    last: Inner<B>,
}

impl<'a, B: AutodiffBackend> Recomputation<'a, B> {
    fn new(
        model: &'a FluxTransformer<B>,
        latents: Tensor<B, 3>,
        grid: (usize, usize),
        cond: &Conditioning<'_, B>,
    ) -> Self {
        let device = latents.device();
        let inputs = model.block_inputs(latents, grid, cond);
        let blocks = model.double_blocks.len() + model.single_blocks.len();
        Self {
            model,
            temb: inputs.temb.clone().inner(),
            inputs,
            embedders_train: trains(&model.x_embedder)
                || trains(&model.context_embedder)
                || trains(&model.time_text_embed),
            seeds: layer_seeds::<B>(blocks, &device),
            temb_grad: None,
            device,
        }
    }

    fn text_len(&self) -> usize {
        self.inputs.text.dims()[1]
    }

    /// The conditioning vector as a segment's leaf: tracked when its gradient is
    /// wanted.
    fn temb_leaf(&self) -> Tensor<B, 2> {
        let leaf = Tensor::<B, 2>::from_inner(self.temb.clone());
        match self.embedders_train {
            true => leaf.require_grad(),
            false => leaf,
        }
    }

    /// Adds a segment's gradient of its `temb` leaf.
    fn add_temb_grad(&mut self, leaf: &Tensor<B, 2>, grads: &mut B::Gradients) {
        if let Some(grad) = leaf.grad_remove(grads) {
            self.temb_grad = Some(match self.temb_grad.take() {
                Some(sum) => sum + grad,
                None => grad,
            });
        }
    }

    /// Every block without a graph, each from its seed, keeping its input.
    fn first_pass(&self) -> KeptInputs<B> {
        let model = self.model;
        let (rope, temb) = (
            &self.inputs.rope,
            Tensor::<B, 2>::from_inner(self.temb.clone()),
        );
        let (double_seeds, single_seeds) = self.seeds.split_at(model.double_blocks.len());
        let mut text = self.inputs.text.clone().inner();
        let mut image = self.inputs.image.clone().inner();
        let mut doubles = Vec::with_capacity(double_seeds.len());
        for (block, seed) in model.double_blocks.iter().zip(double_seeds) {
            B::seed(&self.device, *seed);
            let (t, i) = block.clone().no_grad().forward(
                Tensor::from_inner(image.clone()),
                Tensor::from_inner(text.clone()),
                &temb,
                rope,
            );
            doubles.push((text, image));
            (text, image) = (t.inner(), i.inner());
        }
        let mut joined = Tensor::cat(vec![text, image], 1); // [b, t + n, dim]
        let mut singles = Vec::with_capacity(single_seeds.len());
        for (block, seed) in model.single_blocks.iter().zip(single_seeds) {
            B::seed(&self.device, *seed);
            let y =
                block
                    .clone()
                    .no_grad()
                    .forward(Tensor::from_inner(joined.clone()), &temb, rope);
            singles.push(joined);
            joined = y.inner();
        }
        KeptInputs {
            doubles,
            singles,
            last: joined,
        }
    }

    /// The head and the loss from the last block's output `last` as a leaf; returns
    /// what `loss_of` hands back and the gradient of the loss for `last`.
    fn head_backward<T>(
        &mut self,
        last: Inner<B>,
        accumulator: &mut GradientsAccumulator<FluxTransformer<B>>,
        loss_of: impl FnOnce(Tensor<B, 3>) -> (Tensor<B, 1>, T),
    ) -> (T, Inner<B>) {
        let last = Tensor::<B, 3>::from_inner(last).require_grad();
        let leaf = self.temb_leaf();
        let velocity = self.model.velocity(last.clone(), self.text_len(), &leaf);
        let (loss, output) = loss_of(velocity);
        let mut grads = loss.backward();
        let upstream = last
            .grad_remove(&mut grads)
            .expect("the loss depends on the blocks");
        self.add_temb_grad(&leaf, &mut grads);
        accumulator.accumulate(
            self.model,
            GradientsParams::from_grads(grads, &self.model.head),
        );
        (output, upstream)
    }

    /// The single blocks, last to first, each recomputed from its kept input and
    /// backpropagated with `upstream`, the gradient for its output. Returns the
    /// gradient for the first single block's input.
    fn single_blocks_backward(
        &mut self,
        kept: Vec<Inner<B>>,
        mut upstream: Inner<B>,
        accumulator: &mut GradientsAccumulator<FluxTransformer<B>>,
    ) -> Inner<B> {
        let model = self.model;
        let seeds = self.seeds[model.double_blocks.len()..].to_vec();
        for ((block, seed), input) in model.single_blocks.iter().zip(seeds).zip(kept).rev() {
            B::seed(&self.device, seed);
            let input = Tensor::<B, 3>::from_inner(input).require_grad();
            let leaf = self.temb_leaf();
            let y = block.forward(input.clone(), &leaf, &self.inputs.rope);
            // d/dy of Σ y·upstream is `upstream`, exactly.
            let mut grads = (y * Tensor::from_inner(upstream)).sum().backward();
            upstream = input
                .grad_remove(&mut grads)
                .expect("a block's output depends on its input");
            self.add_temb_grad(&leaf, &mut grads);
            accumulator.accumulate(model, GradientsParams::from_grads(grads, block));
        }
        upstream
    }

    /// The double blocks, last to first, with `upstream` (the joined gradient)
    /// split back into the text and image streams. Returns the gradients for the
    /// first block's text and image inputs.
    fn double_blocks_backward(
        &mut self,
        kept: Vec<(Inner<B>, Inner<B>)>,
        upstream: Inner<B>,
        accumulator: &mut GradientsAccumulator<FluxTransformer<B>>,
    ) -> (Inner<B>, Inner<B>) {
        let model = self.model;
        let (text_len, tokens) = (self.text_len(), upstream.dims()[1]);
        let mut up_text = upstream.clone().narrow(1, 0, text_len);
        let mut up_image = upstream.narrow(1, text_len, tokens - text_len);
        let seeds = self.seeds[..model.double_blocks.len()].to_vec();
        for ((block, seed), (text, image)) in model.double_blocks.iter().zip(seeds).zip(kept).rev()
        {
            B::seed(&self.device, seed);
            let text = Tensor::<B, 3>::from_inner(text).require_grad();
            let image = Tensor::<B, 3>::from_inner(image).require_grad();
            let leaf = self.temb_leaf();
            let (t, i) = block.forward(image.clone(), text.clone(), &leaf, &self.inputs.rope);
            let sum =
                (t * Tensor::from_inner(up_text)).sum() + (i * Tensor::from_inner(up_image)).sum();
            let mut grads = sum.backward();
            up_text = text
                .grad_remove(&mut grads)
                .expect("a block's text output depends on its text");
            up_image = image
                .grad_remove(&mut grads)
                .expect("a block's image output depends on its image");
            self.add_temb_grad(&leaf, &mut grads);
            accumulator.accumulate(model, GradientsParams::from_grads(grads, block));
        }
        (up_text, up_image)
    }

    /// The embedders, when one of them trains: the first block's input gradients and
    /// the conditioning vector's, summed over every segment.
    fn embedders_backward(
        self,
        up_text: Inner<B>,
        up_image: Inner<B>,
        accumulator: &mut GradientsAccumulator<FluxTransformer<B>>,
    ) {
        if !self.embedders_train {
            return;
        }
        let BlockInputs {
            image, text, temb, ..
        } = self.inputs;
        let mut sum = (image * Tensor::from_inner(up_image)).sum()
            + (text * Tensor::from_inner(up_text)).sum();
        if let Some(grad) = self.temb_grad {
            sum = sum + (temb * Tensor::from_inner(grad)).sum();
        }
        let grads = GradientsParams::from_grads(sum.backward(), self.model);
        accumulator.accumulate(self.model, grads);
    }
}

/// Whether any parameter of `module` trains.
fn trains<B: AutodiffBackend, M: Module<B>>(module: &M) -> bool {
    struct AnyTrained(bool);
    impl<B: Backend> ModuleVisitor<B> for AnyTrained {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.0 |= param.is_require_grad();
        }
    }
    let mut visitor = AnyTrained(false);
    module.visit(&mut visitor);
    visitor.0
}
