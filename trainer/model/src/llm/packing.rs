//! Sequence packing: several samples side by side in one row of a batch, each seeing
//! only itself. A sample's RoPE positions restart at 0 where it starts, and attention
//! runs on the samples taken apart again: each layer gathers its queries, keys and
//! values into one row per sample (padded to the longest sample, not the longest
//! row), attends causally there, and scatters the result back. So a packed row
//! computes for each sample what a row of its own would, the projections and the MLP
//! (most of the work) run on the packed rows without their padding, and attention
//! costs what it costs unpacked: no `[T, T]` mask, no scores across samples.
//!
//! Memory: the gathered queries, keys and values and the attention output are one
//! more copy of those four per layer while it runs (`samples · longest · hidden` each),
//! freed with the layer.

use burn::prelude::*;

use super::blocked_attention::{QueryBlock, query_blocks};
use super::rope::{Rope, RopeTables};

/// The samples of each row of a `[rows, len]` batch, by their lengths in positions,
/// left to right; what is left of a row after its samples is padding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackedRows {
    rows: usize,
    len: usize,
    /// Per token, row-major: its position within its sample.
    positions: Vec<usize>,
    /// Samples in all rows, and the longest's positions.
    samples: usize,
    longest: usize,
    /// Per slot of the `[samples, longest]` layout, row-major: the packed token it
    /// takes (padding slots take token 0: causal attention hides them).
    gather: Vec<i64>,
    /// Per packed token: its slot (padding tokens take slot 0: their output trains
    /// nothing).
    scatter: Vec<i64>,
}

impl PackedRows {
    /// Rows of samples of the given lengths, each row padded to `len`. Panics when a
    /// row's samples are longer than `len` together: the packer never makes one.
    pub fn new(samples_per_row: &[Vec<usize>], len: usize) -> Self {
        let rows = samples_per_row.len();
        let samples = samples_per_row.iter().map(Vec::len).sum();
        let longest = samples_per_row.iter().flatten().copied().max().unwrap_or(0);
        let mut packed = Self {
            rows,
            len,
            positions: vec![0; rows * len],
            samples,
            longest,
            gather: vec![0; samples * longest],
            scatter: vec![0; rows * len],
        };
        let mut sample = 0;
        for (row, lengths) in samples_per_row.iter().enumerate() {
            let used: usize = lengths.iter().sum();
            assert!(used <= len, "a packed row of {used} positions in {len}");
            let mut token = row * len;
            for &length in lengths {
                for position in 0..length {
                    let slot = sample * longest + position;
                    packed.positions[token] = position;
                    packed.gather[slot] = token as i64;
                    packed.scatter[token] = slot as i64;
                    token += 1;
                }
                sample += 1;
            }
        }
        packed
    }

    /// Each token's position within its sample, row-major.
    pub fn positions(&self) -> &[usize] {
        &self.positions
    }

    /// The rotation tables of every token's own position, one table row per batch row.
    pub fn rope_tables<B: Backend>(&self, rope: &Rope, device: &B::Device) -> RopeTables<B> {
        rope.tables_at::<B>(self.positions.iter().copied(), device)
            .per_batch_row(self.rows)
    }

    /// The index tensors and causal blocks that take the rows apart for attention.
    pub fn unpacking<B: Backend>(&self, device: &B::Device) -> Unpacking<B> {
        let index = |values: &[i64]| {
            Tensor::<B, 1, Int>::from_data(TensorData::new(values.to_vec(), [values.len()]), device)
        };
        Unpacking {
            gather: index(&self.gather),
            scatter: index(&self.scatter),
            samples: self.samples,
            longest: self.longest,
        }
    }
}

/// Packed rows taken apart into one row per sample and put back (see the module's
/// first lines): built once per forward pass, shared by its layers.
#[derive(Clone, Debug)]
pub struct Unpacking<B: Backend> {
    gather: Tensor<B, 1, Int>,
    scatter: Tensor<B, 1, Int>,
    samples: usize,
    longest: usize,
}

impl<B: Backend> Unpacking<B> {
    /// `[rows, len, heads, dim]` packed -> `[samples, longest, heads, dim]`.
    pub fn samples_apart(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [rows, len, heads, dim] = x.dims();
        x.reshape([rows * len, heads * dim])
            .select(0, self.gather.clone())
            .reshape([self.samples, self.longest, heads, dim])
    }

    /// `[samples, longest, width]` -> `[rows, len, width]` packed, for a batch of
    /// `[rows, len]`.
    pub fn back_in_rows(&self, x: Tensor<B, 3>, rows: usize, len: usize) -> Tensor<B, 3> {
        let [samples, longest, width] = x.dims();
        x.reshape([samples * longest, width])
            .select(0, self.scatter.clone())
            .reshape([rows, len, width])
    }

    /// Positions of the longest sample: the length attention runs at.
    pub fn longest(&self) -> usize {
        self.longest
    }
}

/// What attention needs of a forward pass's layout, built once per device and shared
/// by its layers: the causal query blocks of the rows it attends over, and for packed
/// rows how to take them apart into samples first.
#[derive(Clone, Debug)]
pub struct AttentionTables<B: Backend> {
    pub blocks: Vec<QueryBlock<B>>,
    pub unpacking: Option<Unpacking<B>>,
}

impl<B: Backend> AttentionTables<B> {
    /// One sequence per row, `seq` queries after `start` cached keys.
    pub fn causal(seq: usize, start: usize, device: &B::Device) -> Self {
        Self {
            blocks: query_blocks::<B>(seq, start, device),
            unpacking: None,
        }
    }
}

/// How a batch's tokens are laid out in its rows.
#[derive(Clone, Copy, Debug)]
pub enum Layout<'a> {
    /// One sequence per row from position 0 (or after a cache), right-padded.
    OneSequencePerRow,
    /// Several samples per row ([`PackedRows`]).
    Packed(&'a PackedRows),
}

impl Layout<'_> {
    /// The rotation tables and attention tables of `seq` positions after `start`
    /// cached ones, on `device`.
    pub fn tables<B: Backend>(
        &self,
        rope: &Rope,
        seq: usize,
        start: usize,
        device: &B::Device,
    ) -> (RopeTables<B>, AttentionTables<B>) {
        match self {
            Layout::OneSequencePerRow => (
                rope.tables::<B>(start, seq, device),
                AttentionTables::causal(seq, start, device),
            ),
            Layout::Packed(packed) => {
                assert_eq!((packed.len, start), (seq, 0), "packed rows have no cache");
                let tables = AttentionTables {
                    blocks: query_blocks::<B>(packed.longest, 0, device),
                    unpacking: Some(packed.unpacking(device)),
                };
                (packed.rope_tables(rope, device), tables)
            }
        }
    }
}

#[cfg(test)]
mod tests;
