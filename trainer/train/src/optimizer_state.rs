//! AdamW's state for the trained parameters, saved beside each checkpoint so a
//! resumed run continues with the same moments. burn keys optimizer records by
//! `ParamId`, which is fresh every time a model is built; here the state is keyed
//! by stable names instead: the adapter's PEFT tensor names in LoRA training, the
//! transformers weight names in full training, the diffusers module paths of an
//! image job's adapter ([`save_moments`] and [`load_moments`] take any named list).

use std::path::{Path, PathBuf};

use burn::module::ParamId;
use burn::optim::Optimizer;
use burn::optim::record::AdaptorRecord;
use burn::optim::{AdamW, AdamWState, AdaptiveMomentumState};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use safetensors::{Dtype, SafeTensorError, SafeTensors};

use burn::module::AutodiffModule;

use crate::optimizer::{AdamWFor, SftOptimizer, adamw};
use anneal_model::llm::CausalLm;
use anneal_model::llm::save::{WeightRef, named_weights};
use anneal_model::lora::peft::tensor_name;
use anneal_model::lora::projections_mut;
use anneal_model::safetensors_out::{TensorRow, write_safetensors};

pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";

/// Why `optimizer.safetensors` could not be written or read back.
#[derive(Debug, thiserror::Error)]
#[error("{}: {problem}", path.display())]
pub struct OptimizerStateError {
    pub path: PathBuf,
    #[source]
    pub problem: StateFileProblem,
}

