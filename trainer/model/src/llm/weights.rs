//! Building a model from Hugging Face `*.safetensors`, one tensor at a time.
//!
//! Files are memory-mapped and each tensor goes from the map into a backend tensor
//! with one host copy: the map's bytes are read once and written once, already in
//! the dtype the model keeps the tensor in (no f32 step between two other dtypes),
//! on every core for a large tensor. The backend takes that buffer as it is (Flex
//! keeps it; CUDA uploads it, then it is freed), so at no point are there two full
//! copies of the weights: the peak is the model plus one tensor in transit (and the
//! pages of the map the kernel has cached, which it may drop: each tensor's pages
//! leave the process's resident set once it is converted). Matrices stay in the
//! checkpoint's `[out, in]` layout; the model uses them through a transposed view
//! (burn's matmuls take strided operands), so nothing is transposed on the host.
//! Modules are built from the loaded tensors, never initialised randomly first.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::nn::{Embedding, Linear, RmsNorm};
use burn::prelude::*;
use burn::tensor::{DType, bf16, f16};
use half::slice::HalfFloatSliceExt;
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensorError, SafeTensors};

use super::ModelError;
use super::attention::Attention;
use super::config::ModelConfig;
use super::mlp::Mlp;
use super::placement::LayerPlacement;
use super::projection::Projection;
use super::rope::Rope;
use super::transformer::{CausalLm, DecoderLayer};
use crate::backend::LayerStorage;

/// Where tensors come from, by their Hugging Face names and `[out, in]` shapes.
pub trait WeightSource {
    /// The tensor `name`, checked against `shape`, in the dtype `dtype` picks for the
    /// dtype it is stored in.
    fn tensor(
        &self,
        name: &str,
        shape: &[usize],
        dtype: &dyn Fn(DType) -> DType,
    ) -> Result<TensorData, ModelError>;
}

/// Why one tensor of the weights cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TensorError {
    #[error("missing from the safetensors files")]
    Missing,
    #[error(transparent)]
    Safetensors(#[from] SafeTensorError),
    #[error("config.json implies shape {expected:?}, {} holds {found:?}", file.display())]
    Shape {
        expected: Vec<usize>,
        file: PathBuf,
        found: Vec<usize>,
    },
    #[error("dtype {0:?} is not supported (bf16, f16, f32 are)")]
    Dtype(Dtype),
    /// A NaN or infinity among the weights: every output would be non-finite.
    #[error(
        "element {index} in {} is {value}: the checkpoint is corrupt or was saved from a diverged run",
        file.display()
    )]
    NonFinite {
        index: usize,
        value: &'static str,
        file: PathBuf,
    },
}

/// The safetensors files of a model folder: `model.safetensors`, or the shards
/// named by `model.safetensors.index.json`.
pub struct SafetensorsFiles {
    files: Vec<(PathBuf, Mmap)>,
    /// Tensor name to index in `files`.
    index: BTreeMap<String, usize>,
}

/// The weight files of a model folder: the shards `model.safetensors.index.json`
/// names (each once, sorted), else `model.safetensors`.
pub fn shard_names(dir: &Path) -> Result<Vec<String>, ModelError> {
    shard_names_of(dir, "model")
}

/// The weight files named `{stem}.safetensors` or listed by
/// `{stem}.safetensors.index.json`: transformers saves `model`, diffusers saves its
/// transformer and VAE as `diffusion_pytorch_model`.
pub fn shard_names_of(dir: &Path, stem: &str) -> Result<Vec<String>, ModelError> {
    let index_path = dir.join(format!("{stem}.safetensors.index.json"));
    Ok(if index_path.exists() {
        let text =
            std::fs::read_to_string(&index_path).map_err(|e| ModelError::io(&index_path, e))?;
        let index: serde_json::Value =
            serde_json::from_str(&text).map_err(|source| ModelError::Index {
                path: index_path.clone(),
                source,
            })?;
        let map = index["weight_map"]
            .as_object()
            .ok_or_else(|| ModelError::NoWeightMap {
                path: index_path.clone(),
            })?;
        let mut names: Vec<String> = map
            .values()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        names.sort();
        names.dedup();
        names
    } else {
        vec![format!("{stem}.safetensors")]
    })
}

impl SafetensorsFiles {
    pub fn open(dir: &Path) -> Result<Self, ModelError> {
        Self::open_stem(dir, "model")
    }

