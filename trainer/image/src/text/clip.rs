//! CLIP's text transformer (`CLIPTextModel`, openai/clip-vit-large-patch14 in FLUX.1:
//! width 768, 12 layers, 12 heads, 77 positions, quick GELU): pre-norm causal
//! self-attention layers; the pooled output is the final state at the end token.

use std::path::Path;

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::DType;
use burn::tensor::activation::sigmoid;
use serde::Deserialize;

use anneal_model::llm::projection::Projection;
use anneal_model::llm::weights::{Loader, SafetensorsFiles};

use super::layers::{LayerNorm, SelfAttention, embed};
use super::{TextEncoderError, read_config};

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct ClipTextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "quick_gelu")]
    pub hidden_act: String,
    #[serde(default = "layer_norm_eps")]
    pub layer_norm_eps: f64,
    /// 2 in the original OpenAI configs, which pool at the highest token id (the end
    /// token is the vocabulary's last); else the first `eos_token_id`.
    #[serde(default = "legacy_eos")]
    pub eos_token_id: u32,
}

fn quick_gelu() -> String {
    "quick_gelu".into()
}
fn layer_norm_eps() -> f64 {
    1e-5
}
fn legacy_eos() -> u32 {
    2
}

#[derive(Module, Debug)]
pub struct ClipLayer<B: Backend> {
    pub layer_norm1: LayerNorm<B>,
    pub self_attn: SelfAttention<B>,
    pub layer_norm2: LayerNorm<B>,
    pub fc1: Projection<B>,
    pub fc2: Projection<B>,
    /// quick GELU `x·σ(1.702x)` (CLIP-L), else GELU.
    pub quick_gelu: bool,
}

#[derive(Module, Debug)]
pub struct ClipTextModel<B: Backend> {
    pub token_embedding: Param<Tensor<B, 2>>,
    pub position_embedding: Param<Tensor<B, 2>>,
    pub layers: Vec<ClipLayer<B>>,
    pub final_layer_norm: LayerNorm<B>,
    pub eos_token_id: u32,
    pub compute: DType,
}

/// The text model's outputs: every token's final state `[batch, seq, width]` and the
/// pooled one `[batch, width]`.
pub struct ClipOutput<B: Backend> {
    pub last_hidden: Tensor<B, 3>,
    pub pooled: Tensor<B, 2>,
}

impl<B: Backend> ClipTextModel<B> {
    /// `ids`: `[batch][seq]`, every row the same length, at most the position count.
    pub fn forward(&self, ids: &[Vec<u32>]) -> ClipOutput<B> {
        let seq = ids[0].len();
        let device = self.token_embedding.device();
        let positions = self
            .position_embedding
            .val()
            .narrow(0, 0, seq)
            .unsqueeze_dim::<3>(0);
        let mut x = embed(&self.token_embedding.val(), ids) + positions; // [b, s, width]
        let causal = causal_mask::<B>(seq, &device);
        for layer in &self.layers {
            let h = layer
                .self_attn
                .forward(layer.layer_norm1.forward(x.clone()), &causal);
            x = x + h;
            let h = layer.fc1.forward(layer.layer_norm2.forward(x.clone()));
            let h = if layer.quick_gelu {
                h.clone() * sigmoid(h * 1.702)
            } else {
                burn::tensor::activation::gelu(h)
            };
            x = x + layer.fc2.forward(h);
        }
        let last_hidden = self.final_layer_norm.forward(x);
        let ends: Vec<i64> = ids
            .iter()
            .map(|row| self.end_position(row) as i64)
            .collect();
        let [batch, _, width] = last_hidden.dims();
        let pooled = Tensor::cat(
            ends.iter()
                .enumerate()
                .map(|(b, &end)| {
                    last_hidden
                        .clone()
                        .narrow(0, b, 1)
                        .narrow(1, end as usize, 1)
                        .reshape([1, width])
                })
                .collect(),
            0,
        );
        debug_assert_eq!(pooled.dims(), [batch, width]);
        ClipOutput {
            last_hidden,
            pooled,
        }
    }

    /// Where a row is pooled: its first highest id for the legacy `eos_token_id` 2,
    /// else its first `eos_token_id` (0 when absent, as transformers' argmax gives).
    fn end_position(&self, row: &[u32]) -> usize {
        if self.eos_token_id == 2 {
            let max = row.iter().copied().max().unwrap_or(0);
            row.iter().position(|&id| id == max).unwrap_or(0)
        } else {
            row.iter()
                .position(|&id| id == self.eos_token_id)
                .unwrap_or(0)
        }
    }
}

