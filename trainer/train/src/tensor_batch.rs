//! A micro-batch as tensors, the form every objective's forward pass takes: SFT's
//! conversations, one per row or packed several to a row, and DPO's chosen and
//! rejected replies as rows of one batch.

use burn::prelude::*;

use super::tokenized::TokenizedSample;
use anneal_model::llm::packing::{Layout, PackedRows};

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
    /// Where the samples sit when several share a row; `None`: one per row.
    pub packed: Option<PackedRows>,
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
            packed: None,
        }
    }

    /// `rows` of samples side by side (see [`crate::packing::pack_rows`]), each row
    /// padded to the longest; each sample predicts only its own next tokens, its first
    /// position 0, its attention blind to the rest of the row.
    pub fn packed(rows: &[Vec<&TokenizedSample>], device: &B::Device) -> Self {
        let lengths: Vec<Vec<usize>> = (rows.iter())
            .map(|row| row.iter().map(|s| s.ids.len() - 1).collect())
            .collect();
        let len = lengths.iter().map(|l| l.iter().sum()).max().unwrap_or(0);
        let mut inputs = vec![0i64; rows.len() * len];
        let mut targets = vec![0i64; rows.len() * len];
        let mut weights = vec![0f32; rows.len() * len];
        let mut trained_tokens = 0;
        for (r, row) in rows.iter().enumerate() {
            let mut at = r * len;
            for sample in row {
                for t in 0..sample.ids.len() - 1 {
                    inputs[at] = i64::from(sample.ids[t]);
                    targets[at] = i64::from(sample.ids[t + 1]);
                    if sample.mask[t + 1] {
                        weights[at] = 1.0;
                        trained_tokens += 1;
                    }
                    at += 1;
                }
            }
        }
        let shape = [rows.len(), len];
        Self {
            inputs: Tensor::from_data(TensorData::new(inputs, shape), device),
            targets: Tensor::from_data(TensorData::new(targets, shape), device),
            weights: Tensor::from_data(TensorData::new(weights, shape), device),
            trained_tokens,
            positions: rows.len() * len,
            packed: Some(PackedRows::new(&lengths, len)),
        }
    }

    /// How the forward pass reads the rows.
    pub fn layout(&self) -> Layout<'_> {
        match &self.packed {
            Some(packed) => Layout::Packed(packed),
            None => Layout::OneSequencePerRow,
        }
    }
}
