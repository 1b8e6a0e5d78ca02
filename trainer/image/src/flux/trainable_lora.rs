//! LoRA training on the FLUX transformer: which linear layers an image job adapts,
//! fresh adapters drawn as PEFT draws them, and the trained adapter written in
//! diffusers' FLUX format with its metadata, so that `FluxPipeline.load_lora_weights`,
//! [`super::lora::FluxLora::read`] and `trainer serve` all read it back.
//!
//! Attention is adapted by default, as diffusers' FLUX LoRA script does: in each
//! double-stream block the image and text query, key, value and output projections,
//! in each single-stream block the query, key and value projections. With the MLP
//! option, also the double blocks' feed-forward layers (image and text) and the
//! single blocks' MLP input and joint output projections.

use std::collections::HashMap;

use anneal_model::llm::projection::LoraAdapter;
use burn::module::Param;
use burn::nn::Dropout;
use burn::prelude::*;
use burn::tensor::DType;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use safetensors::Dtype;

use super::lora::FluxLora;
use super::transformer::FluxTransformer;

/// The shape and init of the adapters an image job trains.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainableLora {
    pub rank: usize,
    pub alpha: f64,
    pub dropout: f64,
    pub seed: u64,
    pub include_mlp: bool,
}

impl TrainableLora {
    /// `alpha / rank`, the update's scale.
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }
}

/// Double-stream block layers adapted for attention.
const DOUBLE_ATTENTION: [&str; 8] = [
    "attn.to_q",
    "attn.to_k",
    "attn.to_v",
    "attn.to_out.0",
    "attn.add_q_proj",
    "attn.add_k_proj",
    "attn.add_v_proj",
    "attn.to_add_out",
];
const DOUBLE_MLP: [&str; 4] = [
    "ff.net.0.proj",
    "ff.net.2",
    "ff_context.net.0.proj",
    "ff_context.net.2",
];
const SINGLE_ATTENTION: [&str; 3] = ["attn.to_q", "attn.to_k", "attn.to_v"];
const SINGLE_MLP: [&str; 2] = ["proj_mlp", "proj_out"];

/// The diffusers module paths adapted in a transformer of `double` and `single`
/// blocks (`transformer_blocks.0.attn.to_q`, ...), in a fixed order.
pub fn lora_targets(double: usize, single: usize, include_mlp: bool) -> Vec<String> {
    let mut targets = Vec::new();
    for block in 0..double {
        let layers = DOUBLE_ATTENTION
            .iter()
            .chain(if include_mlp { &DOUBLE_MLP[..] } else { &[] });
        targets.extend(layers.map(|layer| format!("transformer_blocks.{block}.{layer}")));
    }
    for block in 0..single {
        let layers = SINGLE_ATTENTION
            .iter()
            .chain(if include_mlp { &SINGLE_MLP[..] } else { &[] });
        targets.extend(layers.map(|layer| format!("single_transformer_blocks.{block}.{layer}")));
    }
    targets
}

/// Attaches a fresh adapter to each of `targets`, every base weight frozen: A drawn
/// uniform in ±1/sqrt(in) (PEFT's Kaiming-uniform with a = sqrt(5)), B zero, so the
/// model is unchanged until training moves B. Each layer's draws come from a seed of
/// its own, so the adapter does not depend on the order layers are visited in.
pub fn attach_trainable<B: Backend>(
    model: FluxTransformer<B>,
    targets: &[String],
    settings: &TrainableLora,
) -> Result<FluxTransformer<B>, String> {
    let mut model = model.no_grad();
    model.clear_loras();
    for (index, target) in targets.iter().enumerate() {
        let projection = model
            .projection_mut(target)
            .ok_or_else(|| format!("no linear layer {target} in this FLUX transformer"))?;
        let [input, output] = projection.base.weight.dims();
        let device = projection.base.weight.device();
        let mut rng = StdRng::seed_from_u64(layer_seed(settings.seed, index));
        let bound = 1.0 / (input as f32).sqrt();
        let a: Vec<f32> = (0..input * settings.rank)
            .map(|_| rng.random_range(-bound..bound))
            .collect();
        projection.lora = Some(LoraAdapter {
            a: Param::from_tensor(Tensor::from_data(
                TensorData::new(a, [input, settings.rank]),
                (&device, DType::F32),
            )),
            b: Param::from_tensor(Tensor::zeros(
                [settings.rank, output],
                (&device, DType::F32),
            )),
            scale: settings.scale(),
            dropout: Dropout {
                prob: settings.dropout,
            },
        });
    }
    Ok(model)
}

