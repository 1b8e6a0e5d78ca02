//! The SFT objective: next-token cross-entropy on trained (assistant) tokens only,
//! and the token accuracy reported beside it.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

use super::data::TokenizedSample;

/// A micro-batch as tensors: `inputs` predict `targets`, one position ahead, and
/// `weights` is 1 where the target is a trained token (0 on padding and prompt).
pub struct Batch<B: Backend> {
    pub inputs: Tensor<B, 2, Int>,
    pub targets: Tensor<B, 2, Int>,
    pub weights: Tensor<B, 2>,
    /// Trained target tokens in the batch.
    pub trained_tokens: usize,
    /// Input positions, padding included: the work the forward pass does.
    pub positions: usize,
}

impl<B: Backend> Batch<B> {
    /// Right-pads `samples` to the longest; padding predicts nothing.
    pub fn new(samples: &[&TokenizedSample], device: &B::Device) -> Self {
        let len = samples.iter().map(|s| s.ids.len() - 1).max().unwrap_or(0);
        let rows = samples.len();
        let mut inputs = vec![0i64; rows * len];
        let mut targets = vec![0i64; rows * len];
        let mut weights = vec![0f32; rows * len];
        let mut trained_tokens = 0;
        for (r, sample) in samples.iter().enumerate() {
            for t in 0..sample.ids.len() - 1 {
                inputs[r * len + t] = i64::from(sample.ids[t]);
                targets[r * len + t] = i64::from(sample.ids[t + 1]);
                if sample.mask[t + 1] {
                    weights[r * len + t] = 1.0;
                    trained_tokens += 1;
                }
            }
        }
        Self {
            inputs: Tensor::from_data(TensorData::new(inputs, [rows, len]), device),
            targets: Tensor::from_data(TensorData::new(targets, [rows, len]), device),
            weights: Tensor::from_data(TensorData::new(weights, [rows, len]), device),
            trained_tokens,
            positions: rows * len,
        }
    }
}

/// Summed negative log-likelihood of the trained targets (a scalar tensor, so a
/// step can divide by its own token count) and the number predicted right.
pub fn masked_nll<B: Backend>(
    logits: Tensor<B, 3>,
    batch: &Batch<B>,
) -> (Tensor<B, 1>, Tensor<B, 1>) {
    let [rows, len, _] = logits.dims();
    let predicted = logits.clone().argmax(2); // [rows, len, 1]
    let picked = target_log_probs(logits, batch); // [rows, len]
    let nll = picked.neg().mul(batch.weights.clone()).sum();
    let correct = predicted
        .equal(batch.targets.clone().reshape([rows, len, 1]))
        .float()
        .reshape([rows, len])
        .mul(batch.weights.clone())
        .sum();
    (nll, correct)
}

/// `log p(target)` at every position, `[rows, len]`, padding and prompt included:
/// callers weight it with `batch.weights`. SFT sums it over the batch; DPO per row.
pub fn target_log_probs<B: Backend>(logits: Tensor<B, 3>, batch: &Batch<B>) -> Tensor<B, 2> {
    let [rows, len, _] = logits.dims();
    let targets = batch.targets.clone().reshape([rows, len, 1]);
    let log_probs = log_softmax(logits, 2); // [rows, len, vocab]
    log_probs.gather(2, targets).reshape([rows, len])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::CpuBackend;

    type B = CpuBackend;

    #[test]
    fn only_trained_targets_count() {
        let sample = TokenizedSample {
            line: 1,
            ids: vec![0, 1, 2],
            mask: vec![false, false, true],
        };
        let short = TokenizedSample {
            line: 2,
            ids: vec![2, 0],
            mask: vec![false, true],
        };
        let batch = Batch::<B>::new(&[&sample, &short], &Default::default());
        assert_eq!(batch.trained_tokens, 2);
        assert_eq!(batch.positions, 4);
        assert_eq!(
            batch.weights.to_data().to_vec::<f32>().unwrap(),
            vec![0.0, 1.0, 1.0, 0.0]
        );
        assert_eq!(
            batch
                .targets
                .to_data()
                .convert::<i64>()
                .to_vec::<i64>()
                .unwrap(),
            vec![1, 2, 0, 0]
        );

        // Uniform logits over 4 tokens everywhere except row 0 position 1, which is sure of token 2.
        let mut values = vec![0f32; 2 * 2 * 4];
        values[4 + 2] = 100.0;
        let logits =
            Tensor::<B, 3>::from_data(TensorData::new(values, [2, 2, 4]), &Default::default());
        let (nll, correct) = masked_nll(logits, &batch);
        let nll = nll.into_scalar();
        // Position (0,1) costs ~0; position (1,0) costs ln 4; the masked ones cost nothing.
        assert!((nll - 4f32.ln()).abs() < 1e-4, "{nll}");
        // (0,1) is right; (1,0) picks token 0 on a tie, which is its target.
        assert_eq!(correct.into_scalar(), 2.0);
    }
}
