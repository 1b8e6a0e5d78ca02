//! The KV cache generation decodes against: per layer one preallocated buffer for a
//! fixed number of slots (one generation each), written in place a position at a
//! time. A new token costs the write of its own keys and values, never a copy of
//! what is cached; the buffers grow (by doubling) only when a generation could run
//! past them. Each layer's buffers live on that layer's device (see
//! [`super::placement`]).

use burn::prelude::*;
use burn::tensor::IndexingUpdateOp;

use super::attention::LayerCache;
use super::transformer::{CausalLm, KvCache};
use crate::backend::on_cpu_backend;

/// Keys and values of up to `slots` generations: per layer `[slots, kv_heads,
/// capacity, head_dim]` in the model's compute dtype (after RoPE, heads not repeated,
/// as [`LayerCache`]), and the length of each slot.
///
/// Every position at or past a slot's length holds zeros: new buffers start so,
/// [`Self::release`] zeroes what a generation wrote, and on CUDA a token's keys are
/// written by adding them to those zeros (burn's one-kernel scatter into many rows,
/// `select_assign`, only adds).
pub struct KvSlots<B: Backend> {
    /// `None` before the first [`Self::reserve`], and while a layer's buffers are out
    /// for an operation: a panic then leaves it `None` (see [`Self::is_intact`]).
    layers: Vec<Option<LayerCache<B>>>,
    lens: Vec<usize>,
    capacity: usize,
    max_capacity: usize,
    num_layers: usize,
    kv_heads: usize,
    head_dim: usize,
    dtype: burn::tensor::DType,
    /// Each layer's device.
    devices: Vec<B::Device>,
}

impl<B: Backend> KvSlots<B> {
    /// Room for `slots` generations of `model`, allocated by the first [`Self::reserve`];
    /// never grown past `max_capacity` positions (the context length) unless a
    /// generation needs it.
    pub fn new(model: &CausalLm<B>, slots: usize, max_capacity: usize) -> Self {
        let attn = &model.layers[0].self_attn;
        Self {
            layers: Vec::new(),
            lens: vec![0; slots],
            capacity: 0,
            max_capacity,
            num_layers: model.layers.len(),
            kv_heads: attn.num_kv_heads,
            head_dim: attn.head_dim,
            dtype: model.compute,
            devices: model.layers.iter().map(|layer| layer.device()).collect(),
        }
    }

    pub fn slots(&self) -> usize {
        self.lens.len()
    }

    /// Positions each slot has room for.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Positions cached in `slot`.
    pub fn len(&self, slot: usize) -> usize {
        self.lens[slot]
    }

    /// Bytes the buffers take: 2 (keys, values) x layers x slots x kv heads x capacity
    /// x head dim x the dtype's size.
    pub fn bytes(&self) -> usize {
        2 * self.num_layers
            * self.slots()
            * self.kv_heads
            * self.capacity
            * self.head_dim
            * self.dtype.size()
    }

    /// Bytes one cached position takes in every layer (keys and values): what a token
    /// of context costs.
    pub fn bytes_per_position(&self) -> usize {
        position_bytes(self.num_layers, self.kv_heads, self.head_dim, self.dtype)
    }

    /// False when an operation on the buffers panicked half way: the caches are lost.
    pub fn is_intact(&self) -> bool {
        self.layers.iter().all(Option::is_some)
    }

