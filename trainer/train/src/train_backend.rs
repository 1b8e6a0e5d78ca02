//! The backends training runs on: the model's backends wrapped in burn's `Autodiff`,
//! chosen at run time as `--device` says. Only training builds burn's autodiff:
//! generation and serving run on anneal-model's backends without it.

use anneal_model::backend::{BackendError, CpuBackend, DeviceChoice, gpu_visible};
use burn::tensor::backend::AutodiffBackend;

/// The CPU backend with gradients, for training.
pub type CpuTrainBackend = burn::backend::Autodiff<CpuBackend>;

/// Training work: it needs gradients, so it runs on a backend wrapped in `Autodiff`.
pub trait TrainBackendJob {
    type Output;
    /// `devices`: at least one; a model too large for one GPU has its decoder layers
    /// placed across them (`anneal_model::llm::placement`).
    fn run<B: AutodiffBackend>(self, devices: Vec<B::Device>) -> Self::Output;
}

/// Runs training `job` on the backend `choice` names, on `gpus` GPUs with CUDA (the
/// first `gpus` the process sees: a pod sees those it was given) and on the one CPU
/// device otherwise.
pub fn run_training_on<J: TrainBackendJob>(
    choice: DeviceChoice,
    gpus: u32,
    job: J,
) -> Result<J::Output, BackendError> {
    let cuda = match choice {
        DeviceChoice::Cpu => false,
        DeviceChoice::Cuda => true,
        DeviceChoice::Auto => gpu_visible(),
    };
    if !cuda {
        return Ok(job.run::<CpuTrainBackend>(vec![Default::default()]));
    }
    train_on_cuda(gpus, job)
}

#[cfg(feature = "cuda")]
fn train_on_cuda<J: TrainBackendJob>(gpus: u32, job: J) -> Result<J::Output, BackendError> {
    use burn::backend::cuda::CudaDevice;
    // burn-cuda panics deep inside driver loading when there is no GPU; say so first.
    if !gpu_visible() {
        return Err(BackendError::NoGpu);
    }
    let devices = (0..gpus.max(1) as usize).map(CudaDevice::new).collect();
    Ok(job.run::<burn::backend::Autodiff<anneal_model::backend::CudaBackend>>(devices))
}

#[cfg(not(feature = "cuda"))]
fn train_on_cuda<J: TrainBackendJob>(_gpus: u32, _job: J) -> Result<J::Output, BackendError> {
    Err(BackendError::NotBuiltIn)
}

#[cfg(test)]
mod tests {
    use anneal_model::backend::{compute_dtype, on_cpu_backend};
    use burn::tensor::DType;

    use super::*;

    #[test]
    fn training_on_the_cpu_computes_in_f32() {
        assert!(on_cpu_backend::<CpuTrainBackend>());
        assert_eq!(compute_dtype::<CpuTrainBackend>(), DType::F32);
    }
}
