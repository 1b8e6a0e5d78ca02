//! LoRA adapters in the format Hugging Face PEFT and vLLM load: a folder with
//! `adapter_config.json` and `adapter_model.safetensors`, tensors named
//! `base_model.model.model.layers.{i}.{self_attn|mlp}.{module}.lora_{A|B}.weight`
//! with A as `[rank, in]` and B as `[out, rank]`.

use std::path::{Path, PathBuf};

use anneal_crds::hyperparameters::{TargetModule, lora_scale};
use burn::module::Param;
use burn::nn::Dropout;
use burn::prelude::*;
use safetensors::{Dtype, SafeTensorError, SafeTensors};
use serde::{Deserialize, Serialize};

use super::{LoraSettings, projections_mut};
use crate::llm::CausalLm;
use crate::llm::projection::LoraAdapter;
use crate::safetensors_out::{TensorRow, write_safetensors};

pub const CONFIG_FILE: &str = "adapter_config.json";
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";

/// Why an adapter could not be read or written. Each message names the file or
/// tensor at fault first.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `adapter_config.json` is not the JSON PEFT writes.
    #[error("{}: {source}", path.display())]
    Config {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{}: {source}", path.display())]
    Safetensors {
        path: PathBuf,
        source: SafeTensorError,
    },
    #[error(
        "{}: only plain LoRA adapters are supported (peft_type LORA, use_dora false, bias none); got peft_type {peft_type:?}, use_dora {use_dora}, bias {bias:?}",
        path.display()
    )]
    NotPlainLora {
        path: PathBuf,
        peft_type: String,
        use_dora: bool,
        bias: String,
    },
    #[error("{}: r must be at least 1", path.display())]
    ZeroRank { path: PathBuf },
    #[error(
        "{}: target_modules {target_modules:?} name no projection of this model",
        path.display()
    )]
    NoTargetModule {
        path: PathBuf,
        target_modules: Vec<String>,
    },
    #[error("adapter tensor {tensor}: {problem}")]
    Tensor {
        tensor: String,
        problem: AdapterTensorProblem,
    },
}

/// What is wrong with one of an adapter's matrices.
#[derive(Debug, thiserror::Error)]
pub enum AdapterTensorProblem {
    #[error("missing")]
    Missing,
    #[error("expected shape {expected:?}, found {found:?}")]
    Shape {
        expected: [usize; 2],
        found: Vec<usize>,
    },
    #[error("dtype {0:?} is not supported")]
    Dtype(Dtype),
}

