//! Building a model from Hugging Face `*.safetensors`, one tensor at a time.
//!
//! Files are memory-mapped and each tensor goes from the map straight into a
//! backend tensor, so at no point are there two full copies of the weights: the
//! peak is the model on the device plus one tensor in transit. Modules are built
//! from the loaded tensors, never initialised randomly first.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::nn::{Embedding, Linear, RmsNorm};
use burn::prelude::*;
use burn::tensor::DType;
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensorError, SafeTensors};

use super::ModelError;
use super::attention::Attention;
use super::config::ModelConfig;
use super::mlp::Mlp;
use super::projection::Projection;
use super::rope::Rope;
use super::transformer::{CausalLm, DecoderLayer};

/// Where tensors come from, by their Hugging Face names and `[out, in]` shapes.
pub trait WeightSource {
    /// The tensor `name`, checked against `shape`, in the dtype it is stored in.
    fn tensor(&self, name: &str, shape: &[usize]) -> Result<TensorData, ModelError>;
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
}

/// The safetensors files of a model folder: `model.safetensors`, or the shards
/// named by `model.safetensors.index.json`.
pub struct SafetensorsFiles {
    files: Vec<(PathBuf, Mmap)>,
    /// Tensor name to index in `files`.
    index: BTreeMap<String, usize>,
}

impl SafetensorsFiles {
    pub fn open(dir: &Path) -> Result<Self, ModelError> {
        let index_path = dir.join("model.safetensors.index.json");
        let shard_names: Vec<String> = if index_path.exists() {
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
            vec!["model.safetensors".to_owned()]
        };

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
    fn tensor(&self, name: &str, shape: &[usize]) -> Result<TensorData, ModelError> {
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
        let dtype = match view.dtype() {
            Dtype::BF16 => DType::BF16,
            Dtype::F16 => DType::F16,
            Dtype::F32 => DType::F32,
            other => return Err(err(TensorError::Dtype(other))),
        };
        Ok(TensorData::from_bytes_vec(
            view.data().to_vec(),
            shape.to_vec(),
            dtype,
        ))
    }
}

/// Builds the model for `config` from `source`, converting every weight to `dtype` on `device`.
pub fn build_model<B: Backend>(
    config: &ModelConfig,
    source: &impl WeightSource,
    device: &B::Device,
    dtype: DType,
) -> Result<CausalLm<B>, ModelError> {
    let loader = Loader {
        source,
        device,
        dtype,
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
        Some(Param::from_tensor(loader.transposed(
            "lm_head.weight",
            vocab,
            hidden,
        )?))
    };
    Ok(CausalLm {
        embed_tokens: Embedding {
            weight: Param::from_tensor(
                loader.load::<2>("model.embed_tokens.weight", [vocab, hidden])?,
            ),
        },
        layers,
        norm: loader.rms_norm("model.norm", hidden, config.rms_norm_eps)?,
        lm_head,
        rope: Rope::new(config),
    })
}

struct Loader<'a, S, B: Backend> {
    source: &'a S,
    device: &'a B::Device,
    dtype: DType,
}

impl<S: WeightSource, B: Backend> Loader<'_, S, B> {
    fn load<const D: usize>(
        &self,
        name: &str,
        shape: [usize; D],
    ) -> Result<Tensor<B, D>, ModelError> {
        let data = self.source.tensor(name, &shape)?;
        Ok(Tensor::from_data(data, (self.device, self.dtype)))
    }

    /// A Hugging Face `[out, in]` matrix as burn's `[in, out]`, transposed in memory
    /// so matmuls read it contiguously.
    fn transposed(&self, name: &str, out: usize, input: usize) -> Result<Tensor<B, 2>, ModelError> {
        let data = self.source.tensor(name, &[out, input])?;
        let data = transpose_bytes(data, out, input);
        Ok(Tensor::from_data(data, (self.device, self.dtype)))
    }

    fn projection(
        &self,
        name: &str,
        input: usize,
        out: usize,
        bias: bool,
    ) -> Result<Projection<B>, ModelError> {
        let weight = Param::from_tensor(self.transposed(&format!("{name}.weight"), out, input)?);
        let bias = if bias {
            Some(Param::from_tensor(
                self.load::<1>(&format!("{name}.bias"), [out])?,
            ))
        } else {
            None
        };
        Ok(Projection::new(Linear { weight, bias }))
    }

    fn rms_norm(&self, name: &str, size: usize, epsilon: f64) -> Result<RmsNorm<B>, ModelError> {
        Ok(RmsNorm {
            gamma: Param::from_tensor(self.load::<1>(&format!("{name}.weight"), [size])?),
            epsilon,
        })
    }
}

/// `[rows, cols]` to `[cols, rows]` on the raw elements, whatever their width.
fn transpose_bytes(data: TensorData, rows: usize, cols: usize) -> TensorData {
    let dtype = data.dtype;
    let width = dtype.size();
    let bytes = data.as_bytes();
    let mut out = vec![0u8; bytes.len()];
    for r in 0..rows {
        for c in 0..cols {
            let from = (r * cols + c) * width;
            let to = (c * rows + r) * width;
            out[to..to + width].copy_from_slice(&bytes[from..from + width]);
        }
    }
    TensorData::from_bytes_vec(out, vec![cols, rows], dtype)
}