/// What is wrong with the optimizer state file.
#[derive(Debug, thiserror::Error)]
pub enum StateFileProblem {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Safetensors(#[from] SafeTensorError),
    #[error("tensor {0}.step is not one i64")]
    Step(String),
    #[error("tensor {0} is missing")]
    Missing(String),
    #[error("tensor {key} is not a {rank}-D f32 tensor")]
    NotF32 { key: String, rank: usize },
}

/// A trained parameter: a name stable across processes, its id now, its rank (1
/// or 2), and the device its optimizer state belongs on.
pub struct TrainedParam<D> {
    pub name: String,
    pub id: ParamId,
    pub rank: usize,
    pub device: D,
}

type Trained<D> = TrainedParam<D>;

/// The adapter's matrices when the model has adapters, else every base weight.
fn trained_params<B: Backend>(model: &mut CausalLm<B>) -> Vec<Trained<B::Device>> {
    let mut adapters = Vec::new();
    for (layer, module, projection) in projections_mut(model) {
        if let Some(lora) = &projection.lora {
            for (which, id) in [('A', lora.a.id), ('B', lora.b.id)] {
                adapters.push(Trained {
                    name: tensor_name(layer, module, which),
                    id,
                    rank: 2,
                    device: lora.a.device(),
                });
            }
        }
    }
    if !adapters.is_empty() {
        return adapters;
    }
    named_weights(model)
        .into_iter()
        .map(|w| Trained {
            name: w.name,
            id: w.param.id(),
            rank: match w.param {
                WeightRef::Matrix(_) => 2,
                WeightRef::Vector(_) => 1,
            },
            device: w.param.device(),
        })
        .collect()
}

type Record<M, B> = <AdamWFor<M, B> as Optimizer<M, B>>::Record;
type Tensors = Vec<TensorRow>;

/// Writes the first and second moments of every trained parameter as f32 tensors
/// `{name}.exp_avg` / `{name}.exp_avg_sq` and its step count as an i64 `{name}.step`
/// (PyTorch's names), in burn's layout (`[in, out]` matrices). Everything is a
/// tensor, none of it header metadata, so the same state always gives the same bytes.
pub fn save_optimizer_state<B: AutodiffBackend>(
    model: &mut CausalLm<B>,
    optimizer: &SftOptimizer<B>,
    path: &Path,
) -> Result<(), OptimizerStateError> {
    save_moments(optimizer, trained_params(model), path)
}

/// [`save_optimizer_state`] for any module, its trained parameters named by `params`.
pub fn save_moments<B: AutodiffBackend, M: AutodiffModule<B>>(
    optimizer: &AdamWFor<M, B>,
    params: Vec<TrainedParam<B::Device>>,
    path: &Path,
) -> Result<(), OptimizerStateError> {
    let mut records = optimizer.to_record();
    let mut tensors: Tensors = Vec::new();
    for trained in params {
        // A parameter with no record has not been stepped yet; it resumes the same way.
        let Some(record) = records.remove(&trained.id) else {
            continue;
        };
        match trained.rank {
            1 => push_state::<B, 1>(record, &trained.name, &mut tensors),
            _ => push_state::<B, 2>(record, &trained.name, &mut tensors),
        }
    }
    write_safetensors(&tensors, path).map_err(|e| OptimizerStateError {
        path: path.to_path_buf(),
        problem: e.into(),
    })
}

fn push_state<B: AutodiffBackend, const D: usize>(
    record: AdaptorRecord<AdamW, B>,
    name: &str,
    tensors: &mut Tensors,
) {
    let state: AdamWState<B::InnerBackend, D> = record.into_state();
    let time = state.momentum.time as i64;
    tensors.push((
        format!("{name}.step"),
        Dtype::I64,
        vec![1],
        time.to_le_bytes().to_vec(),
    ));
    for (suffix, moment) in [
        ("exp_avg", state.momentum.moment_1),
        ("exp_avg_sq", state.momentum.moment_2),
    ] {
        let shape = moment.dims().to_vec();
        let bytes = moment.into_data().convert::<f32>().as_bytes().to_vec();
        tensors.push((format!("{name}.{suffix}"), Dtype::F32, shape, bytes));
    }
}

/// Builds AdamW (with `weight_decay`) holding the state saved by
/// [`save_optimizer_state`], attached to the ids of `model`'s trained parameters.
pub fn load_optimizer_state<B: AutodiffBackend>(
    model: &mut CausalLm<B>,
    weight_decay: f64,
    path: &Path,
) -> Result<SftOptimizer<B>, OptimizerStateError> {
    load_moments(trained_params(model), weight_decay, path)
}

/// [`load_optimizer_state`] for any module, its trained parameters named by `params`.
pub fn load_moments<B: AutodiffBackend, M: AutodiffModule<B>>(
    params: Vec<TrainedParam<B::Device>>,
    weight_decay: f64,
    path: &Path,
) -> Result<AdamWFor<M, B>, OptimizerStateError> {
    let err = |problem: StateFileProblem| OptimizerStateError {
        path: path.to_path_buf(),
        problem,
    };
    let bytes = std::fs::read(path).map_err(|e| err(e.into()))?;
    let tensors = SafeTensors::deserialize(&bytes).map_err(|e| err(e.into()))?;
    let mut records: Record<M, B> = Default::default();
    for trained in params {
        // A parameter without state had not been stepped when the state was saved.
        let Ok(step) = tensors.tensor(&format!("{}.step", trained.name)) else {
            continue;
        };
        let time = match (step.dtype(), step.data()) {
            (Dtype::I64, data) if data.len() == 8 => {
                i64::from_le_bytes(data.try_into().expect("8 bytes")).max(0) as usize
            }
            _ => return Err(err(StateFileProblem::Step(trained.name))),
        };
        let record = match trained.rank {
            1 => read_state::<B, 1>(&tensors, &trained.name, time, &trained.device),
            _ => read_state::<B, 2>(&tensors, &trained.name, time, &trained.device),
        }
        .map_err(err)?;
        records.insert(trained.id, record);
    }
    let optimizer: AdamWFor<M, B> = adamw(weight_decay);
    Ok(optimizer.load_record(records))
}

fn read_state<B: AutodiffBackend, const D: usize>(
    tensors: &SafeTensors<'_>,
    name: &str,
    time: usize,
    device: &burn::tensor::Device<B::InnerBackend>,
) -> Result<AdaptorRecord<AdamW, B>, StateFileProblem> {
    let moment = |suffix: &str| -> Result<Tensor<B::InnerBackend, D>, StateFileProblem> {
        let key = format!("{name}.{suffix}");
        let Ok(view) = tensors.tensor(&key) else {
            return Err(StateFileProblem::Missing(key));
        };
        if view.dtype() != Dtype::F32 || view.shape().len() != D {
            return Err(StateFileProblem::NotF32 { key, rank: D });
        }
        let values: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Ok(Tensor::from_data(
            TensorData::new(values, view.shape().to_vec()),
            device,
        ))
    };
    let state = AdamWState {
        momentum: AdaptiveMomentumState {
            time,
            moment_1: moment("exp_avg")?,
            moment_2: moment("exp_avg_sq")?,
            max_moment_2: None,
        },
    };
    Ok(AdaptorRecord::from_state(state))
}
