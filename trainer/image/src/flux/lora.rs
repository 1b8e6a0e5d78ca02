//! LoRA adapters on the FLUX transformer in diffusers' format, the one
//! `FluxPipeline.load_lora_weights` reads and `save_lora_weights` writes: a
//! `pytorch_lora_weights.safetensors` with `transformer.<module>.lora_A.weight`
//! `[r, in]` and `lora_B.weight` `[out, r]` per adapted linear layer. The scale is
//! `lora_alpha / r` (or `/ sqrt(r)` with rsLoRA) from the adapter metadata diffusers
//! stores in the file, with its per-module `alpha_pattern`; a file
//! without metadata means alpha = rank (scale 1), diffusers' convention, unless it
//! carries kohya-style `<module>.alpha` tensors.
//!
//! Several adapters at once add their updates, as diffusers' `set_adapters` with
//! weight 1 does: on a layer they share, the ranks are stacked
//! (`A = [A₁ A₂]`, `B = [s₁B₁; s₂B₂]`, scale 1), which is the same sum.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anneal_model::llm::projection::{LoraAdapter, Projection};
use burn::module::Param;
use burn::nn::Dropout;
use burn::prelude::*;
use burn::tensor::DType;
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

use super::transformer::FluxTransformer;

/// The file diffusers saves LoRA weights in.
pub const LORA_FILE: &str = "pytorch_lora_weights.safetensors";

/// Why an adapter could not be read or attached; each message names the file, and
/// the tensor or module at fault.
#[derive(Debug, thiserror::Error)]
pub enum FluxLoraError {
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },
    #[error("{}: tensor {tensor}: {message}", path.display())]
    Tensor {
        path: PathBuf,
        tensor: String,
        message: String,
    },
    #[error(
        "{}: {tensor} adapts the text encoders; Anneal applies LoRA to the FLUX transformer only",
        path.display()
    )]
    TextEncoder { path: PathBuf, tensor: String },
    #[error("{}: no transformer.<module>.lora_A.weight tensors: not a diffusers FLUX LoRA file", path.display())]
    Empty { path: PathBuf },
}

/// One adapted layer as stored: `a` `[r, in]`, `b` `[out, r]`, and its scale.
struct LayerUpdate {
    a: TensorData,
    b: TensorData,
    scale: f32,
    input: usize,
    output: usize,
}

/// An adapter file read into memory, by module path (`transformer_blocks.0.attn.to_q`).
pub struct FluxLora {
    pub path: PathBuf,
    layers: BTreeMap<String, LayerUpdate>,
}

