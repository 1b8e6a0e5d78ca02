//! A micro-batch as tensors, the form every objective's forward pass takes: SFT's
//! conversations, and DPO's chosen and rejected replies as rows of one batch.

use burn::prelude::*;

use super::tokenized::TokenizedSample;

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