    /// Makes room for `positions` in every slot: the capacity doubles (up to the
    /// maximum, or to `positions` when that is more) and what is cached moves over.
    pub fn reserve(&mut self, positions: usize) {
        if positions <= self.capacity {
            return;
        }
        let grown = (self.capacity * 2).min(self.max_capacity).max(positions);
        let shape = [self.slots(), self.kv_heads, grown, self.head_dim];
        let dtype = self.dtype;
        let zeros = |device: &B::Device| Tensor::<B, 4>::zeros(shape, (device, dtype));
        if self.layers.is_empty() {
            self.layers = self
                .devices
                .iter()
                .map(|device| {
                    Some(LayerCache {
                        keys: zeros(device),
                        values: zeros(device),
                    })
                })
                .collect();
        } else {
            let old = [
                0..self.slots(),
                0..self.kv_heads,
                0..self.capacity,
                0..self.head_dim,
            ];
            for layer in 0..self.num_layers {
                let cache = self.take(layer);
                let device = &self.devices[layer];
                let keys = zeros(device).slice_assign(old.clone(), cache.keys);
                let values = zeros(device).slice_assign(old.clone(), cache.values);
                self.layers[layer] = Some(LayerCache { keys, values });
            }
        }
        self.capacity = grown;
    }

    /// Puts a prompt's keys and values (`forward_hidden`'s cache of one sequence) into
    /// the empty `slot`; [`Self::reserve`] must have made room for them.
    pub fn fill(&mut self, slot: usize, prompt: KvCache<B>) {
        assert_eq!(self.lens[slot], 0, "slot {slot} is in use");
        let len = prompt.len();
        assert!(len <= self.capacity, "reserve {len} positions first");
        for (layer, cached) in prompt.into_layers().into_iter().enumerate() {
            let at = [slot..slot + 1, 0..self.kv_heads, 0..len, 0..self.head_dim];
            let cache = self.take(layer);
            let keys = cache.keys.slice_assign(at.clone(), cached.keys); // [1, kv, len, d] in
            let values = cache.values.slice_assign(at, cached.values);
            self.layers[layer] = Some(LayerCache { keys, values });
        }
        self.lens[slot] = len;
    }

    /// Empties `slot` for the next generation: zeroes the positions it wrote.
    pub fn release(&mut self, slot: usize) {
        let len = std::mem::take(&mut self.lens[slot]);
        if len == 0 {
            return;
        }
        let at = [slot..slot + 1, 0..self.kv_heads, 0..len, 0..self.head_dim];
        for layer in 0..self.num_layers {
            let cache = self.take(layer);
            let keys = cache.keys.slice_fill(at.clone(), 0.0);
            let values = cache.values.slice_fill(at.clone(), 0.0);
            self.layers[layer] = Some(LayerCache { keys, values });
        }
    }

    /// Where one decoding step writes: each row's slot and position (its slot's length),
    /// for the layers on `device`.
    pub(crate) fn writes(&self, slots: &[usize], device: &B::Device) -> Writes<B> {
        let at: Vec<(usize, usize)> = slots.iter().map(|&s| (s, self.lens[s])).collect();
        // On the CPU a write per row is a copy of that row (Flex's select_assign copies
        // the whole buffer); on CUDA one scatter for all rows saves a kernel launch
        // per row and layer.
        let flat = (!on_cpu_backend::<B>()).then(|| self.flat_rows(&at, device));
        Writes { at, flat }
    }

    /// The rows of the buffers seen as `[slots * kv_heads * capacity, head_dim]` that
    /// the new keys `[rows, kv_heads, 1, head_dim]` go to, row-major like them.
    fn flat_rows(&self, at: &[(usize, usize)], device: &B::Device) -> Tensor<B, 1, Int> {
        let (kv, cap) = (self.kv_heads, self.capacity);
        let rows: Vec<i64> = at
            .iter()
            .flat_map(|&(slot, pos)| (0..kv).map(move |h| ((slot * kv + h) * cap + pos) as i64))
            .collect();
        let n = rows.len();
        Tensor::from_data(TensorData::new(rows, [n]), device)
    }

