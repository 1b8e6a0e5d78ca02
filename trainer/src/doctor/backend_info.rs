//! What the chosen backend is: on the CPU, burn's Flex backend and its threads; on
//! CUDA, the GPU, its driver and the CUDA it runs, the image's CUDA and the GPU's
//! memory (from [`nvidia_smi`]). A driver too old for the image's CUDA fails here,
//! with the versions, before any kernel is compiled: otherwise the first kernel fails
//! to load with a PTX error that does not say why.

use anneal_model::backend::{BackendJob, DeviceChoice, run_on};
use burn::prelude::*;
use burn::tensor::DType;

use super::{CheckResult, nvidia_smi};

const NAME: &str = "backend";

/// Checks the driver (CUDA), then brings the backend up and round-trips a small
/// tensor through it.
pub fn check(cuda: bool) -> CheckResult {
    let (choice, gpu) = if cuda {
        match nvidia_smi_summary() {
            Ok(summary) => (DeviceChoice::Cuda, Some(summary)),
            Err(too_old) => return CheckResult::fail(NAME, too_old),
        }
    } else {
        (DeviceChoice::Cpu, None)
    };
    let burn_name = match run_on(choice, RoundTrip) {
        Ok(Ok(name)) => name,
        Ok(Err(message)) => return CheckResult::fail(NAME, message),
        Err(error) => return CheckResult::fail(NAME, error.to_string()),
    };
    let described = match gpu {
        Some(summary) => format!("cuda: {burn_name}, {summary}"),
        None => format!("cpu: {burn_name}, f32, {}", cpu_threads()),
    };
    CheckResult::ok(NAME, described)
}

/// A tensor to the device and back: the backend initialised and computes.
struct RoundTrip;

impl BackendJob for RoundTrip {
    type Output = Result<String, String>;

    fn run<B: Backend>(self, device: B::Device, _dtype: DType) -> Self::Output {
        let values = [1.0f32, 2.0, 3.0, 4.0];
        let tensor = Tensor::<B, 1>::from_data(TensorData::new(values.to_vec(), [4]), &device);
        let doubled = (tensor * 2.0)
            .into_data()
            .to_vec::<f32>()
            .map_err(|e| format!("reading a tensor back from the device: {e:?}"))?;
        if doubled != [2.0, 4.0, 6.0, 8.0] {
            return Err(format!("2 x [1, 2, 3, 4] came back as {doubled:?}"));
        }
        Ok(format!("burn {}", B::name(&device)))
    }
}

/// Flex runs its kernels on rayon's global pool: `RAYON_NUM_THREADS` threads when set,
/// else one per core.
fn cpu_threads() -> String {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    match std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
    {
        Some(threads) => format!("{threads} threads (RAYON_NUM_THREADS; {cores} cores)"),
        None => format!("{cores} threads (one per core)"),
    }
}

/// `NVIDIA H200, driver 570.133.20 (CUDA 13.0; this image's CUDA 12.4.1), 143771 MiB
/// (nvidia-smi)`, or why it is unknown; `Err` when the driver is too old for the
/// image's CUDA.
fn nvidia_smi_summary() -> Result<String, String> {
    let gpu = match nvidia_smi::query() {
        Ok(gpu) => gpu,
        Err(why) => return Ok(format!("{why}: GPU name, driver and memory unknown")),
    };
    let image = image_cuda();
    let driver_cuda = gpu.driver_cuda.as_deref().unwrap_or("?");
    if let (Some(driver_cuda), Some(image)) = (&gpu.driver_cuda, &image)
        && driver_runs(driver_cuda, image) == Some(false)
    {
        return Err(format!(
            "{}: driver {} runs CUDA {driver_cuda}, older than this image's CUDA {image}: \
             the kernels its NVRTC compiles would not load; the node needs a driver for \
             CUDA {} or newer (docs/install.md)",
            gpu.name,
            gpu.driver,
            major_minor(image).map_or(image.clone(), |(a, b)| format!("{a}.{b}"))
        ));
    }
    let image = image.map_or(String::new(), |v| format!("; this image's CUDA {v}"));
    Ok(format!(
        "{}, driver {} (CUDA {driver_cuda}{image}), {} (nvidia-smi)",
        gpu.name, gpu.driver, gpu.memory
    ))
}

/// The CUDA whose NVRTC and headers this image carries: `CUDA_VERSION`, which the
/// nvidia/cuda base images set (`12.4.1`); unknown outside them.
fn image_cuda() -> Option<String> {
    std::env::var("CUDA_VERSION")
        .ok()
        .filter(|v| major_minor(v).is_some())
}

/// Whether a driver that runs CUDA `driver_cuda` (`12.4`) loads the PTX of NVRTC from
/// CUDA `image_cuda` (`12.4.1`): cubecl JIT-compiles PTX through the driver, which
/// refuses a PTX ISA newer than its own CUDA, whatever minor-version compatibility
/// allows for prebuilt binaries. `None` when either is not a version.
pub fn driver_runs(driver_cuda: &str, image_cuda: &str) -> Option<bool> {
    Some(major_minor(driver_cuda)? >= major_minor(image_cuda)?)
}

fn major_minor(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.trim().split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_driver_runs_an_images_cuda_up_to_its_own() {
        assert_eq!(driver_runs("12.4", "12.4.1"), Some(true));
        assert_eq!(driver_runs("13.0", "12.4.1"), Some(true));
        assert_eq!(driver_runs("12.8", "12.4.1"), Some(true));
        assert_eq!(driver_runs("12.2", "12.4.1"), Some(false));
        assert_eq!(driver_runs("12.4", "12.8.1"), Some(false));
        assert_eq!(
            driver_runs("12.10", "12.9"),
            Some(true),
            "minors compare as numbers"
        );
        assert_eq!(driver_runs("N/A", "12.4.1"), None);
    }
}