/// Attaches to each of `targets` the trainable adapter `saved` holds (a checkpoint
/// [`diffusers_lora_bytes`] wrote), every base weight frozen: the run continues
/// from the same matrices, bit for bit (f32 in, f32 out).
pub fn attach_saved<B: Backend>(
    model: FluxTransformer<B>,
    targets: &[String],
    settings: &TrainableLora,
    saved: &FluxLora,
) -> Result<FluxTransformer<B>, String> {
    let mut model = model.no_grad();
    model.clear_loras();
    for target in targets {
        let (a, b) = saved
            .matrices(target)
            .ok_or_else(|| format!("{}: has no adapter for {target}", saved.path.display()))?;
        let projection = model
            .projection_mut(target)
            .ok_or_else(|| format!("no linear layer {target} in this FLUX transformer"))?;
        let device = projection.base.weight.device();
        let [input, output] = projection.base.weight.dims();
        // Stored [r, in] and [out, r]; ours are their transposes.
        let own = |data: &TensorData| -> Tensor<B, 2> {
            let stored =
                Tensor::<B, 2>::from_data(data.clone().convert::<f32>(), (&device, DType::F32));
            Tensor::from_data(stored.transpose().into_data(), (&device, DType::F32))
        };
        let (a, b) = (own(a), own(b));
        if a.dims() != [input, settings.rank] || b.dims() != [settings.rank, output] {
            return Err(format!(
                "{}: {target} has rank {} for a {}x{} layer; the job trains rank {} on {input}x{output}",
                saved.path.display(),
                a.dims()[1],
                a.dims()[0],
                b.dims()[1],
                settings.rank
            ));
        }
        projection.lora = Some(LoraAdapter {
            a: Param::from_tensor(a),
            b: Param::from_tensor(b),
            scale: settings.scale(),
            dropout: Dropout {
                prob: settings.dropout,
            },
        });
    }
    Ok(model)
}

fn layer_seed(seed: u64, index: usize) -> u64 {
    seed ^ ((index as u64) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// The trained adapter as diffusers stores it: per target,
/// `transformer.<path>.lora_A.weight` `[r, in]` and `lora_B.weight` `[out, r]` in
/// f32, and the metadata (`transformer.r`, `transformer.lora_alpha`,
/// `transformer.target_modules`) that makes its scale `alpha / r` on load.
pub fn diffusers_lora_bytes<B: Backend>(
    model: &mut FluxTransformer<B>,
    targets: &[String],
    settings: &TrainableLora,
) -> Result<Vec<u8>, String> {
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for target in targets {
        let projection = model
            .projection_mut(target)
            .ok_or_else(|| format!("no linear layer {target} in this FLUX transformer"))?;
        let lora = projection
            .lora
            .as_ref()
            .ok_or_else(|| format!("{target} has no adapter"))?;
        // Ours are [in, r] and [r, out]; diffusers' are their transposes.
        let a = lora.a.val().transpose();
        let b = lora.b.val().transpose();
        for (suffix, tensor) in [("lora_A", a), ("lora_B", b)] {
            let shape = tensor.dims().to_vec();
            let values = tensor
                .into_data()
                .convert::<f32>()
                .to_vec::<f32>()
                .map_err(|e| format!("{target}: {e:?}"))?;
            let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            tensors.push((
                format!("transformer.{target}.{suffix}.weight"),
                shape,
                bytes,
            ));
        }
    }
    let modules: Vec<String> = {
        let mut names: Vec<String> = targets
            .iter()
            .map(|t| {
                // The layer's name within its block, as PEFT's target_modules lists them.
                let parts: Vec<&str> = t.split('.').collect();
                parts[2..].join(".")
            })
            .collect();
        names.sort();
        names.dedup();
        names
    };
    let metadata = serde_json::json!({
        "transformer.r": settings.rank,
        "transformer.lora_alpha": settings.alpha,
        "transformer.lora_dropout": settings.dropout,
        "transformer.target_modules": modules,
        "transformer.use_rslora": false,
    });
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(name, shape, bytes)| {
            safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), bytes)
                .map(|view| (name.clone(), view))
                .map_err(|e| format!("{name}: {e}"))
        })
        .collect::<Result<_, _>>()?;
    // One metadata entry: the header's map has no fixed order, and equal adapters
    // must give equal bytes (checkpoints are compared and resumed bit for bit).
    let info = HashMap::from([("lora_adapter_metadata".to_owned(), metadata.to_string())]);
    safetensors::serialize(views, Some(info)).map_err(|e| e.to_string())
}
