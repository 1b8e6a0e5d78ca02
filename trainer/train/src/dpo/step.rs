//! One optimizer step of DPO: per micro-batch, the reference scores both replies
//! without a graph, the trained model scores them with one, and the DPO loss's
//! gradient (its SFT term included) accumulates, with the layers' activations kept or
//! recomputed ([`crate::backward`]); then clipping and AdamW exactly as SFT's step does.

use burn::optim::{GradientsAccumulator, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use super::loss::{DpoConfig, PairBatch, PreferenceScores, PreferenceTally, sequence_log_probs};
use super::reference::Reference;
use crate::backward::accumulate_backward;
use crate::chunked_loss::{batch_scores, hidden_scores};
use crate::data_parallel::Replicas;
use crate::grad_clip::clip_global_norm;
use crate::optimizer::SftOptimizer;
use crate::readback::Readback;
use crate::step_settings::StepSettings;
use crate::tensor_batch::Batch;
use anneal_model::llm::CausalLm;

/// What one step saw.
#[derive(Clone, Debug, PartialEq)]
pub struct DpoStepStats {
    /// Means over the step's pairs, before the update.
    pub scores: PreferenceScores,
    pub pairs: usize,
    /// Positions the trained model's forward pass computed, padding included.
    pub positions: usize,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
}

/// Runs one step over `micro_batches` and returns the updated model.
pub fn dpo_step<B: AutodiffBackend>(
    model: CausalLm<B>,
    reference: &Reference<B>,
    config: &DpoConfig,
    optimizer: &mut SftOptimizer<B>,
    micro_batches: &[PairBatch<B>],
    settings: StepSettings,
) -> (CausalLm<B>, DpoStepStats) {
    let mut replicas = Replicas::single(model.devices()[0].clone());
    let references = std::slice::from_ref(reference);
    let step = DpoStep { config, settings };
    step.run(model, references, optimizer, micro_batches, &mut replicas)
}

/// How a DPO step scores and updates: the loss and the step's settings.
pub struct DpoStep<'a> {
    pub config: &'a DpoConfig,
    pub settings: StepSettings,
}

impl DpoStep<'_> {
    /// [`dpo_step`] with the micro-batches on `replicas` (each batch already on the
    /// device [`Replicas::assign`] gives it), `references[r]` the reference beside
    /// replica `r`; the replicas hold the updated weights after it.
    pub fn run<B: AutodiffBackend>(
        &self,
        mut model: CausalLm<B>,
        references: &[Reference<B>],
        optimizer: &mut SftOptimizer<B>,
        micro_batches: &[PairBatch<B>],
        replicas: &mut Replicas<B>,
    ) -> (CausalLm<B>, DpoStepStats) {
        let (config, settings) = (self.config, self.settings);
        let total_pairs: usize = micro_batches.iter().map(|b| b.pairs).sum();
        let reference_models: Vec<_> = (references.iter().enumerate())
            .map(|(replica, reference)| reference.model(replicas.model(&model, replica)))
            .collect();
        let mut accumulators: Vec<_> = (0..replicas.len())
            .map(|_| GradientsAccumulator::<CausalLm<B>>::new())
            .collect();
        // Each micro-batch's loss and rewards stay on the device until the step is done.
        let mut readback = Readback::<B::InnerBackend>::default();
        let mut kept = Vec::with_capacity(micro_batches.len());
        let assigned = replicas.assign(micro_batches.len());
        for (batch, replica) in micro_batches.iter().zip(assigned) {
            let on = replicas.model(&model, replica);
            let inner = inner_batch(&batch.sequences);
            let reference_scores = sequence_log_probs(
                batch_scores(&reference_models[replica], &inner).log_probs,
                &inner,
            ); // [2n]
            let reference_scores = Tensor::<B, 1>::from_inner(reference_scores);
            // One policy pass over the chosen and rejected rows together.
            let sequences = &batch.sequences;
            let accumulator = &mut accumulators[replica];
            let output =
                accumulate_backward(on, sequences, settings.activations, accumulator, |hidden| {
                    let scores = hidden_scores(on, sequences, hidden).log_probs; // [2n, len]
                    let policy_scores = sequence_log_probs(scores, sequences); // [2n]
                    let output = config.pair_loss(policy_scores, reference_scores, sequences);
                    // Each micro-batch's share of the step's mean over pairs, as SFT
                    // does over tokens.
                    (output.loss.clone() / total_pairs.max(1) as f64, output)
                });
            kept.push([
                readback.keep(output.loss.inner()),
                readback.keep(output.chosen_rewards.inner()),
                readback.keep(output.rejected_rewards.inner()),
            ]);
        }
        let mut grads = replicas.gather(&model, accumulators);
        let grad_norm = clip_global_norm::<B, _>(&model, &mut grads, settings.max_grad_norm);
        model = optimizer.step(settings.learning_rate, model, grads);
        replicas.sync(&model);
        let kept_norm = grad_norm.map(|norm| readback.keep(norm));
        let values = readback.read();
        let mut tally = PreferenceTally::default();
        for [loss, chosen, rejected] in kept {
            tally.add_values(
                values.scalar(loss),
                &values.get(chosen),
                &values.get(rejected),
            );
        }
        let grad_norm = kept_norm.map_or(0.0, |norm| values.scalar(norm));
        let stats = DpoStepStats {
            scores: tally.scores(),
            pairs: total_pairs,
            positions: micro_batches.iter().map(|b| b.sequences.positions).sum(),
            grad_norm,
        };
        (model, stats)
    }
}
/// The same batch on the backend without gradients, for the reference's pass.
fn inner_batch<B: AutodiffBackend>(batch: &Batch<B>) -> Batch<B::InnerBackend> {
    Batch {
        inputs: batch.inputs.clone().inner(),
        targets: batch.targets.clone().inner(),
        weights: batch.weights.clone().inner(),
        trained_tokens: batch.trained_tokens,
        positions: batch.positions,
        packed: batch.packed.clone(),
    }
}