impl AdapterError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        AdapterError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    fn safetensors(path: &Path, source: SafeTensorError) -> Self {
        AdapterError::Safetensors {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The fields of `adapter_config.json` PEFT and vLLM read.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct AdapterConfig {
    pub peft_type: String,
    pub task_type: String,
    pub base_model_name_or_path: Option<String>,
    pub r: usize,
    pub lora_alpha: f64,
    pub lora_dropout: f64,
    pub bias: String,
    #[serde(default)]
    pub use_rslora: bool,
    #[serde(default)]
    pub use_dora: bool,
    pub target_modules: Vec<String>,
    pub modules_to_save: Option<Vec<String>>,
    #[serde(default)]
    pub fan_in_fan_out: bool,
    #[serde(default)]
    pub inference_mode: bool,
}

fn module_path(module: TargetModule) -> &'static str {
    match module {
        TargetModule::QProj | TargetModule::KProj | TargetModule::VProj | TargetModule::OProj => {
            "self_attn"
        }
        TargetModule::GateProj | TargetModule::UpProj | TargetModule::DownProj => "mlp",
    }
}

/// PEFT's name for one of the adapter's matrices; `which` is `A` or `B`.
pub fn tensor_name(layer: usize, module: TargetModule, which: char) -> String {
    format!(
        "base_model.model.model.layers.{layer}.{}.{}.lora_{which}.weight",
        module_path(module),
        module.hf_name()
    )
}

/// Writes the model's adapters (f32) and their config into `dir`.
pub fn save_adapter<B: Backend>(
    model: &mut CausalLm<B>,
    settings: &LoraSettings,
    base_model_name: &str,
    dir: &Path,
) -> Result<(), AdapterError> {
    std::fs::create_dir_all(dir).map_err(|e| AdapterError::io(dir, e))?;
    let mut tensors: Vec<TensorRow> = Vec::new();
    for (layer, module, projection) in projections_mut(model) {
        let Some(lora) = &projection.lora else {
            continue;
        };
        // Ours are [in, r] and [r, out]; PEFT's are their transposes.
        for (which, value) in [('A', lora.a.val()), ('B', lora.b.val())] {
            let value = value.transpose();
            let shape = value.dims().to_vec();
            let data = value.into_data().convert::<f32>();
            tensors.push((
                tensor_name(layer, module, which),
                Dtype::F32,
                shape,
                data.as_bytes().to_vec(),
            ));
        }
    }
    let weights = dir.join(WEIGHTS_FILE);
    write_safetensors(&tensors, &weights).map_err(|e| AdapterError::safetensors(&weights, e))?;

    let config = AdapterConfig {
        peft_type: "LORA".into(),
        task_type: "CAUSAL_LM".into(),
        base_model_name_or_path: Some(base_model_name.to_owned()),
        r: settings.rank,
        lora_alpha: settings.alpha,
        lora_dropout: settings.dropout,
        bias: "none".into(),
        use_rslora: settings.use_rslora,
        use_dora: false,
        target_modules: settings
            .target_modules
            .iter()
            .map(|m| m.hf_name().to_owned())
            .collect(),
        modules_to_save: None,
        fan_in_fan_out: false,
        inference_mode: true,
    };
    let path = dir.join(CONFIG_FILE);
    let text = serde_json::to_string_pretty(&config).expect("the config serializes");
    std::fs::write(&path, text).map_err(|e| AdapterError::io(&path, e))
}

/// Reads and checks an adapter folder's `adapter_config.json`: plain LoRA only.
pub fn read_adapter_config(dir: &Path) -> Result<AdapterConfig, AdapterError> {
    let config_path = dir.join(CONFIG_FILE);
    let text =
        std::fs::read_to_string(&config_path).map_err(|e| AdapterError::io(&config_path, e))?;
    let config: AdapterConfig =
        serde_json::from_str(&text).map_err(|source| AdapterError::Config {
            path: config_path.clone(),
            source,
        })?;
    if config.peft_type != "LORA" || config.use_dora || config.bias != "none" {
        return Err(AdapterError::NotPlainLora {
            path: config_path,
            peft_type: config.peft_type,
            use_dora: config.use_dora,
            bias: config.bias,
        });
    }
    if config.r == 0 {
        return Err(AdapterError::ZeroRank { path: config_path });
    }
    Ok(config)
}

/// Reads an adapter folder and attaches it to `model` (whose base stays frozen).
pub fn load_adapter<B: Backend>(
    model: CausalLm<B>,
    dir: &Path,
) -> Result<CausalLm<B>, AdapterError> {
    let config_path = dir.join(CONFIG_FILE);
    let config = read_adapter_config(dir)?;
    let scale = lora_scale(config.lora_alpha, config.r, config.use_rslora);
    let weights_path = dir.join(WEIGHTS_FILE);
    let bytes = std::fs::read(&weights_path).map_err(|e| AdapterError::io(&weights_path, e))?;
    let tensors = SafeTensors::deserialize(&bytes)
        .map_err(|e| AdapterError::safetensors(&weights_path, e))?;

    let mut model = model.no_grad();
    let mut attached = 0;
    for (layer, module, projection) in projections_mut(&mut model) {
        if !config.target_modules.iter().any(|t| t == module.hf_name()) {
            continue;
        }
        let [input, output] = projection.base.weight.dims();
        let device = &projection.base.weight.device();
        let a = read_matrix::<B>(
            &tensors,
            &tensor_name(layer, module, 'A'),
            [config.r, input],
            device,
        )?;
        let b = read_matrix::<B>(
            &tensors,
            &tensor_name(layer, module, 'B'),
            [output, config.r],
            device,
        )?;
        // Stored transposed, and copied into our layout rather than kept as transposed
        // views: an adapter read back then computes exactly as the one that was saved
        // (a matrix product's rounding depends on its operands' memory layout).
        let ours = |t: Tensor<B, 2>| Tensor::<B, 2>::from_data(t.transpose().into_data(), device);
        projection.lora = Some(LoraAdapter {
            a: Param::from_tensor(ours(a)),
            b: Param::from_tensor(ours(b)),
            scale,
            dropout: Dropout { prob: 0.0 },
        });
        attached += 1;
    }
    if attached == 0 {
        return Err(AdapterError::NoTargetModule {
            path: config_path,
            target_modules: config.target_modules,
        });
    }
    Ok(model)
}

fn read_matrix<B: Backend>(
    tensors: &SafeTensors<'_>,
    name: &str,
    shape: [usize; 2],
    device: &B::Device,
) -> Result<Tensor<B, 2>, AdapterError> {
    let err = |problem: AdapterTensorProblem| AdapterError::Tensor {
        tensor: name.to_owned(),
        problem,
    };
    let view = tensors
        .tensor(name)
        .map_err(|_| err(AdapterTensorProblem::Missing))?;
    if view.shape() != shape {
        return Err(err(AdapterTensorProblem::Shape {
            expected: shape,
            found: view.shape().to_vec(),
        }));
    }
    let dtype = match view.dtype() {
        Dtype::F32 => burn::tensor::DType::F32,
        Dtype::BF16 => burn::tensor::DType::BF16,
        Dtype::F16 => burn::tensor::DType::F16,
        other => return Err(err(AdapterTensorProblem::Dtype(other))),
    };
    let data = TensorData::from_bytes_vec(view.data().to_vec(), shape.to_vec(), dtype);
    Ok(Tensor::from_data(data, (device, burn::tensor::DType::F32)))
}
