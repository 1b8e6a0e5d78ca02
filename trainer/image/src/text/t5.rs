//! T5 v1.1's encoder (`T5EncoderModel`, google/t5-v1_1-xxl in FLUX.1: width 4,096,
//! 24 blocks, 64 heads of 64, gated-GELU feed-forward of 10,240): pre-norm blocks
//! (RMS norm without mean), attention without score scaling and with a learned bias
//! per head and relative-position bucket (first block's table, shared by all).

use std::path::Path;

use burn::nn::RmsNorm;
use burn::prelude::*;
use burn::tensor::DType;
use burn::tensor::activation::gelu_approximate;
use serde::Deserialize;

use anneal_model::llm::ModelError;
use anneal_model::llm::precision::rms_norm;
use anneal_model::llm::projection::Projection;
use anneal_model::llm::weights::{Loader, SafetensorsFiles};

use super::layers::{SelfAttention, embed};
use super::{TextEncoderError, read_config};

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct T5Config {
    pub vocab_size: usize,
    pub d_model: usize,
    pub d_kv: usize,
    pub d_ff: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    #[serde(default = "buckets")]
    pub relative_attention_num_buckets: usize,
    #[serde(default = "max_distance")]
    pub relative_attention_max_distance: usize,
    #[serde(default = "epsilon")]
    pub layer_norm_epsilon: f64,
    #[serde(default = "gated_gelu")]
    pub feed_forward_proj: String,
}

fn buckets() -> usize {
    32
}
fn max_distance() -> usize {
    128
}
fn epsilon() -> f64 {
    1e-6
}
fn gated_gelu() -> String {
    "gated-gelu".into()
}

#[derive(Module, Debug)]
pub struct T5Block<B: Backend> {
    pub attn_norm: RmsNorm<B>,
    pub attention: SelfAttention<B>,
    pub ff_norm: RmsNorm<B>,
    pub wi_0: Projection<B>,
    pub wi_1: Projection<B>,
    pub wo: Projection<B>,
}

#[derive(Module, Debug)]
pub struct T5Encoder<B: Backend> {
    pub shared: burn::module::Param<Tensor<B, 2>>,
    /// `[buckets, heads]`.
    pub relative_attention_bias: burn::module::Param<Tensor<B, 2>>,
    pub blocks: Vec<T5Block<B>>,
    pub final_layer_norm: RmsNorm<B>,
    pub buckets: usize,
    pub max_distance: usize,
}

impl<B: Backend> T5Encoder<B> {
    /// `ids`: `[batch][seq]`, rows of one length. Returns `[batch, seq, d_model]`.
    pub fn forward(&self, ids: &[Vec<u32>]) -> Tensor<B, 3> {
        let seq = ids[0].len();
        let mut x = embed(&self.shared.val(), ids);
        let bias = self.position_bias(seq); // [1, heads, s, s]
        for block in &self.blocks {
            x = x.clone()
                + block
                    .attention
                    .forward(rms_norm(&block.attn_norm, x), &bias);
            let h = rms_norm(&block.ff_norm, x.clone());
            let gated = gelu_approximate(block.wi_0.forward(h.clone())) * block.wi_1.forward(h);
            x = x + block.wo.forward(gated);
        }
        rms_norm(&self.final_layer_norm, x)
    }

    /// The learned bias of each head for each (query, key) pair's bucket, f32.
    fn position_bias(&self, seq: usize) -> Tensor<B, 4> {
        let device = self.shared.device();
        let buckets: Vec<i64> = (0..seq)
            .flat_map(|q| (0..seq).map(move |k| (k as i64, q as i64)))
            .map(|(k, q)| relative_bucket(k - q, self.buckets, self.max_distance) as i64)
            .collect();
        let index = Tensor::<B, 1, Int>::from_data(TensorData::new(buckets, [seq * seq]), &device);
        let table = self.relative_attention_bias.val().cast(DType::F32);
        let heads = table.dims()[1];
        table
            .select(0, index) // [s·s, heads]
            .reshape([seq, seq, heads])
            .permute([2, 0, 1])
            .unsqueeze_dim(0)
    }
}