    /// Writes one new position per row into `layer`: `keys` and `values` `[rows,
    /// kv_heads, 1, head_dim]` on the layer's device (as `writes`), row `i` at
    /// `writes.at[i]`.
    pub(crate) fn write(
        &mut self,
        layer: usize,
        writes: &Writes<B>,
        keys: Tensor<B, 4>,
        values: Tensor<B, 4>,
    ) {
        let cache = self.take(layer);
        let (kv, d) = (self.kv_heads, self.head_dim);
        let (new_keys, new_values) = match &writes.flat {
            Some(rows) => {
                let shape = [self.slots(), kv, self.capacity, d];
                let flat = [self.slots() * kv * self.capacity, d];
                let n = writes.at.len() * kv;
                // Adding to the zeros there (see the type's doc): an assignment.
                let scatter = |buffer: Tensor<B, 4>, new: Tensor<B, 4>| {
                    buffer
                        .reshape(flat)
                        .select_assign(0, rows.clone(), new.reshape([n, d]), IndexingUpdateOp::Add)
                        .reshape(shape)
                };
                (scatter(cache.keys, keys), scatter(cache.values, values))
            }
            None => {
                let (mut k_all, mut v_all) = (cache.keys, cache.values);
                for (row, &(slot, pos)) in writes.at.iter().enumerate() {
                    let at = [slot..slot + 1, 0..kv, pos..pos + 1, 0..d];
                    k_all = k_all.slice_assign(at.clone(), keys.clone().narrow(0, row, 1));
                    v_all = v_all.slice_assign(at, values.clone().narrow(0, row, 1));
                }
                (k_all, v_all)
            }
        };
        self.layers[layer] = Some(LayerCache {
            keys: new_keys,
            values: new_values,
        });
    }

    /// Layer `layer`'s keys and values of slots `0..span`, positions `0..seen`:
    /// `[span, kv_heads, seen, head_dim]` views, nothing copied.
    pub(crate) fn view(&self, layer: usize, span: usize, seen: usize) -> LayerCache<B> {
        let cache = self.layers[layer].as_ref().expect("the cache is intact");
        let part = |t: &Tensor<B, 4>| t.clone().narrow(0, 0, span).narrow(2, 0, seen);
        LayerCache {
            keys: part(&cache.keys),
            values: part(&cache.values),
        }
    }

    /// After a step wrote every layer: each row's slot is one position longer.
    pub(crate) fn advance(&mut self, writes: &Writes<B>) {
        for &(slot, _) in &writes.at {
            self.lens[slot] += 1;
        }
    }

    /// A layer's buffers, owned, so the in-place writes above find them unshared.
    fn take(&mut self, layer: usize) -> LayerCache<B> {
        self.layers[layer].take().expect("the cache is intact")
    }
}

/// Bytes one token of context takes in a KV cache: keys and values of every layer's
/// key/value heads, in `dtype`.
pub fn position_bytes(
    layers: usize,
    kv_heads: usize,
    head_dim: usize,
    dtype: burn::tensor::DType,
) -> usize {
    2 * layers * kv_heads * head_dim * dtype.size()
}

/// Where a decoding step's rows write their keys and values.
pub(crate) struct Writes<B: Backend> {
    /// `(slot, position)` per row.
    pub at: Vec<(usize, usize)>,
    /// The same as rows of the flattened buffers, when written in one scatter.
    flat: Option<Tensor<B, 1, Int>>,
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use burn::tensor::DType;

    use super::*;
    use crate::backend::CpuBackend;
    use crate::llm::load_model;

    fn model() -> CausalLm<CpuBackend> {
        let dir =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/reference/qwen2-tiny");
        load_model::<CpuBackend>(&dir, &Default::default(), DType::F32)
            .unwrap()
            .1
    }

    fn values(t: Tensor<CpuBackend, 4>) -> Vec<f32> {
        t.into_data().to_vec::<f32>().unwrap()
    }

    /// A tensor `[rows, kv, 1, d]` whose values say which row they came from.
    fn marked(rows: usize, kv: usize, d: usize, base: f32) -> Tensor<CpuBackend, 4> {
        let data: Vec<f32> = (0..rows * kv * d).map(|i| base + i as f32).collect();
        Tensor::from_data(TensorData::new(data, [rows, kv, 1, d]), &Default::default())
    }

