//! Building the FLUX transformer from a diffusers `transformer/` folder
//! (`diffusion_pytorch_model.safetensors`, or its shards and index), by diffusers'
//! tensor names, with the chat models' loader: one host copy per tensor, matrices
//! kept in the checkpoint's half dtype when computing in one, norms in f32.

use std::path::Path;

use anneal_model::llm::ModelError;
use anneal_model::llm::weights::{Loader, SafetensorsFiles, WeightSource};
use burn::nn::RmsNorm;
use burn::prelude::*;
use burn::tensor::DType;

use super::attention::QkvStream;
use super::blocks::{DoubleStreamBlock, FeedForward, OutputHead, SingleStreamBlock};
use super::config::{FluxConfig, FluxConfigError};
use super::embed::{Mlp, SINUSOID_DIM, TimeTextEmbed};
use super::linear::Linear2;
use super::transformer::FluxTransformer;

/// Why a FLUX transformer could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum FluxLoadError {
    #[error(transparent)]
    Config(#[from] FluxConfigError),
    #[error(transparent)]
    Weights(#[from] ModelError),
}

/// The RMSNorm epsilon of FLUX's query and key norms.
const QK_NORM_EPS: f64 = 1e-6;

/// Loads `dir` (a diffusers `transformer/` folder) onto `device`, to compute in `dtype`.
pub fn load_flux_transformer<B: Backend>(
    dir: &Path,
    device: &B::Device,
    dtype: DType,
) -> Result<(FluxConfig, FluxTransformer<B>), FluxLoadError> {
    let config = FluxConfig::read(dir)?;
    let files = SafetensorsFiles::open_stem(dir, "diffusion_pytorch_model")?;
    let model = build_flux_transformer(&config, &files, device, dtype)?;
    Ok((config, model))
}

/// Builds the transformer for `config` from `source`.
pub fn build_flux_transformer<B: Backend>(
    config: &FluxConfig,
    source: &impl WeightSource,
    device: &B::Device,
    dtype: DType,
) -> Result<FluxTransformer<B>, ModelError> {
    let l = Loader {
        source,
        device,
        compute: dtype,
        storage: anneal_model::backend::LayerStorage::Computed,
    };
    let d = config.inner_dim();
    let heads = config.num_attention_heads;
    let head_dim = config.attention_head_dim;
    let linear = |name: &str, input: usize, out: usize| -> Result<Linear2<B>, ModelError> {
        l.projection(name, input, out, true)
    };
    let mlp = |name: &str, input: usize| -> Result<Mlp<B>, ModelError> {
        Ok(Mlp {
            linear_1: linear(&format!("{name}.linear_1"), input, d)?,
            linear_2: linear(&format!("{name}.linear_2"), d, d)?,
        })
    };
    let norm =
        |name: &str| -> Result<RmsNorm<B>, ModelError> { l.rms_norm(name, head_dim, QK_NORM_EPS) };
    let qkv = |p: &str,
               q: &str,
               k: &str,
               v: &str,
               nq: &str,
               nk: &str|
     -> Result<QkvStream<B>, ModelError> {
        Ok(QkvStream {
            to_q: linear(&format!("{p}.{q}"), d, d)?,
            to_k: linear(&format!("{p}.{k}"), d, d)?,
            to_v: linear(&format!("{p}.{v}"), d, d)?,
            norm_q: norm(&format!("{p}.{nq}"))?,
            norm_k: norm(&format!("{p}.{nk}"))?,
        })
    };
    let feed_forward = |p: &str| -> Result<FeedForward<B>, ModelError> {
        Ok(FeedForward {
            up: linear(&format!("{p}.net.0.proj"), d, 4 * d)?,
            down: linear(&format!("{p}.net.2"), 4 * d, d)?,
        })
    };

    let double_blocks = (0..config.num_layers)
        .map(|i| {
            let p = format!("transformer_blocks.{i}");
            let attn = format!("{p}.attn");
            Ok(DoubleStreamBlock {
                norm1: linear(&format!("{p}.norm1.linear"), d, 6 * d)?,
                norm1_context: linear(&format!("{p}.norm1_context.linear"), d, 6 * d)?,
                image_qkv: qkv(&attn, "to_q", "to_k", "to_v", "norm_q", "norm_k")?,
                text_qkv: qkv(
                    &attn,
                    "add_q_proj",
                    "add_k_proj",
                    "add_v_proj",
                    "norm_added_q",
                    "norm_added_k",
                )?,
                to_out: linear(&format!("{attn}.to_out.0"), d, d)?,
                to_add_out: linear(&format!("{attn}.to_add_out"), d, d)?,
                ff: feed_forward(&format!("{p}.ff"))?,
                ff_context: feed_forward(&format!("{p}.ff_context"))?,
                heads,
            })
        })
        .collect::<Result<Vec<_>, ModelError>>()?;
    let single_blocks = (0..config.num_single_layers)
        .map(|i| {
            let p = format!("single_transformer_blocks.{i}");
            Ok(SingleStreamBlock {
                norm: linear(&format!("{p}.norm.linear"), d, 3 * d)?,
                qkv: qkv(
                    &format!("{p}.attn"),
                    "to_q",
                    "to_k",
                    "to_v",
                    "norm_q",
                    "norm_k",
                )?,
                proj_mlp: linear(&format!("{p}.proj_mlp"), d, 4 * d)?,
                proj_out: linear(&format!("{p}.proj_out"), 5 * d, d)?,
                heads,
            })
        })
        .collect::<Result<Vec<_>, ModelError>>()?;

    Ok(FluxTransformer {
        x_embedder: linear("x_embedder", config.in_channels, d)?,
        context_embedder: linear("context_embedder", config.joint_attention_dim, d)?,
        time_text_embed: TimeTextEmbed {
            timestep_embedder: mlp("time_text_embed.timestep_embedder", SINUSOID_DIM)?,
            guidance_embedder: if config.guidance_embeds {
                Some(mlp("time_text_embed.guidance_embedder", SINUSOID_DIM)?)
            } else {
                None
            },
            text_embedder: mlp(
                "time_text_embed.text_embedder",
                config.pooled_projection_dim,
            )?,
        },
        double_blocks,
        single_blocks,
        head: OutputHead {
            norm_out: linear("norm_out.linear", d, 2 * d)?,
            proj_out: linear("proj_out", d, config.out_channels())?,
        },
        axes: config.axes_dims_rope.clone(),
        compute: dtype,
    })
}