/// T5's bidirectional bucket of `relative = key − query`: half the buckets for keys
/// after the query; within each half, exact buckets for distances below a quarter of
/// the buckets, logarithmic ones up to `max_distance`, the last for anything further.
pub fn relative_bucket(relative: i64, buckets: usize, max_distance: usize) -> usize {
    let half = buckets / 2;
    let offset = if relative > 0 { half } else { 0 };
    let distance = relative.unsigned_abs() as usize;
    let exact = half / 2;
    if distance < exact {
        return offset + distance;
    }
    // In f32, as transformers computes it, then truncated.
    let log_ratio = (distance as f32 / exact as f32).ln()
        / ((max_distance as f64 / exact as f64).ln() as f32)
        * (half - exact) as f32;
    offset + (exact + log_ratio as usize).min(half - 1)
}

/// Loads a `text_encoder_2/` folder (transformers' `T5EncoderModel`).
pub fn load_t5_encoder<B: Backend>(
    dir: &Path,
    device: &B::Device,
    dtype: DType,
) -> Result<(T5Config, T5Encoder<B>), TextEncoderError> {
    let config: T5Config = read_config(dir)?;
    if config.feed_forward_proj != "gated-gelu" {
        return Err(TextEncoderError::Config {
            path: dir.join("config.json").display().to_string(),
            message: format!(
                "feed_forward_proj {:?} is not supported: FLUX's T5 v1.1 uses gated-gelu",
                config.feed_forward_proj
            ),
        });
    }
    let files = SafetensorsFiles::open(dir)?;
    let l = Loader {
        source: &files,
        device,
        compute: dtype,
        storage: anneal_model::backend::LayerStorage::Computed,
    };
    let (d, inner, ff) = (config.d_model, config.num_heads * config.d_kv, config.d_ff);
    let eps = config.layer_norm_epsilon;
    let blocks = (0..config.num_layers)
        .map(|i| {
            let p = format!("encoder.block.{i}.layer");
            let a = format!("{p}.0.SelfAttention");
            let f = format!("{p}.1.DenseReluDense");
            Ok(T5Block {
                attn_norm: l.rms_norm(&format!("{p}.0.layer_norm"), d, eps)?,
                attention: SelfAttention {
                    q: l.projection(&format!("{a}.q"), d, inner, false)?,
                    k: l.projection(&format!("{a}.k"), d, inner, false)?,
                    v: l.projection(&format!("{a}.v"), d, inner, false)?,
                    o: l.projection(&format!("{a}.o"), inner, d, false)?,
                    heads: config.num_heads,
                    head_dim: config.d_kv,
                    scale: 1.0,
                },
                ff_norm: l.rms_norm(&format!("{p}.1.layer_norm"), d, eps)?,
                wi_0: l.projection(&format!("{f}.wi_0"), d, ff, false)?,
                wi_1: l.projection(&format!("{f}.wi_1"), d, ff, false)?,
                wo: l.projection(&format!("{f}.wo"), ff, d, false)?,
            })
        })
        .collect::<Result<Vec<_>, ModelError>>()?;
    let embedding = if files.contains("shared.weight") {
        "shared.weight"
    } else {
        "encoder.embed_tokens.weight"
    };
    let model = T5Encoder {
        shared: burn::module::Param::from_tensor(l.load::<2>(
            embedding,
            [config.vocab_size, d],
            l.base(),
        )?),
        relative_attention_bias: burn::module::Param::from_tensor(l.load::<2>(
            "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
            [config.relative_attention_num_buckets, config.num_heads],
            |_| DType::F32,
        )?),
        blocks,
        final_layer_norm: l.rms_norm("encoder.final_layer_norm", d, eps)?,
        buckets: config.relative_attention_num_buckets,
        max_distance: config.relative_attention_max_distance,
    };
    Ok((config, model))
}

impl T5Config {
    /// Parameters of the encoder, for memory plans.
    pub fn parameters(&self) -> u64 {
        let (d, inner, ff) = (
            self.d_model as u64,
            (self.num_heads * self.d_kv) as u64,
            self.d_ff as u64,
        );
        let block = 4 * d * inner + 3 * d * ff + 2 * d;
        self.vocab_size as u64 * d
            + (self.relative_attention_num_buckets * self.num_heads) as u64
            + self.num_layers as u64 * block
            + d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t5_v1_1_xxl_encoder_has_transformers_parameter_count() {
        let config: T5Config = serde_json::from_str(
            r#"{"vocab_size": 32128, "d_model": 4096, "d_kv": 64, "d_ff": 10240,
                "num_layers": 24, "num_heads": 64, "feed_forward_proj": "gated-gelu"}"#,
        )
        .unwrap();
        // transformers' T5EncoderModel for google/t5-v1_1-xxl (FLUX.1's text_encoder_2).
        assert_eq!(config.parameters(), 4_762_310_656);
    }
}
