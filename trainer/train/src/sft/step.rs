//! One optimizer step of SFT: forward and backward over the step's micro-batches
//! (gradient accumulation), with the layers' activations kept or recomputed
//! ([`crate::backward`]), the gradient clipped by its global norm, then AdamW
//! ([`crate::optimizer`]) on whatever has gradients. With several devices the
//! micro-batches run on replicas of the model ([`crate::data_parallel`]).

use burn::optim::{GradientsAccumulator, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use super::loss::masked_nll;
use crate::backward::accumulate_backward;
use crate::chunked_loss::hidden_scores;
use crate::data_parallel::Replicas;
use crate::grad_clip::clip_global_norm;
use crate::optimizer::SftOptimizer;
use crate::readback::Readback;
use crate::step_settings::StepSettings;
use crate::tensor_batch::Batch;
use anneal_model::llm::CausalLm;

/// What one step saw.
#[derive(Clone, Debug, PartialEq)]
pub struct StepStats {
    /// Mean loss per trained token.
    pub loss: f64,
    /// Share of trained tokens predicted right.
    pub accuracy: f64,
    pub trained_tokens: usize,
    /// Positions the forward pass computed, padding included.
    pub positions: usize,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
}

/// Runs one step over `micro_batches` and returns the updated model.
pub fn sft_step<B: AutodiffBackend>(
    model: CausalLm<B>,
    optimizer: &mut SftOptimizer<B>,
    micro_batches: &[Batch<B>],
    settings: StepSettings,
) -> (CausalLm<B>, StepStats) {
    let mut replicas = Replicas::single(model.devices()[0].clone());
    sft_step_on(model, optimizer, micro_batches, settings, &mut replicas)
}

/// [`sft_step`] with the micro-batches on `replicas` (each batch already on the device
/// [`Replicas::assign`] gives it); the replicas hold the updated weights after it.
pub fn sft_step_on<B: AutodiffBackend>(
    mut model: CausalLm<B>,
    optimizer: &mut SftOptimizer<B>,
    micro_batches: &[Batch<B>],
    settings: StepSettings,
    replicas: &mut Replicas<B>,
) -> (CausalLm<B>, StepStats) {
    let total_tokens: usize = micro_batches.iter().map(|b| b.trained_tokens).sum();
    let mut accumulators: Vec<_> = (0..replicas.len())
        .map(|_| GradientsAccumulator::<CausalLm<B>>::new())
        .collect();
    // `[1]` sums on the device, read with the gradient norm once the step is done.
    let mut sums: Option<[Tensor<B::InnerBackend, 1>; 2]> = None;
    for (batch, replica) in micro_batches
        .iter()
        .zip(replicas.assign(micro_batches.len()))
    {
        let activations = settings.activations;
        let on = replicas.model(&model, replica);
        let accumulator = &mut accumulators[replica];
        let (nll, correct) = accumulate_backward(on, batch, activations, accumulator, |hidden| {
            let (nll, correct) = masked_nll(hidden_scores(on, batch, hidden), batch);
            // Each micro-batch's share of the step's mean, so the accumulated
            // gradient is the gradient of the mean over every trained token.
            let loss = nll.clone() / total_tokens.max(1) as f64;
            (loss, (nll, correct))
        });
        let (nll, correct) = (
            replicas.onto_first(nll.inner(), replica),
            replicas.onto_first(correct.inner(), replica),
        );
        sums = Some(match sums {
            None => [nll, correct],
            Some([nll_sum, correct_sum]) => [nll_sum + nll, correct_sum + correct],
        });
    }
    let mut grads = replicas.gather(&model, accumulators);
    let grad_norm = clip_global_norm::<B, _>(&model, &mut grads, settings.max_grad_norm);
    model = optimizer.step(settings.learning_rate, model, grads);
    replicas.sync(&model);
    let mut readback = Readback::default();
    let kept_sums = sums.map(|[nll, correct]| (readback.keep(nll), readback.keep(correct)));
    let kept_norm = grad_norm.map(|norm| readback.keep(norm));
    let values = readback.read();
    let (nll_sum, correct_sum) = kept_sums.map_or((0.0, 0.0), |(nll, correct)| {
        (values.scalar(nll), values.scalar(correct))
    });
    let stats = StepStats {
        loss: nll_sum / total_tokens.max(1) as f64,
        accuracy: correct_sum / total_tokens.max(1) as f64,
        trained_tokens: total_tokens,
        positions: micro_batches.iter().map(|b| b.positions).sum(),
        grad_norm: kept_norm.map_or(0.0, |norm| values.scalar(norm)),
    };
    (model, stats)
}
