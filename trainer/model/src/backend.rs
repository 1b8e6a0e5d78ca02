//! Choosing the compute backend at run time: burn's Flex CPU backend always, CUDA
//! when the crate is built with `--features cuda` (burn-cuda loads the driver and
//! NVRTC at run time, so the feature builds on machines without a GPU).

use burn::prelude::Backend;
use burn::tensor::DType;
use burn::tensor::backend::AutodiffBackend;

/// `--device`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    Cpu,
    Cuda,
    /// CUDA when built in and a GPU is visible, else the CPU.
    #[default]
    Auto,
}

/// The CPU backend: pure Rust, no LLVM download at build time.
pub type CpuBackend = burn::backend::Flex;
/// The CPU backend with gradients, for training.
pub type CpuTrainBackend = burn::backend::Autodiff<CpuBackend>;

#[cfg(feature = "cuda")]
pub type CudaBackend = burn::backend::Cuda;

/// Work that runs on whichever backend was chosen.
pub trait BackendJob {
    type Output;
    fn run<B: Backend>(self, device: B::Device, dtype: DType) -> Self::Output;
}

/// Training work: it needs gradients, so it runs on a backend wrapped in `Autodiff`.
pub trait TrainBackendJob {
    type Output;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output;
}

/// Runs training `job` on the backend `choice` names.
pub fn run_training_on<J: TrainBackendJob>(
    choice: DeviceChoice,
    job: J,
) -> Result<J::Output, String> {
    let cuda = match choice {
        DeviceChoice::Cpu => false,
        DeviceChoice::Cuda => true,
        DeviceChoice::Auto => gpu_visible(),
    };
    if !cuda {
        return Ok(job.run::<CpuTrainBackend>(Default::default()));
    }
    train_on_cuda(job)
}

#[cfg(feature = "cuda")]
fn train_on_cuda<J: TrainBackendJob>(job: J) -> Result<J::Output, String> {
    if !gpu_visible() {
        return Err(
            "--device cuda: no NVIDIA GPU is visible (no /dev/nvidiactl, or CUDA_VISIBLE_DEVICES is empty)"
                .to_owned(),
        );
    }
    Ok(job.run::<burn::backend::Autodiff<CudaBackend>>(Default::default()))
}

#[cfg(not(feature = "cuda"))]
fn train_on_cuda<J: TrainBackendJob>(_job: J) -> Result<J::Output, String> {
    Err("this trainer was built without CUDA; rebuild with `--features cuda`".to_owned())
}

/// Runs `job` on the backend `choice` names, with the weight dtype that backend wants.
pub fn run_on<J: BackendJob>(choice: DeviceChoice, job: J) -> Result<J::Output, String> {
    match choice {
        DeviceChoice::Cpu => Ok(run_cpu(job)),
        DeviceChoice::Cuda => run_cuda(job),
        DeviceChoice::Auto if gpu_visible() => run_cuda(job),
        DeviceChoice::Auto => Ok(run_cpu(job)),
    }
}

fn run_cpu<J: BackendJob>(job: J) -> J::Output {
    job.run::<CpuBackend>(Default::default(), DType::F32)
}

#[cfg(feature = "cuda")]
fn run_cuda<J: BackendJob>(job: J) -> Result<J::Output, String> {
    // burn-cuda panics deep inside driver loading when there is no GPU; say so first.
    if !gpu_visible() {
        return Err(
            "--device cuda: no NVIDIA GPU is visible (no /dev/nvidiactl, or CUDA_VISIBLE_DEVICES is empty)"
                .to_owned(),
        );
    }
    Ok(job.run::<CudaBackend>(Default::default(), DType::F32))
}

#[cfg(not(feature = "cuda"))]
fn run_cuda<J: BackendJob>(_job: J) -> Result<J::Output, String> {
    Err("this trainer was built without CUDA; rebuild with `--features cuda`".to_owned())
}

/// Whether a CUDA device can be used: built with the feature and an NVIDIA driver present.
pub fn gpu_visible() -> bool {
    cfg!(feature = "cuda")
        && std::path::Path::new("/dev/nvidiactl").exists()
        && std::env::var("CUDA_VISIBLE_DEVICES").map_or(true, |v| !v.is_empty())
}