    /// Whether the files hold a tensor called `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// The files [`shard_names_of`] `dir` and `stem` names.
    pub fn open_stem(dir: &Path, stem: &str) -> Result<Self, ModelError> {
        let shard_names = shard_names_of(dir, stem)?;
        let mut files = Vec::new();
        let mut index = BTreeMap::new();
        for name in shard_names {
            let path = dir.join(&name);
            let file = File::open(&path).map_err(|e| ModelError::io(&path, e))?;
            // SAFETY: the map is read-only and the files are not modified while a
            // model loads; a concurrent writer could only corrupt the weights read.
            let map = unsafe { Mmap::map(&file) }.map_err(|e| ModelError::io(&path, e))?;
            let tensors =
                SafeTensors::deserialize(&map).map_err(|e| ModelError::safetensors(&path, e))?;
            for tensor_name in tensors.names() {
                index.insert(tensor_name.to_owned(), files.len());
            }
            files.push((path, map));
        }
        Ok(Self { files, index })
    }
}

impl WeightSource for SafetensorsFiles {
    fn tensor(
        &self,
        name: &str,
        shape: &[usize],
        dtype: &dyn Fn(DType) -> DType,
    ) -> Result<TensorData, ModelError> {
        let err = |source: TensorError| ModelError::Tensor {
            tensor: name.to_owned(),
            source,
        };
        let &file = self
            .index
            .get(name)
            .ok_or_else(|| err(TensorError::Missing))?;
        let (path, map) = &self.files[file];
        let tensors = SafeTensors::deserialize(map).map_err(|e| err(e.into()))?;
        let view = tensors.tensor(name).map_err(|e| err(e.into()))?;
        if view.shape() != shape {
            return Err(err(TensorError::Shape {
                expected: shape.to_vec(),
                file: path.clone(),
                found: view.shape().to_vec(),
            }));
        }
        let stored = match view.dtype() {
            Dtype::BF16 => DType::BF16,
            Dtype::F16 => DType::F16,
            Dtype::F32 => DType::F32,
            other => return Err(err(TensorError::Dtype(other))),
        };
        if let Some((index, value)) = first_non_finite(view.data(), stored) {
            return Err(err(TensorError::NonFinite {
                index,
                value,
                file: path.clone(),
            }));
        }
        let data = convert(view.data(), stored, dtype(stored), shape.to_vec());
        release_pages(map, view.data());
        Ok(data)
    }
}

/// The index and kind (`NaN`, `inf`) of the first non-finite element of
/// little-endian `bytes` of `dtype`, read on every core for a large tensor (the scan
/// reads the bytes the conversion reads next, a fraction of the load's time).
fn first_non_finite(bytes: &[u8], dtype: DType) -> Option<(usize, &'static str)> {
    // Non-finite when the exponent bits are all ones; NaN when the mantissa is not zero.
    let (width, exponent, mantissa): (usize, u32, u32) = match dtype {
        DType::BF16 => (2, 0x7F80, 0x007F),
        DType::F16 => (2, 0x7C00, 0x03FF),
        _ => (4, 0x7F80_0000, 0x007F_FFFF),
    };
    let bits = |b: &[u8]| match width {
        2 => u32::from(u16::from_le_bytes([b[0], b[1]])),
        _ => u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
    };
    let scan = |part: &[u8]| {
        part.chunks_exact(width)
            .position(|b| bits(b) & exponent == exponent)
    };
    const PER_THREAD: usize = 1 << 22;
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(bytes.len().div_ceil(PER_THREAD))
        .max(1);
    let part = bytes.len().div_ceil(threads).div_ceil(width) * width;
    let index = std::thread::scope(|scope| {
        let scans: Vec<_> = bytes
            .chunks(part.max(width))
            .enumerate()
            .map(|(n, chunk)| scope.spawn(move || scan(chunk).map(|i| n * part / width + i)))
            .collect();
        scans
            .into_iter()
            .filter_map(|scan| scan.join().expect("a scan thread"))
            .min()
    })?;
    let value = bits(&bytes[index * width..]) & mantissa;
    Some((index, if value == 0 { "inf" } else { "NaN" }))
}

/// Drops the map's pages of `bytes` (a tensor just converted) from this process's
/// resident set. The file's pages stay in the kernel's page cache, which a later read
/// maps again, but they no longer count against the process (or its cgroup's RSS):
/// without this the peak of a load is the model plus the whole checkpoint, 1.9 + 0.9
/// GiB for a 0.5B model loaded in f32 from bf16, where it is now the model plus one
/// tensor.
fn release_pages(map: &Mmap, bytes: &[u8]) {
    #[cfg(unix)]
    {
        let offset = bytes.as_ptr() as usize - map.as_ptr() as usize;
        // SAFETY: the map is a read-only file mapping that nothing writes; after
        // MADV_DONTNEED a read of these pages faults the same bytes in from the file, so
        // no reference into the map (this tensor's view included) can see other data.
        // Failing to advise only leaves the pages resident.
        let _ = unsafe {
            map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, offset, bytes.len())
        };
    }
    #[cfg(not(unix))]
    let _ = (map, bytes);
}

