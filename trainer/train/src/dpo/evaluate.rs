//! DPO validation: loss and rewards of the current model against the reference on
//! the held-out pairs, without gradients or dropout.

use burn::prelude::*;

use super::data::PreferencePair;
use super::loss::{DpoConfig, PairBatch, PreferenceScores, PreferenceTally, sequence_log_probs};
use crate::chunked_loss::batch_scores;
use anneal_model::llm::CausalLm;

/// Scores `policy` against `reference` (both inference models) on `pairs`,
/// `batch_size` pairs a forward pass.
pub fn evaluate_pairs<B: Backend>(
    policy: &CausalLm<B>,
    reference: &CausalLm<B>,
    config: &DpoConfig,
    pairs: &[PreferencePair],
    batch_size: usize,
) -> Option<PreferenceScores> {
    if pairs.is_empty() {
        return None;
    }
    let device = policy.embed_tokens.weight.device();
    let mut tally = PreferenceTally::default();
    for chunk in pairs.chunks(batch_size.max(1)) {
        let chunk: Vec<&PreferencePair> = chunk.iter().collect();
        let batch = PairBatch::<B>::new(&chunk, &device);
        let score = |model: &CausalLm<B>| {
            sequence_log_probs(
                batch_scores(model, &batch.sequences).log_probs,
                &batch.sequences,
            ) // [2n]
        };
        let (policy_scores, reference_scores) = (score(policy), score(reference));
        let output = config.pair_loss(policy_scores, reference_scores, &batch.sequences);
        tally.add(&output);
    }
    Some(tally.scores())
}
