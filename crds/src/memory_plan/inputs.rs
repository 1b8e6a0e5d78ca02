//! What a memory plan is computed from: the model's shape, the precision of its
//! frozen weights, which weights train, the sequence length and batch, recomputation,
//! and the devices; and how a FineTuneJob spec turns into those inputs.

use std::fmt;

use super::byte_size::ByteSize;
use super::model_shape::ModelShape;
use crate::finetunejob::{FineTuneJobSpec, TrainingMethod, TrainingType};
use crate::hyperparameters::{ResolvedHyperparameters, TargetModule};

/// The GPU memory a plan assumes when nothing says otherwise: `trainer plan`'s and the
/// operator's default, one H100 or A100 80GB.
pub const DEFAULT_GPU_MEMORY: ByteSize = ByteSize::gib(80);

/// The element type the base weights are held in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightDtype {
    F32,
    Bf16,
    F16,
}

impl WeightDtype {
    pub fn bytes(self) -> u64 {
        match self {
            WeightDtype::F32 => 4,
            WeightDtype::Bf16 | WeightDtype::F16 => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            WeightDtype::F32 => "f32",
            WeightDtype::Bf16 => "bf16",
            WeightDtype::F16 => "f16",
        }
    }
}

/// Where training runs; it decides the words in messages and the weights' dtype.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    /// CUDA: the frozen base stays in the checkpoint's bf16.
    Gpu,
    /// burn's CPU backend computes in f32, so the base is held as f32 (but for a
    /// frozen base's layers with recomputation: `footprint::layer_weight_dtype`).
    Cpu,
}

impl DeviceKind {
    pub fn base_dtype(self) -> WeightDtype {
        match self {
            DeviceKind::Gpu => WeightDtype::Bf16,
            DeviceKind::Cpu => WeightDtype::F32,
        }
    }

    /// "GPU" or "CPU", as messages name one device.
    pub fn noun(self) -> &'static str {
        match self {
            DeviceKind::Gpu => "GPU",
            DeviceKind::Cpu => "CPU",
        }
    }
}

/// The memory of the devices a job gets: `devices` of `per_device` bytes each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceMemory {
    pub kind: DeviceKind,
    pub per_device: ByteSize,
    pub devices: u32,
}

impl DeviceMemory {
    /// `gpus` GPUs with `per_gpu` bytes each.
    pub fn gpus(per_gpu: ByteSize, gpus: u32) -> Self {
        DeviceMemory {
            kind: DeviceKind::Gpu,
            per_device: per_gpu,
            devices: gpus,
        }
    }

    /// The CPU backend with `memory` bytes of RAM.
    pub fn cpu(memory: ByteSize) -> Self {
        DeviceMemory {
            kind: DeviceKind::Cpu,
            per_device: memory,
            devices: 1,
        }
    }

    /// The same devices, `devices` of them.
    pub fn with_devices(self, devices: u32) -> Self {
        DeviceMemory { devices, ..self }
    }
}

impl fmt::Display for DeviceMemory {
    /// `1 x 80 GiB GPU`, `2 x 141 GiB GPU`, `1 x 64 GiB CPU`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} x {} {}",
            self.devices,
            self.per_device,
            self.kind.noun()
        )
    }
}

/// Which weights receive gradients and optimizer state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrainedWeights {
    /// LoRA adapters of `rank` on `targets`; the base stays frozen. `dropout` when the
    /// adapters' inputs are dropped out, which keeps a masked copy of each input.
    Lora {
        rank: u64,
        targets: Vec<TargetModule>,
        dropout: bool,
    },
    /// Every weight.
    Full,
}

/// Everything a plan is computed from.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanInputs {
    pub shape: ModelShape,
    pub base_dtype: WeightDtype,
    pub trained: TrainedWeights,
    /// Sequences one sample trains on: 1 for SFT, 2 for DPO (chosen and rejected).
    pub sequences_per_sample: u64,
    /// Tokens of the longest sequence (`maxTokens`): the plan is for the worst batch.
    pub max_tokens: u64,
    /// Samples per optimizer step (`batchSize`).
    pub batch_size: u64,
    pub gradient_checkpointing: bool,
    pub device: DeviceMemory,
}

impl PlanInputs {
    /// The inputs of a job's spec (its hyperparameters resolved against its preset)
    /// for a model of `shape` on `device`, with the device's weight dtype.
    pub fn for_job(spec: &FineTuneJobSpec, shape: ModelShape, device: DeviceMemory) -> Self {
        let hyperparameters = spec.hyperparameters.resolve();
        Self::for_training(spec.method, spec.training, &hyperparameters, shape, device)
    }

    /// The inputs of a run with `method`, `training` and resolved `hyperparameters`
    /// (what the trainer holds once a job is read) for a model of `shape` on `device`.
    pub fn for_training(
        method: TrainingMethod,
        training: TrainingType,
        hyperparameters: &ResolvedHyperparameters,
        shape: ModelShape,
        device: DeviceMemory,
    ) -> Self {
        let trained = match training {
            TrainingType::Lora => TrainedWeights::Lora {
                rank: u64::from(hyperparameters.lora_rank),
                targets: hyperparameters.target_modules.clone(),
                dropout: hyperparameters.lora_dropout > 0.0,
            },
            TrainingType::Full => TrainedWeights::Full,
        };
        // Full training holds every weight in f32 on every device: the master copy the
        // optimizer updates, which the trainer also computes with (no bf16 copy).
        let base_dtype = match training {
            TrainingType::Lora => device.kind.base_dtype(),
            TrainingType::Full => WeightDtype::F32,
        };
        PlanInputs {
            shape,
            base_dtype,
            trained,
            sequences_per_sample: match method {
                TrainingMethod::Sft => 1,
                TrainingMethod::Dpo => 2,
            },
            max_tokens: u64::from(hyperparameters.max_tokens),
            batch_size: u64::from(hyperparameters.batch_size),
            gradient_checkpointing: hyperparameters.gradient_checkpointing,
            device,
        }
    }

    /// Decoder layers on the busiest device when the layers are placed in consecutive
    /// runs over the devices (one device: all of them).
    pub fn layers_per_device(&self) -> u64 {
        self.shape
            .layers
            .div_ceil(u64::from(self.device.devices.max(1)))
    }
}