/// Little-endian `bytes` of `from` elements as a tensor of `to` elements: the one
/// host copy of a tensor's load, each element read from the map and written
/// converted (bf16 to f32 is a shift; no intermediate f32 buffer for any pair).
fn convert(bytes: &[u8], from: DType, to: DType, shape: Vec<usize>) -> TensorData {
    if from == to {
        let copy = parallel_fill(bytes, 1, |out: &mut [u8], bytes| out.copy_from_slice(bytes));
        return TensorData::from_bytes_vec(copy, shape, to);
    }
    // The common pairs through `half`'s slice conversions (vectorized), where the
    // map's bytes can be read as elements in place (safetensors aligns them).
    let data = match (from, to) {
        (DType::BF16, DType::F32) => typed::<bf16>(bytes).map(|src| {
            TensorData::new(
                parallel_fill(src, 1, |o: &mut [f32], s: &[bf16]| {
                    s.convert_to_f32_slice(o)
                }),
                shape.clone(),
            )
        }),
        (DType::F16, DType::F32) => typed::<f16>(bytes).map(|src| {
            TensorData::new(
                parallel_fill(src, 1, |o: &mut [f32], s: &[f16]| s.convert_to_f32_slice(o)),
                shape.clone(),
            )
        }),
        (DType::F32, DType::BF16) => typed::<f32>(bytes).map(|src| {
            TensorData::new(
                parallel_fill(src, 1, |o: &mut [bf16], s: &[f32]| {
                    o.convert_from_f32_slice(s)
                }),
                shape.clone(),
            )
        }),
        (DType::F32, DType::F16) => typed::<f32>(bytes).map(|src| {
            TensorData::new(
                parallel_fill(src, 1, |o: &mut [f16], s: &[f32]| {
                    o.convert_from_f32_slice(s)
                }),
                shape.clone(),
            )
        }),
        _ => None,
    };
    if let Some(data) = data {
        return data;
    }
    // Any other pair, or unaligned bytes: element by element.
    let read: fn(&[u8]) -> f32 = match from {
        DType::BF16 => |b| f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16),
        DType::F16 => |b| f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32(),
        _ => |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
    };
    let width = from.size();
    match to {
        DType::BF16 => TensorData::new(map(bytes, width, |b| bf16::from_f32(read(b))), shape),
        DType::F16 => TensorData::new(map(bytes, width, |b| f16::from_f32(read(b))), shape),
        _ => TensorData::new(map(bytes, width, read), shape),
    }
}

/// `bytes` as little-endian `T`s in place, when this machine is little-endian and
/// they are aligned for `T`.
fn typed<T: FloatBits>(bytes: &[u8]) -> Option<&[T]> {
    if cfg!(target_endian = "big") {
        return None;
    }
    // SAFETY: `T` is bf16, f16 or f32 (`FloatBits`), for which every bit pattern is
    // a value; `align_to` puts in `middle` only what is aligned for `T`.
    let (before, middle, after) = unsafe { bytes.align_to::<T>() };
    (before.is_empty() && after.is_empty()).then_some(middle)
}

/// Element types every bit pattern of which is a value.
trait FloatBits {}
impl FloatBits for bf16 {}
impl FloatBits for f16 {}
impl FloatBits for f32 {}

/// `f` of each `width`-byte element of `bytes`.
fn map<T: Copy + Default + Send>(
    bytes: &[u8],
    width: usize,
    f: impl Fn(&[u8]) -> T + Sync,
) -> Vec<T> {
    parallel_fill(bytes, width, |out: &mut [T], bytes| {
        for (o, b) in out.iter_mut().zip(bytes.chunks_exact(width)) {
            *o = f(b);
        }
    })
}

/// One `T` per `width` elements of `src`, written by `fill(out, its part of src)` on
/// parts of the tensor, on every core when it is large: at 72B one thread spends
/// minutes converting.
fn parallel_fill<S: Sync, T: Copy + Default + Send>(
    src: &[S],
    width: usize,
    fill: impl Fn(&mut [T], &[S]) + Sync,
) -> Vec<T> {
    const PER_THREAD: usize = 1 << 20;
    let len = src.len() / width;
    let mut out = vec![T::default(); len];
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(len.div_ceil(PER_THREAD))
        .max(1);
    if threads == 1 {
        fill(&mut out, src);
        return out;
    }
    let part = len.div_ceil(threads);
    std::thread::scope(|scope| {
        for (out, src) in out.chunks_mut(part).zip(src.chunks(part * width)) {
            let fill = &fill;
            scope.spawn(move || fill(out, src));
        }
    });
    out
}

