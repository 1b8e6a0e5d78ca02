//! Rotary position embedding in the "rotate half" layout Hugging Face Qwen2 and
//! Llama checkpoints are trained with (burn's `RotaryEncoding` rotates interleaved
//! pairs, which would need the q/k weights permuted), with Llama 3.1's frequency
//! scaling.

use std::f32::consts::PI;

use burn::prelude::*;

use super::config::{Llama3RopeScaling, ModelConfig};
use super::precision::in_f32;

/// The inverse frequencies of one head, `head_dim / 2` of them, and the head counts
/// the tables are laid out for.
#[derive(Clone, Debug)]
pub struct Rope {
    inv_freq: Vec<f32>,
    heads: usize,
    kv_heads: usize,
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
        Self {
            inv_freq,
            heads: config.num_heads,
            kv_heads: config.num_kv_heads,
        }
    }

    /// The tables for positions `start..start + len` (see [`RopeTables`]).
    pub fn tables<B: Backend>(
        &self,
        start: usize,
        len: usize,
        device: &B::Device,
    ) -> RopeTables<B> {
        self.tables_at(start..start + len, device)
    }

    /// The tables for any list of positions, one table row each: for a batch of
    /// sequences decoding one token each, every sequence at its own position (the rows
    /// then stand in the tables' sequence dimension).
    pub fn tables_at<B: Backend>(
        &self,
        positions: impl ExactSizeIterator<Item = usize>,
        device: &B::Device,
    ) -> RopeTables<B> {
        // Built on the device from the positions and the inverse frequencies: at 4,096
        // tokens of a 7B model the four tables are 134 MB, which a host-built table
        // would compute on one thread and upload every forward pass.
        let len = positions.len();
        let half = self.inv_freq.len();
        let dim = half * 2;
        let positions: Vec<f32> = positions.map(|p| p as f32).collect();
        let positions = Tensor::<B, 1>::from_data(TensorData::new(positions, [len]), device);
        let inv_freq =
            Tensor::<B, 1>::from_data(TensorData::new(self.inv_freq.clone(), [half]), device);
        // Each angle is one f32 product, as transformers computes it.
        let angles = positions.reshape([len, 1]) * inv_freq.reshape([1, half]); // [len, half]
        // One row of `dim` per position: emb = cat(freqs, freqs) for the cosines, and
        // the sines signed for rotate_half (see `HeadTables::apply`).
        let cos = Tensor::cat(vec![angles.clone().cos(), angles.clone().cos()], 1); // [len, dim]
        let sin = Tensor::cat(vec![angles.clone().sin().neg(), angles.sin()], 1); // [len, dim]
        // Attention's 1/sqrt(head_dim) rides on the query tables, so it costs no pass of its own.
        let q_scale = 1.0 / (dim as f32).sqrt();
        // Each position's row repeated once per head, so a `[batch, seq, heads, dim]`
        // tensor meets its table as one row shared by every batch row: the backend's
        // fast broadcast path, where a `[seq, dim]` table broadcast over heads would
        // be walked element by element.
        let per_head = |table: &Tensor<B, 2>, heads: usize, scale: Option<f32>| {
            let table = match scale {
                Some(scale) => table.clone().mul_scalar(scale),
                None => table.clone(),
            };
            table
                .reshape([len, 1, dim])
                .repeat_dim(1, heads) // [len, heads, dim]
                .reshape([1, len * heads * dim])
        };
        RopeTables {
            q: HeadTables {
                cos: per_head(&cos, self.heads, Some(q_scale)),
                sin: per_head(&sin, self.heads, Some(q_scale)),
            },
            k: HeadTables {
                cos: per_head(&cos, self.kv_heads, None),
                sin: per_head(&sin, self.kv_heads, None),
            },
        }
    }
}

/// The rotation of one forward pass, built once and shared by every layer.
#[derive(Clone, Debug)]
pub struct RopeTables<B: Backend> {
    /// For queries, with attention's score scale folded in.
    pub q: HeadTables<B>,
    /// For keys, which have fewer heads with grouped-query attention.
    pub k: HeadTables<B>,
}