/// `[1, 1, seq, seq]`: 0 where a token may see another (itself and earlier), −∞ after.
fn causal_mask<B: Backend>(seq: usize, device: &B::Device) -> Tensor<B, 4> {
    let data: Vec<f32> = (0..seq)
        .flat_map(|q| (0..seq).map(move |k| if k > q { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Tensor::from_data(TensorData::new(data, [1, 1, seq, seq]), device)
}

/// Loads a `text_encoder/` folder (transformers' `CLIPTextModel`, with or without
/// the `text_model.` prefix older versions saved).
pub fn load_clip_text<B: Backend>(
    dir: &Path,
    device: &B::Device,
    dtype: DType,
) -> Result<(ClipTextConfig, ClipTextModel<B>), TextEncoderError> {
    let config: ClipTextConfig = read_config(dir)?;
    if !matches!(config.hidden_act.as_str(), "quick_gelu" | "gelu") {
        return Err(TextEncoderError::Config {
            path: dir.join("config.json").display().to_string(),
            message: format!(
                "hidden_act {:?} is not supported (quick_gelu, gelu are)",
                config.hidden_act
            ),
        });
    }
    let files = SafetensorsFiles::open(dir)?;
    let prefix = if files.contains("text_model.embeddings.token_embedding.weight") {
        "text_model."
    } else {
        ""
    };
    let l = Loader {
        source: &files,
        device,
        compute: dtype,
        storage: anneal_model::backend::LayerStorage::Computed,
    };
    let (w, inter) = (config.hidden_size, config.intermediate_size);
    let heads = config.num_attention_heads;
    let f32 = |_| DType::F32;
    let norm = |name: &str| -> Result<LayerNorm<B>, anneal_model::llm::ModelError> {
        Ok(LayerNorm {
            gamma: Param::from_tensor(l.load::<1>(&format!("{prefix}{name}.weight"), [w], f32)?),
            beta: Param::from_tensor(l.load::<1>(&format!("{prefix}{name}.bias"), [w], f32)?),
            epsilon: config.layer_norm_eps,
        })
    };
    let layers = (0..config.num_hidden_layers)
        .map(|i| {
            let p = format!("{prefix}encoder.layers.{i}");
            let a = format!("{p}.self_attn");
            Ok(ClipLayer {
                layer_norm1: norm(&format!("encoder.layers.{i}.layer_norm1"))?,
                self_attn: SelfAttention {
                    q: l.projection(&format!("{a}.q_proj"), w, w, true)?,
                    k: l.projection(&format!("{a}.k_proj"), w, w, true)?,
                    v: l.projection(&format!("{a}.v_proj"), w, w, true)?,
                    o: l.projection(&format!("{a}.out_proj"), w, w, true)?,
                    heads,
                    head_dim: w / heads,
                    scale: 1.0 / ((w / heads) as f64).sqrt(),
                },
                layer_norm2: norm(&format!("encoder.layers.{i}.layer_norm2"))?,
                fc1: l.projection(&format!("{p}.mlp.fc1"), w, inter, true)?,
                fc2: l.projection(&format!("{p}.mlp.fc2"), inter, w, true)?,
                quick_gelu: config.hidden_act == "quick_gelu",
            })
        })
        .collect::<Result<Vec<_>, anneal_model::llm::ModelError>>()?;
    let model = ClipTextModel {
        token_embedding: Param::from_tensor(l.load::<2>(
            &format!("{prefix}embeddings.token_embedding.weight"),
            [config.vocab_size, w],
            l.base(),
        )?),
        position_embedding: Param::from_tensor(l.load::<2>(
            &format!("{prefix}embeddings.position_embedding.weight"),
            [config.max_position_embeddings, w],
            l.base(),
        )?),
        layers,
        final_layer_norm: norm("final_layer_norm")?,
        eos_token_id: config.eos_token_id,
        compute: dtype,
    };
    Ok((config, model))
}

impl ClipTextConfig {
    /// Parameters of the text model, for memory plans.
    pub fn parameters(&self) -> u64 {
        let (w, inter) = (self.hidden_size as u64, self.intermediate_size as u64);
        let layer = 4 * (w * w + w) + 4 * w + (w * inter + inter) + (inter * w + w);
        (self.vocab_size + self.max_position_embeddings) as u64 * w
            + self.num_hidden_layers as u64 * layer
            + 2 * w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_vit_l_text_model_has_transformers_parameter_count() {
        let config: ClipTextConfig = serde_json::from_str(
            r#"{"vocab_size": 49408, "hidden_size": 768, "intermediate_size": 3072,
                "num_hidden_layers": 12, "num_attention_heads": 12,
                "max_position_embeddings": 77}"#,
        )
        .unwrap();
        // transformers' CLIPTextModel for openai/clip-vit-large-patch14 (FLUX.1's text_encoder).
        assert_eq!(config.parameters(), 123_060_480);
    }
}