/// Builds the model for `config` from `source` on the devices of `placement`, to
/// compute in `dtype`: the embeddings and head in
/// [`base_dtype`](crate::backend::base_dtype) of it (the checkpoint's bf16 or f16 as
/// stored when `dtype` is a half dtype, f32 when it is f32), the decoder layers'
/// projections as `layers_storage` says (the same, or half on the CPU), the norms'
/// weights in f32 (they are tiny and the norms compute in f32).
pub fn build_model<B: Backend>(
    config: &ModelConfig,
    source: &impl WeightSource,
    placement: &LayerPlacement<B::Device>,
    dtype: DType,
    layers_storage: LayerStorage,
) -> Result<CausalLm<B>, ModelError> {
    // The embeddings and head as computed: a tied head's product with every token's
    // hidden state would otherwise widen a vocabulary-sized copy at the loss, the
    // step's peak.
    let outside = Loader {
        source,
        device: placement.first(),
        compute: dtype,
        storage: LayerStorage::Computed,
    };
    let (hidden, inter, vocab) = (
        config.hidden_size,
        config.intermediate_size,
        config.vocab_size,
    );
    let q_out = config.num_heads * config.head_dim;
    let kv_out = config.num_kv_heads * config.head_dim;

    let mut layers = Vec::with_capacity(config.num_layers);
    for i in 0..config.num_layers {
        let loader = Loader {
            device: placement.layer_device(i),
            storage: layers_storage,
            ..outside
        };
        let p = format!("model.layers.{i}");
        let attn = format!("{p}.self_attn");
        let mlp = format!("{p}.mlp");
        layers.push(DecoderLayer {
            self_attn: Attention {
                q_proj: loader.projection(
                    &format!("{attn}.q_proj"),
                    hidden,
                    q_out,
                    config.qkv_bias,
                )?,
                k_proj: loader.projection(
                    &format!("{attn}.k_proj"),
                    hidden,
                    kv_out,
                    config.qkv_bias,
                )?,
                v_proj: loader.projection(
                    &format!("{attn}.v_proj"),
                    hidden,
                    kv_out,
                    config.qkv_bias,
                )?,
                o_proj: loader.projection(
                    &format!("{attn}.o_proj"),
                    q_out,
                    hidden,
                    config.o_bias,
                )?,
                num_heads: config.num_heads,
                num_kv_heads: config.num_kv_heads,
                head_dim: config.head_dim,
            },
            mlp: Mlp {
                gate_proj: loader.projection(&format!("{mlp}.gate_proj"), hidden, inter, false)?,
                up_proj: loader.projection(&format!("{mlp}.up_proj"), hidden, inter, false)?,
                down_proj: loader.projection(&format!("{mlp}.down_proj"), inter, hidden, false)?,
            },
            input_layernorm: loader.rms_norm(
                &format!("{p}.input_layernorm"),
                hidden,
                config.rms_norm_eps,
            )?,
            post_attention_layernorm: loader.rms_norm(
                &format!("{p}.post_attention_layernorm"),
                hidden,
                config.rms_norm_eps,
            )?,
        });
    }
    let lm_head = if config.tie_word_embeddings {
        None
    } else {
        Some(Param::from_tensor(outside.matrix(
            "lm_head.weight",
            vocab,
            hidden,
        )?))
    };
    Ok(CausalLm {
        embed_tokens: Embedding {
            weight: Param::from_tensor(outside.load::<2>(
                "model.embed_tokens.weight",
                [vocab, hidden],
                outside.base(),
            )?),
        },
        layers,
        norm: outside.rms_norm("model.norm", hidden, config.rms_norm_eps)?,
        lm_head,
        rope: Rope::new(config),
        compute: dtype,
        stage_starts: placement.boundaries(),
    })
}

/// Builds modules of a model from its weights by Hugging Face name: matrices as
/// transposed views, in [`base_dtype`](crate::backend::base_dtype) of what the model computes in
/// (the decoder layers' as [`LayerStorage`] says); norm weights in
/// f32. Shared by every model family (the image models' crate too).
pub struct Loader<'a, S, B: Backend> {
    pub source: &'a S,
    pub device: &'a B::Device,
    /// What the model computes in.
    pub compute: DType,
    /// How its matrices are held: the decoder layers' may stay half on the CPU.
    pub storage: LayerStorage,
}