impl FluxLora {
    /// Reads `path`: the safetensors file, or a folder holding [`LORA_FILE`].
    pub fn read(path: &Path) -> Result<Self, FluxLoraError> {
        let file = if path.is_dir() {
            path.join(LORA_FILE)
        } else {
            path.to_path_buf()
        };
        let file_err = |message: String| FluxLoraError::File {
            path: file.clone(),
            message,
        };
        let bytes = std::fs::read(&file).map_err(|e| file_err(e.to_string()))?;
        let (_, header) =
            SafeTensors::read_metadata(&bytes).map_err(|e| file_err(e.to_string()))?;
        let metadata = header
            .metadata()
            .as_ref()
            .and_then(|m| m.get("lora_adapter_metadata"))
            .map(|text| serde_json::from_str::<Value>(text))
            .transpose()
            .map_err(|e| file_err(format!("lora_adapter_metadata is not JSON: {e}")))?;
        let tensors = SafeTensors::deserialize(&bytes).map_err(|e| file_err(e.to_string()))?;
        let scales = Scales::new(metadata.as_ref());

        let mut layers = BTreeMap::new();
        for name in tensors.names() {
            if name.starts_with("text_encoder") {
                return Err(FluxLoraError::TextEncoder {
                    path: file.clone(),
                    tensor: name.to_owned(),
                });
            }
            let Some(module) = name
                .strip_prefix("transformer.")
                .unwrap_or(name)
                .strip_suffix(".lora_A.weight")
            else {
                continue;
            };
            let tensor_err = |tensor: &str, message: String| FluxLoraError::Tensor {
                path: file.clone(),
                tensor: tensor.to_owned(),
                message,
            };
            let prefix = name.strip_suffix(".lora_A.weight").expect("matched above");
            let b_name = format!("{prefix}.lora_B.weight");
            let a = read_tensor(&tensors, name).map_err(|m| tensor_err(name, m))?;
            let b = read_tensor(&tensors, &b_name).map_err(|m| tensor_err(&b_name, m))?;
            let (a_shape, b_shape) = (a.shape.to_vec(), b.shape.to_vec());
            let [rank, input] = a_shape[..] else {
                return Err(tensor_err(
                    name,
                    format!("shape {a_shape:?} is not [r, in]"),
                ));
            };
            if b_shape.len() != 2 || b_shape[1] != rank {
                return Err(tensor_err(
                    &b_name,
                    format!("shape {b_shape:?} is not [out, {rank}] for lora_A's rank {rank}"),
                ));
            }
            let output = b_shape[0];
            let alpha_tensor = read_tensor(&tensors, &format!("{prefix}.alpha"))
                .ok()
                .and_then(|alpha| {
                    alpha
                        .convert::<f32>()
                        .to_vec::<f32>()
                        .ok()?
                        .first()
                        .copied()
                });
            let scale = scales.scale(module, rank, alpha_tensor);
            layers.insert(
                module.to_owned(),
                LayerUpdate {
                    a,
                    b,
                    scale,
                    input,
                    output,
                },
            );
        }
        if layers.is_empty() {
            return Err(FluxLoraError::Empty { path: file });
        }
        Ok(Self { path: file, layers })
    }

    /// The module paths this adapter changes.
    pub fn modules(&self) -> impl Iterator<Item = &str> {
        self.layers.keys().map(String::as_str)
    }

    /// Module `module`'s matrices as stored: `lora_A` `[r, in]` and `lora_B` `[out, r]`.
    pub fn matrices(&self, module: &str) -> Option<(&TensorData, &TensorData)> {
        self.layers.get(module).map(|layer| (&layer.a, &layer.b))
    }
}

/// `lora_alpha / r` per module from diffusers' metadata.
struct Scales {
    r: Option<f64>,
    alpha: Option<f64>,
    rslora: bool,
    alpha_pattern: BTreeMap<String, f64>,
}

impl Scales {
    fn new(metadata: Option<&Value>) -> Self {
        let get = |key: &str| metadata.and_then(|m| m.get(format!("transformer.{key}")));
        let pattern = |key: &str| -> BTreeMap<String, f64> {
            get(key)
                .and_then(Value::as_object)
                .map(|o| {
                    o.iter()
                        .filter_map(|(k, v)| v.as_f64().map(|v| (k.clone(), v)))
                        .collect()
                })
                .unwrap_or_default()
        };
        Self {
            r: get("r").and_then(Value::as_f64),
            alpha: get("lora_alpha").and_then(Value::as_f64),
            rslora: get("use_rslora").and_then(Value::as_bool).unwrap_or(false),
            alpha_pattern: pattern("alpha_pattern"),
        }
    }

    fn scale(&self, module: &str, rank: usize, alpha_tensor: Option<f32>) -> f32 {
        let matching = |pattern: &BTreeMap<String, f64>| {
            pattern
                .iter()
                .find(|(key, _)| module == key.as_str() || module.ends_with(&format!(".{key}")))
                .map(|(_, &v)| v)
        };
        // The tensors' own rank: a `rank_pattern` entry only says what they show.
        let rank = rank as f64;
        let alpha = matching(&self.alpha_pattern)
            .or(self.alpha.filter(|_| self.r.is_some()))
            .or(alpha_tensor.map(f64::from))
            .unwrap_or(rank);
        let denominator = if self.rslora { rank.sqrt() } else { rank };
        (alpha / denominator) as f32
    }
}

