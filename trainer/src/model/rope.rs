//! Rotary position embedding in the "rotate half" layout Hugging Face Qwen2 and
//! Llama checkpoints are trained with (burn's `RotaryEncoding` rotates interleaved
//! pairs, which would need the q/k weights permuted), with Llama 3.1's frequency
//! scaling.

use std::f32::consts::PI;

use burn::prelude::*;

use super::config::{Llama3RopeScaling, ModelConfig};

/// The inverse frequencies of one head, `head_dim / 2` of them.
#[derive(Clone, Debug)]
pub struct Rope {
    inv_freq: Vec<f32>,
}

impl Rope {
    pub fn new(config: &ModelConfig) -> Self {
        // Computed in f32 as transformers does, so the tables match to the last bit
        // rather than to the rounding of an f64 computation.
        let dim = config.head_dim;
        let base = config.rope_theta as f32;
        let mut inv_freq: Vec<f32> = (0..dim)
            .step_by(2)
            .map(|i| 1.0 / base.powf(i as f32 / dim as f32))
            .collect();
        if let Some(scaling) = &config.rope_scaling {
            inv_freq = llama3_scaled(&inv_freq, scaling);
        }
        Self { inv_freq }
    }

    /// `cos` and `sin` tables for positions `start..start + len`, each `[len, head_dim]`.
    pub fn tables<B: Backend>(
        &self,
        start: usize,
        len: usize,
        device: &B::Device,
    ) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let half = self.inv_freq.len();
        let mut cos = Vec::with_capacity(len * half * 2);
        let mut sin = Vec::with_capacity(len * half * 2);
        for position in start..start + len {
            let angles: Vec<f32> = self.inv_freq.iter().map(|f| f * position as f32).collect();
            // Both halves of a head use the same angles: emb = cat(freqs, freqs).
            for _ in 0..2 {
                cos.extend(angles.iter().map(|a| a.cos()));
                sin.extend(angles.iter().map(|a| a.sin()));
            }
        }
        let shape = [len, half * 2];
        (
            Tensor::from_data(TensorData::new(cos, shape), device),
            Tensor::from_data(TensorData::new(sin, shape), device),
        )
    }

    /// Rotates `x` of shape `[batch, heads, seq, head_dim]` by the tables of its positions.
    pub fn apply<B: Backend>(
        x: Tensor<B, 4>,
        cos: &Tensor<B, 2>,
        sin: &Tensor<B, 2>,
    ) -> Tensor<B, 4> {
        let [_, _, _, dim] = x.dims();
        let cos = cos.clone().unsqueeze::<4>(); // [1, 1, seq, dim]
        let sin = sin.clone().unsqueeze::<4>();
        // rotate_half(x) = cat(-x2, x1) along the head dimension.
        let x1 = x.clone().narrow(3, 0, dim / 2);
        let x2 = x.clone().narrow(3, dim / 2, dim / 2);
        let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
        x * cos + rotated * sin
    }
}

/// Llama 3.1's scaling: long wavelengths are divided by `factor`, short ones kept,
/// and the band between them interpolated smoothly.
fn llama3_scaled(inv_freq: &[f32], s: &Llama3RopeScaling) -> Vec<f32> {
    let old_len = s.original_max_position_embeddings as f32;
    let factor = s.factor as f32;
    let (low, high) = (s.low_freq_factor as f32, s.high_freq_factor as f32);
    let low_freq_wavelen = old_len / low;
    let high_freq_wavelen = old_len / high;
    inv_freq
        .iter()
        .map(|&f| {
            let wavelen = 2.0 * PI / f;
            if wavelen < high_freq_wavelen {
                f
            } else if wavelen > low_freq_wavelen {
                f / factor
            } else {
                let smooth = (old_len / wavelen - low) / (high - low);
                (1.0 - smooth) * f / factor + smooth * f
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama3_scaling_keeps_short_divides_long_and_blends_between() {
        let scaling = Llama3RopeScaling {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192.0,
        };
        // Wavelengths 2π/f: ~6 (short), ~62832 (long), and 4096 (between 2048 and 8192).
        let f_mid = 2.0 * PI / 4096.0;
        let scaled = llama3_scaled(&[1.0, 1e-4, f_mid], &scaling);
        assert_eq!(scaled[0], 1.0);
        assert_eq!(scaled[1], 1e-4 / 8.0);
        let smooth = (8192.0 / 4096.0 - 1.0) / 3.0;
        assert!((scaled[2] - ((1.0 - smooth) * f_mid / 8.0 + smooth * f_mid)).abs() < 1e-9);
    }
}
