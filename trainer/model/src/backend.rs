//! Choosing the compute backend at run time: burn's Flex CPU backend always, CUDA
//! when the crate is built with `--features cuda` (burn-cuda loads the driver and
//! NVRTC at run time, so the feature builds on machines without a GPU). The same
//! backends with gradients, for training, are anneal-train's (`train_backend`): this
//! crate, and serving with it, build without burn's autodiff.

use burn::prelude::Backend;
use burn::tensor::DType;

/// Where to compute (the CLI's `--device`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    Cpu,
    Cuda,
    /// CUDA when built in and a GPU is visible, else the CPU.
    #[default]
    Auto,
}

/// Why the chosen backend cannot run here.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// CUDA was asked for, but no NVIDIA driver or device is visible.
    #[error(
        "--device cuda: no NVIDIA GPU is visible (no /dev/nvidiactl, or CUDA_VISIBLE_DEVICES is empty)"
    )]
    NoGpu,
    /// CUDA was asked for, but this build has no CUDA backend.
    #[error("this trainer was built without CUDA; rebuild with `--features cuda`")]
    NotBuiltIn,
}

/// The CPU backend: pure Rust, no LLVM download at build time.
pub type CpuBackend = burn::backend::Flex;

#[cfg(feature = "cuda")]
pub type CudaBackend = burn::backend::Cuda;

/// The dtype the backend `B` computes activations in and keeps a frozen base in:
/// f32 on the CPU backend (Flex has no fast bf16 matmul: it widens both operands to
/// f32 on every call; [`LayerStorage::Stored`] holds the layers in bf16 there and
/// widens the weights alone), bf16 on CUDA (tensor cores, and half the memory: a 7B base
/// takes 14 GiB, as the memory plan counts it). Training that changes the base
/// itself (full training) loads it in f32 on every backend instead: those weights
/// are the master copy. Norms, softmax, RoPE, the loss and LoRA run in f32 whatever
/// this says (see `llm::precision`).
///
/// This is the one place the choice is made; [`run_on`] passes it to its job and
/// training asks it for its `B`.
pub fn compute_dtype<B: Backend>() -> DType {
    if on_cpu_backend::<B>() {
        DType::F32
    } else {
        DType::BF16
    }
}

/// Whether `B` computes on the Flex CPU backend: Flex itself, or Flex with gradients
/// (`Autodiff<Flex>` keeps Flex's device type). Asked by the device type so that this
/// crate need not name the autodiff backend.
pub fn on_cpu_backend<B: Backend>() -> bool {
    use std::any::TypeId;
    TypeId::of::<B::Device>() == TypeId::of::<burn_flex::FlexDevice>()
}

/// The dtype a frozen base weight stored as `stored` is kept in when the model
/// computes in `compute`: f32 when computing in f32; else the checkpoint's own half
/// dtype (bf16 or f16, no conversion), and `compute` for an f32 checkpoint.
pub fn base_dtype(compute: DType, stored: DType) -> DType {
    match (compute, stored) {
        (DType::F32, _) => DType::F32,
        (_, DType::BF16 | DType::F16) => stored,
        _ => compute,
    }
}

/// How a frozen base's decoder-layer weights are held (the embeddings and the head
/// always in [`base_dtype`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LayerStorage {
    /// In [`base_dtype`] of the compute dtype: f32 on the CPU, where every product
    /// then reads the weight as it is.
    #[default]
    Computed,
    /// On the CPU, in the checkpoint's half dtype (bf16, f16) as stored: half the
    /// bytes of the body, and each product widens a copy of its weight to f32 for that
    /// one use. CPU LoRA training with recomputation loads the base so: one layer's
    /// widened copies are alive at a time (its backward keeps them), 60 MB at
    /// Qwen2.5-0.5B's shape against 0.67 GiB saved. Elsewhere the same as `Computed`.
    Stored,
}

impl LayerStorage {
    /// The dtype a decoder-layer weight stored as `stored` is held in when the model
    /// computes in `compute` on backend `B`.
    pub fn dtype<B: Backend>(self, compute: DType, stored: DType) -> DType {
        let half = matches!(stored, DType::BF16 | DType::F16);
        match self {
            LayerStorage::Stored if half && on_cpu_backend::<B>() => stored,
            _ => base_dtype(compute, stored),
        }
    }
}

/// Work that runs on whichever backend was chosen.
pub trait BackendJob {
    type Output;
    /// `dtype`: what to load the model in, [`compute_dtype`] of `B`.
    fn run<B: Backend>(self, device: B::Device, dtype: DType) -> Self::Output;
}

/// Runs `job` on the backend `choice` names, with the dtype that backend computes in.
pub fn run_on<J: BackendJob>(choice: DeviceChoice, job: J) -> Result<J::Output, BackendError> {
    match choice {
        DeviceChoice::Cpu => Ok(run_cpu(job)),
        DeviceChoice::Cuda => run_cuda(job),
        DeviceChoice::Auto if gpu_visible() => run_cuda(job),
        DeviceChoice::Auto => Ok(run_cpu(job)),
    }
}

fn run_cpu<J: BackendJob>(job: J) -> J::Output {
    job.run::<CpuBackend>(Default::default(), compute_dtype::<CpuBackend>())
}

#[cfg(feature = "cuda")]
fn run_cuda<J: BackendJob>(job: J) -> Result<J::Output, BackendError> {
    // burn-cuda panics deep inside driver loading when there is no GPU; say so first.
    if !gpu_visible() {
        return Err(BackendError::NoGpu);
    }
    Ok(job.run::<CudaBackend>(Default::default(), compute_dtype::<CudaBackend>()))
}

#[cfg(not(feature = "cuda"))]
fn run_cuda<J: BackendJob>(_job: J) -> Result<J::Output, BackendError> {
    Err(BackendError::NotBuiltIn)
}

/// Whether a CUDA device can be used: built with the feature and an NVIDIA driver present.
pub fn gpu_visible() -> bool {
    cfg!(feature = "cuda")
        && std::path::Path::new("/dev/nvidiactl").exists()
        && std::env::var("CUDA_VISIBLE_DEVICES").map_or(true, |v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_computes_in_f32_and_keeps_half_checkpoints_half_elsewhere() {
        assert_eq!(compute_dtype::<CpuBackend>(), DType::F32);
        assert_eq!(base_dtype(DType::F32, DType::BF16), DType::F32);
        assert_eq!(base_dtype(DType::BF16, DType::BF16), DType::BF16);
        assert_eq!(base_dtype(DType::BF16, DType::F16), DType::F16);
        assert_eq!(base_dtype(DType::BF16, DType::F32), DType::BF16);
    }

    #[test]
    fn stored_layers_stay_half_on_the_cpu_only() {
        let stored = LayerStorage::Stored;
        assert_eq!(
            stored.dtype::<CpuBackend>(DType::F32, DType::BF16),
            DType::BF16
        );
        assert_eq!(
            stored.dtype::<CpuBackend>(DType::F32, DType::F16),
            DType::F16
        );
        assert_eq!(
            stored.dtype::<CpuBackend>(DType::F32, DType::F32),
            DType::F32
        );
        let computed = LayerStorage::Computed;
        assert_eq!(
            computed.dtype::<CpuBackend>(DType::F32, DType::BF16),
            DType::F32
        );
    }
}