/// A tensor of the file as stored (f32, bf16 or f16), for the device to convert.
fn read_tensor(tensors: &SafeTensors<'_>, name: &str) -> Result<TensorData, String> {
    let view = tensors.tensor(name).map_err(|_| "missing".to_owned())?;
    let dtype = match view.dtype() {
        Dtype::F32 => DType::F32,
        Dtype::BF16 => DType::BF16,
        Dtype::F16 => DType::F16,
        other => {
            return Err(format!(
                "dtype {other:?} is not supported (f32, bf16, f16 are)"
            ));
        }
    };
    Ok(TensorData::from_bytes_vec(
        view.data().to_vec(),
        view.shape().to_vec(),
        dtype,
    ))
}

/// Attaches `adapters` to `model`, replacing any it had; their updates add up.
pub fn attach_loras<B: Backend>(
    model: &mut FluxTransformer<B>,
    adapters: &[FluxLora],
) -> Result<(), FluxLoraError> {
    model.clear_loras();
    // Per module: each adapter's update, stacked along the rank.
    let mut stacked: BTreeMap<&str, Vec<(&Path, &LayerUpdate)>> = BTreeMap::new();
    for adapter in adapters {
        for (module, update) in &adapter.layers {
            stacked
                .entry(module.as_str())
                .or_default()
                .push((adapter.path.as_path(), update));
        }
    }
    for (module, updates) in stacked {
        let (path, _) = updates[0];
        let projection = model
            .projection_mut(module)
            .ok_or_else(|| FluxLoraError::Tensor {
                path: path.to_path_buf(),
                tensor: format!("transformer.{module}.lora_A.weight"),
                message: "no such linear layer in this FLUX transformer".into(),
            })?;
        let [input, output] = projection.base.weight.dims();
        for (path, update) in &updates {
            if (update.input, update.output) != (input, output) {
                return Err(FluxLoraError::Tensor {
                    path: path.to_path_buf(),
                    tensor: format!("transformer.{module}.lora_A.weight"),
                    message: format!(
                        "adapts a {}x{} layer; this model's is {input}x{output}",
                        update.input, update.output
                    ),
                });
            }
        }
        // A: [in, Σr], each adapter's columns side by side; B: [Σr, out] with each
        // adapter's scale folded in, rows stacked. In f32, as LoRA computes.
        let device = projection.base.weight.device();
        let tensor =
            |data: &TensorData| Tensor::<B, 2>::from_data(data.clone(), (&device, DType::F32));
        let a = Tensor::cat(
            updates
                .iter()
                .map(|(_, u)| tensor(&u.a).transpose())
                .collect(),
            1,
        );
        let b = Tensor::cat(
            updates
                .iter()
                .map(|(_, u)| tensor(&u.b).transpose() * f64::from(u.scale))
                .collect(),
            0,
        );
        // Copied into our layout rather than kept as transposed views (as PEFT adapters are).
        let own = |t: Tensor<B, 2>| Tensor::<B, 2>::from_data(t.into_data(), &device);
        projection.lora = Some(LoraAdapter {
            a: Param::from_tensor(own(a)),
            b: Param::from_tensor(own(b)),
            scale: 1.0,
            dropout: Dropout { prob: 0.0 },
        });
    }
    Ok(())
}