impl<B: Backend> RopeTables<B> {
    /// Tables built for `rows * seq` positions (every batch row's, row-major) as one
    /// table per batch row: each row's tokens then rotate by positions of their own,
    /// as packed rows need ([`super::packing`]).
    pub fn per_batch_row(self, rows: usize) -> Self {
        let split = |table: HeadTables<B>| {
            let [_, all] = table.cos.dims();
            let shape = [rows, all / rows.max(1)];
            HeadTables {
                cos: table.cos.reshape(shape),
                sin: table.sin.reshape(shape),
            }
        };
        RopeTables {
            q: split(self.q),
            k: split(self.k),
        }
    }
}

/// `[1, seq * heads * head_dim]` tables (`[batch, …]` when each batch row has
/// positions of its own): the cosines, and the sines with the sign of rotate_half
/// folded in (negative on the first half of each head).
#[derive(Clone, Debug)]
pub struct HeadTables<B: Backend> {
    pub cos: Tensor<B, 2>,
    pub sin: Tensor<B, 2>,
}

impl<B: Backend> HeadTables<B> {
    /// Rotates `x` of shape `[batch, seq, heads, head_dim]` (as a projection's output
    /// reshapes to, before heads move forward) by the tables of its positions:
    /// `x * cos + rotate_half(x) * sin`, where `rotate_half(x) = cat(-x2, x1)`, here
    /// `cat(x2, x1)` times the signed sines. Computed in f32 with the f32 tables (a
    /// bf16 angle table is off by whole radians at long positions), returned in
    /// `x`'s dtype.
    pub fn apply(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        in_f32(x, |x| {
            let [batch, seq, heads, dim] = x.dims();
            let x1 = x.clone().narrow(3, 0, dim / 2);
            let x2 = x.clone().narrow(3, dim / 2, dim / 2);
            let flat = [batch, seq * heads * dim];
            let swapped = Tensor::cat(vec![x2, x1], 3).reshape(flat);
            let rotated = x.reshape(flat) * self.cos.clone() + swapped * self.sin.clone();
            rotated.reshape([batch, seq, heads, dim])
        })
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

    /// The device-built tables hold, to the bit, what the rotation means: per position
    /// and head, `cos(p·f)` twice and `(−sin, sin)(p·f)`, the query's scaled by
    /// 1/sqrt(head_dim), each angle one f32 product.
    #[test]
    fn tables_hold_each_positions_rotation_for_every_head() {
        use crate::backend::CpuBackend;
        let rope = Rope {
            inv_freq: vec![1.0, 0.1, 0.013, 1e-4],
            heads: 3,
            kv_heads: 2,
        };
        let positions = [0usize, 7, 4095, 131_071];
        let tables = rope.tables_at::<CpuBackend>(positions.into_iter(), &Default::default());
        let values = |t: &Tensor<CpuBackend, 2>| t.clone().into_data().to_vec::<f32>().unwrap();
        let (q_cos, q_sin, k_cos, k_sin) = (
            values(&tables.q.cos),
            values(&tables.q.sin),
            values(&tables.k.cos),
            values(&tables.k.sin),
        );
        let (half, dim) = (4, 8);
        let scale = 1.0 / (dim as f32).sqrt();
        for (p, &position) in positions.iter().enumerate() {
            for head in 0..3 {
                for i in 0..dim {
                    let angle = rope.inv_freq[i % half] * position as f32;
                    let sin = if i < half { -angle.sin() } else { angle.sin() };
                    let at = (p * 3 + head) * dim + i;
                    assert_eq!(
                        q_cos[at],
                        angle.cos() * scale,
                        "q cos {position} {head} {i}"
                    );
                    assert_eq!(q_sin[at], sin * scale, "q sin {position} {head} {i}");
                    if head < 2 {
                        let at = (p * 2 + head) * dim + i;
                        assert_eq!(k_cos[at], angle.cos(), "k cos {position} {head} {i}");
                        assert_eq!(k_sin[at], sin, "k sin {position} {head} {i}");
                    }
                }
            }
        }
    }
}