impl<S, B: Backend> Clone for Loader<'_, S, B> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S, B: Backend> Copy for Loader<'_, S, B> {}

impl<S: WeightSource, B: Backend> Loader<'_, S, B> {
    /// The dtype of a base weight stored as the argument.
    pub fn base(&self) -> impl Fn(DType) -> DType + use<S, B> {
        let (compute, storage) = (self.compute, self.storage);
        move |stored| storage.dtype::<B>(compute, stored)
    }

    pub fn load<const D: usize>(
        &self,
        name: &str,
        shape: [usize; D],
        dtype: impl Fn(DType) -> DType,
    ) -> Result<Tensor<B, D>, ModelError> {
        let data = self.source.tensor(name, &shape, &dtype)?;
        // Already in its dtype: `from_data` converts nothing.
        let dtype = data.dtype;
        Ok(Tensor::from_data(data, (self.device, dtype)))
    }

    /// A Hugging Face `[out, in]` matrix as burn's `[in, out]`: a transposed view of
    /// the tensor as stored, which matmuls read through its strides.
    pub fn matrix(&self, name: &str, out: usize, input: usize) -> Result<Tensor<B, 2>, ModelError> {
        Ok(self.load::<2>(name, [out, input], self.base())?.transpose()) // [in, out]
    }

    pub fn projection(
        &self,
        name: &str,
        input: usize,
        out: usize,
        bias: bool,
    ) -> Result<Projection<B>, ModelError> {
        let weight = Param::from_tensor(self.matrix(&format!("{name}.weight"), out, input)?);
        // In the weight's dtype: the bias is added to the product in it.
        let bias = if bias {
            Some(Param::from_tensor(self.load::<1>(
                &format!("{name}.bias"),
                [out],
                self.base(),
            )?))
        } else {
            None
        };
        Ok(Projection::new(Linear { weight, bias }))
    }

    pub fn rms_norm(
        &self,
        name: &str,
        size: usize,
        epsilon: f64,
    ) -> Result<RmsNorm<B>, ModelError> {
        Ok(RmsNorm {
            gamma: Param::from_tensor(
                self.load::<1>(&format!("{name}.weight"), [size], |_| DType::F32)?,
            ),
            epsilon,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bf16_bytes(values: &[f32]) -> Vec<u8> {
        values
            .iter()
            .flat_map(|&v| bf16::from_f32(v).to_le_bytes())
            .collect()
    }

    #[test]
    fn the_first_nan_or_infinity_is_found_in_every_dtype_and_part() {
        // Large enough for several scan threads on any machine with more than one core.
        let mut values = vec![0.5f32; 5 << 21];
        assert_eq!(first_non_finite(&bf16_bytes(&values), DType::BF16), None);
        values[3_000_000] = f32::INFINITY;
        values[9_000_000] = f32::NAN;
        assert_eq!(
            first_non_finite(&bf16_bytes(&values), DType::BF16),
            Some((3_000_000, "inf"))
        );
        let f32_bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(
            first_non_finite(&f32_bytes, DType::F32),
            Some((3_000_000, "inf"))
        );
        let f16_bytes: Vec<u8> = [1.0f32, -2.0, f32::NAN]
            .iter()
            .flat_map(|&v| f16::from_f32(v).to_le_bytes())
            .collect();
        assert_eq!(first_non_finite(&f16_bytes, DType::F16), Some((2, "NaN")));
        // The largest finite values are not mistaken for infinities.
        let largest = bf16_bytes(&[bf16::MAX.to_f32(), -bf16::MAX.to_f32()]);
        assert_eq!(first_non_finite(&largest, DType::BF16), None);
    }

    #[test]
    fn a_tensor_with_a_nan_is_refused_by_name_and_element() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = bf16_bytes(&[1.0, 2.0, f32::NAN, 4.0]);
        let view = safetensors::tensor::TensorView::new(Dtype::BF16, vec![2, 2], &bytes).unwrap();
        safetensors::serialize_to_file(
            [("model.norm.weight", view)],
            None,
            &dir.path().join("model.safetensors"),
        )
        .unwrap();
        let files = SafetensorsFiles::open(dir.path()).unwrap();
        let error = files
            .tensor("model.norm.weight", &[2, 2], &|d| d)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("model.norm.weight")
                && error.contains("element 2 in ")
                && error.ends_with(
                    "is NaN: the checkpoint is corrupt or was saved from a diverged run"
                ),
            "{error}"
        );
    }
}
