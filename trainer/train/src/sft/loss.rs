//! The SFT objective: next-token cross-entropy on trained (assistant) tokens only,
//! and the token accuracy reported beside it.

use burn::prelude::*;

use crate::chunked_loss::TargetScores;
use crate::tensor_batch::Batch;

/// Summed negative log-likelihood of the trained targets (a scalar tensor, so a
/// step can divide by its own token count) and the number predicted right, from the
/// batch's per-position scores ([`crate::chunked_loss::batch_scores`]).
pub fn masked_nll<B: Backend>(
    scores: TargetScores<B>,
    batch: &Batch<B>,
) -> (Tensor<B, 1>, Tensor<B, 1>) {
    let nll = scores.log_probs.neg().mul(batch.weights.clone()).sum(); // [1]
    let correct = scores.hits.mul(batch.weights.clone()).sum(); // [1]
    (nll, correct)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunked_loss::TargetScores;
    use crate::tokenized::TokenizedSample;
    use anneal_model::backend::CpuBackend;

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
        let scores = TargetScores::from_logits(logits, batch.targets.clone());
        let (nll, correct) = masked_nll(scores, &batch);
        let nll = nll.into_scalar();
        // Position (0,1) costs ~0; position (1,0) costs ln 4; the masked ones cost nothing.
        assert!((nll - 4f32.ln()).abs() < 1e-4, "{nll}");
        // (0,1) is right; (1,0) picks token 0 on a tie, which is its target.
        assert_eq!(correct.into_scalar(), 2.0);
    }
}