    /// Both ways of writing a step (a write per row, one scatter) put each row's keys
    /// at its slot's length and nothing anywhere else; release zeroes the slot again.
    #[test]
    fn writes_land_at_each_slots_length_and_release_zeroes_them() {
        let model = model();
        let (kv, d) = (2, 16);
        let mut slots = KvSlots::new(&model, 3, 64);
        slots.reserve(5);
        assert_eq!(slots.capacity(), 5);
        slots.lens = vec![2, 0, 4];
        for scatter in [false, true] {
            let device = Default::default();
            let mut writes = slots.writes(&[2, 0], &device);
            if scatter {
                writes.flat = Some(slots.flat_rows(&writes.at, &device));
            } else {
                writes.flat = None;
            }
            slots.write(1, &writes, marked(2, kv, d, 1.0), marked(2, kv, d, 100.0));
            let keys = values(slots.view(1, 3, 5).keys); // [3, kv, 5, d]
            let at = |slot: usize, h: usize, pos: usize| {
                let start = ((slot * kv + h) * 5 + pos) * d;
                keys[start..start + d].to_vec()
            };
            // Row 0 went to slot 2, position 4; row 1 to slot 0, position 2.
            for h in 0..kv {
                let row0: Vec<f32> = (0..d).map(|j| 1.0 + (h * d + j) as f32).collect();
                let row1: Vec<f32> = (0..d).map(|j| 1.0 + (kv * d + h * d + j) as f32).collect();
                assert_eq!(at(2, h, 4), row0, "scatter {scatter}");
                assert_eq!(at(0, h, 2), row1, "scatter {scatter}");
            }
            let written: usize = keys.iter().filter(|v| **v != 0.0).count();
            assert_eq!(
                written,
                2 * kv * d,
                "scatter {scatter}: nothing else written"
            );
            slots.lens = vec![3, 0, 5];
            slots.release(0);
            slots.release(2);
            assert!(values(slots.view(1, 3, 5).keys).iter().all(|v| *v == 0.0));
            slots.lens = vec![2, 0, 4];
        }
    }

    /// Growing keeps what is cached, doubles (within the maximum) unless more is
    /// needed, and counts its bytes.
    #[test]
    fn growth_doubles_within_the_maximum_and_keeps_the_cache() {
        let model = model();
        let mut slots = KvSlots::new(&model, 2, 48);
        slots.reserve(10);
        let writes = slots.writes(&[1], &Default::default());
        slots.write(0, &writes, marked(1, 2, 16, 1.0), marked(1, 2, 16, 1.0));
        slots.advance(&writes);
        slots.reserve(11);
        assert_eq!(slots.capacity(), 20);
        slots.reserve(30);
        assert_eq!(slots.capacity(), 40);
        slots.reserve(45);
        assert_eq!(slots.capacity(), 48, "the maximum caps the doubling");
        slots.reserve(60);
        assert_eq!(slots.capacity(), 60, "a generation that needs more gets it");
        let keys = values(slots.view(0, 2, 1).keys); // [2, kv, 1, d]
        assert_eq!(keys[2 * 16], 1.0, "slot 1, head 0, position 0 kept");
        assert_eq!(slots.len(1), 1);
        // qwen2-tiny: 2 layers, 2 kv heads of 16, f32: 2 * 2 * 2 * 16 * 4 bytes a position.
        assert_eq!(slots.bytes_per_position(), 512);
        assert_eq!(slots.bytes(), 512 * 2 * 60);
    }

    /// The figures docs/serving.md gives, in bf16: Qwen2.5-7B (28 layers, 4 KV heads
    /// of 128) and Qwen2.5-72B (80 layers, 8 KV heads of 128).
    #[test]
    fn a_token_of_context_at_7b_and_72b() {
        assert_eq!(position_bytes(28, 4, 128, DType::BF16), 57_344); // 56 KiB
        assert_eq!(position_bytes(80, 8, 128, DType::BF16), 327_680); // 320 KiB
    }
}
