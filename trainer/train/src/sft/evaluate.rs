//! Validation: the masked loss and token accuracy of the current model on the
//! held-out samples, without gradients or dropout.

use burn::prelude::*;

use super::loss::masked_nll;
use crate::chunked_loss::batch_scores;
use crate::tensor_batch::Batch;
use crate::tokenized::TokenizedSample;
use anneal_model::llm::CausalLm;

/// Mean loss per trained token and the share of them predicted right.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Evaluation {
    pub loss: f64,
    pub token_accuracy: f64,
    pub tokens: usize,
}

/// Evaluates `model` (an inference model, e.g. `training_model.valid()`) on
/// `samples` in file order, `batch_size` at a time.
pub fn evaluate<B: Backend>(
    model: &CausalLm<B>,
    samples: &[TokenizedSample],
    batch_size: usize,
) -> Option<Evaluation> {
    if samples.is_empty() {
        return None;
    }
    let device = model.embed_tokens.weight.device();
    let (mut nll, mut correct, mut tokens) = (0.0, 0.0, 0);
    // Sorted by length so each batch pads little; the sums do not depend on order.
    let mut by_length: Vec<&TokenizedSample> = samples.iter().collect();
    by_length.sort_by_key(|s| s.ids.len());
    for chunk in by_length.chunks(batch_size.max(1)) {
        let batch = Batch::<B>::new(chunk, &device);
        let (batch_nll, batch_correct) = masked_nll(batch_scores(model, &batch), &batch);
        nll += f64::from(batch_nll.into_scalar().elem::<f32>());
        correct += f64::from(batch_correct.into_scalar().elem::<f32>());
        tokens += batch.trained_tokens;
    }
    Some(Evaluation {
        loss: nll / tokens.max(1) as f64,
        token_accuracy: correct / tokens.max(1) as f64,
        tokens,
    })
}
