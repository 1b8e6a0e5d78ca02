//! Writing a model back out as a Hugging Face folder (`model.safetensors` with
//! transformers' tensor names and `[out, in]` matrices, plus the base folder's
//! config and tokenizer files): what full fine-tuning checkpoints are, so that
//! transformers, vLLM and `trainer generate --model` load them like any model.

use std::path::Path;

use burn::module::{Param, ParamId};
use burn::prelude::*;
use safetensors::Dtype;

use super::{CausalLm, ModelError};
use crate::safetensors_out::{TensorRow, write_safetensors};

/// The files of a model folder that are not weights, copied beside new weights.
pub const MODEL_SIDE_FILES: &[&str] = &[
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
];

/// One weight of the model: its transformers name, its parameter, and whether it
/// is a linear weight (ours `[in, out]`, transformers' `[out, in]`).
pub struct NamedWeight<'a, B: Backend> {
    pub name: String,
    pub param: WeightRef<'a, B>,
    pub transposed: bool,
}

pub enum WeightRef<'a, B: Backend> {
    Matrix(&'a Param<Tensor<B, 2>>),
    Vector(&'a Param<Tensor<B, 1>>),
}

impl<B: Backend> WeightRef<'_, B> {
    pub fn id(&self) -> ParamId {
        match self {
            WeightRef::Matrix(p) => p.id,
            WeightRef::Vector(p) => p.id,
        }
    }

    /// The device the weight is on (the layers may be placed on several).
    pub fn device(&self) -> B::Device {
        match self {
            WeightRef::Matrix(p) => p.device(),
            WeightRef::Vector(p) => p.device(),
        }
    }
}

/// Every base weight of `model` under its transformers name, in a fixed order.
pub fn named_weights<B: Backend>(model: &CausalLm<B>) -> Vec<NamedWeight<'_, B>> {
    let mut out = Vec::new();
    let matrix = |name: String, p, transposed| NamedWeight {
        name,
        param: WeightRef::Matrix(p),
        transposed,
    };
    let vector = |name: String, p| NamedWeight {
        name,
        param: WeightRef::Vector(p),
        transposed: false,
    };
    out.push(matrix(
        "model.embed_tokens.weight".into(),
        &model.embed_tokens.weight,
        false,
    ));
    for (i, layer) in model.layers.iter().enumerate() {
        let attn = &layer.self_attn;
        let mlp = &layer.mlp;
        for (name, projection) in [
            ("self_attn.q_proj", &attn.q_proj),
            ("self_attn.k_proj", &attn.k_proj),
            ("self_attn.v_proj", &attn.v_proj),
            ("self_attn.o_proj", &attn.o_proj),
            ("mlp.gate_proj", &mlp.gate_proj),
            ("mlp.up_proj", &mlp.up_proj),
            ("mlp.down_proj", &mlp.down_proj),
        ] {
            let prefix = format!("model.layers.{i}.{name}");
            out.push(matrix(
                format!("{prefix}.weight"),
                &projection.base.weight,
                true,
            ));
            if let Some(bias) = &projection.base.bias {
                out.push(vector(format!("{prefix}.bias"), bias));
            }
        }
        out.push(vector(
            format!("model.layers.{i}.input_layernorm.weight"),
            &layer.input_layernorm.gamma,
        ));
        out.push(vector(
            format!("model.layers.{i}.post_attention_layernorm.weight"),
            &layer.post_attention_layernorm.gamma,
        ));
    }
    out.push(vector("model.norm.weight".into(), &model.norm.gamma));
    if let Some(head) = &model.lm_head {
        out.push(matrix("lm_head.weight".into(), head, true));
    }
    out
}

/// Writes `model`'s weights (f32) as `dir/model.safetensors` and copies the side
/// files of `base_dir` (config, tokenizer) beside them.
pub fn save_model_folder<B: Backend>(
    model: &CausalLm<B>,
    base_dir: &Path,
    dir: &Path,
) -> Result<(), ModelError> {
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    let mut tensors: Vec<TensorRow> = Vec::new();
    for weight in named_weights(model) {
        let (shape, data) = match weight.param {
            WeightRef::Matrix(p) => {
                let value = if weight.transposed {
                    p.val().transpose()
                } else {
                    p.val()
                };
                (value.dims().to_vec(), value.into_data())
            }
            WeightRef::Vector(p) => (p.val().dims().to_vec(), p.val().into_data()),
        };
        let bytes = data.convert::<f32>().as_bytes().to_vec();
        tensors.push((weight.name, Dtype::F32, shape, bytes));
    }
    let weights = dir.join("model.safetensors");
    write_safetensors(&tensors, &weights).map_err(|e| ModelError::safetensors(&weights, e))?;
    for file in MODEL_SIDE_FILES {
        let from = base_dir.join(file);
        if from.exists() {
            std::fs::copy(&from, dir.join(file)).map_err(|e| ModelError::io(&from, e))?;
        }
    }
    Ok(())
}