/// Every LoRA-able layer of the transformer by its diffusers module path.
impl<B: Backend> FluxTransformer<B> {
    /// Removes every adapter.
    pub fn clear_loras(&mut self) {
        let mut all: Vec<&mut Projection<B>> = vec![
            &mut self.x_embedder,
            &mut self.context_embedder,
            &mut self.head.norm_out,
            &mut self.head.proj_out,
            &mut self.time_text_embed.timestep_embedder.linear_1,
            &mut self.time_text_embed.timestep_embedder.linear_2,
            &mut self.time_text_embed.text_embedder.linear_1,
            &mut self.time_text_embed.text_embedder.linear_2,
        ];
        if let Some(guidance) = self.time_text_embed.guidance_embedder.as_mut() {
            all.extend([&mut guidance.linear_1, &mut guidance.linear_2]);
        }
        for block in &mut self.double_blocks {
            all.extend([
                &mut block.norm1,
                &mut block.norm1_context,
                &mut block.image_qkv.to_q,
                &mut block.image_qkv.to_k,
                &mut block.image_qkv.to_v,
                &mut block.text_qkv.to_q,
                &mut block.text_qkv.to_k,
                &mut block.text_qkv.to_v,
                &mut block.to_out,
                &mut block.to_add_out,
                &mut block.ff.up,
                &mut block.ff.down,
                &mut block.ff_context.up,
                &mut block.ff_context.down,
            ]);
        }
        for block in &mut self.single_blocks {
            all.extend([
                &mut block.norm,
                &mut block.qkv.to_q,
                &mut block.qkv.to_k,
                &mut block.qkv.to_v,
                &mut block.proj_mlp,
                &mut block.proj_out,
            ]);
        }
        for projection in all {
            projection.lora = None;
        }
    }

    pub fn projection_mut(&mut self, path: &str) -> Option<&mut Projection<B>> {
        let parts: Vec<&str> = path.split('.').collect();
        match parts.as_slice() {
            ["x_embedder"] => Some(&mut self.x_embedder),
            ["context_embedder"] => Some(&mut self.context_embedder),
            ["proj_out"] => Some(&mut self.head.proj_out),
            ["norm_out", "linear"] => Some(&mut self.head.norm_out),
            ["time_text_embed", embedder, linear] => {
                let mlp = match *embedder {
                    "timestep_embedder" => &mut self.time_text_embed.timestep_embedder,
                    "text_embedder" => &mut self.time_text_embed.text_embedder,
                    "guidance_embedder" => self.time_text_embed.guidance_embedder.as_mut()?,
                    _ => return None,
                };
                match *linear {
                    "linear_1" => Some(&mut mlp.linear_1),
                    "linear_2" => Some(&mut mlp.linear_2),
                    _ => None,
                }
            }
            ["transformer_blocks", index, rest @ ..] => {
                let block = self.double_blocks.get_mut(index.parse::<usize>().ok()?)?;
                Some(match rest {
                    ["norm1", "linear"] => &mut block.norm1,
                    ["norm1_context", "linear"] => &mut block.norm1_context,
                    ["attn", "to_q"] => &mut block.image_qkv.to_q,
                    ["attn", "to_k"] => &mut block.image_qkv.to_k,
                    ["attn", "to_v"] => &mut block.image_qkv.to_v,
                    ["attn", "add_q_proj"] => &mut block.text_qkv.to_q,
                    ["attn", "add_k_proj"] => &mut block.text_qkv.to_k,
                    ["attn", "add_v_proj"] => &mut block.text_qkv.to_v,
                    ["attn", "to_out", "0"] => &mut block.to_out,
                    ["attn", "to_add_out"] => &mut block.to_add_out,
                    ["ff", "net", "0", "proj"] => &mut block.ff.up,
                    ["ff", "net", "2"] => &mut block.ff.down,
                    ["ff_context", "net", "0", "proj"] => &mut block.ff_context.up,
                    ["ff_context", "net", "2"] => &mut block.ff_context.down,
                    _ => return None,
                })
            }
            ["single_transformer_blocks", index, rest @ ..] => {
                let block = self.single_blocks.get_mut(index.parse::<usize>().ok()?)?;
                Some(match rest {
                    ["norm", "linear"] => &mut block.norm,
                    ["attn", "to_q"] => &mut block.qkv.to_q,
                    ["attn", "to_k"] => &mut block.qkv.to_k,
                    ["attn", "to_v"] => &mut block.qkv.to_v,
                    ["proj_mlp"] => &mut block.proj_mlp,
                    ["proj_out"] => &mut block.proj_out,
                    _ => return None,
                })
            }
            _ => None,
        }
    }
}
