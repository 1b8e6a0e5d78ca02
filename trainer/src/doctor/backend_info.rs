//! What the chosen backend is: on the CPU, burn's Flex backend and its threads; on
//! CUDA, the GPU, its driver, CUDA version and memory. burn 0.21 and cubecl do not
//! expose a device's name or the driver's version, so those come from `nvidia-smi`
//! when it is on PATH (the NVIDIA container toolkit mounts it into GPU pods).

use std::process::Command;

use anneal_model::backend::{BackendJob, DeviceChoice, run_on};
use burn::prelude::*;
use burn::tensor::DType;

use super::CheckResult;

const NAME: &str = "backend";

/// Brings the backend up and round-trips a small tensor through it.
pub fn check(cuda: bool) -> CheckResult {
    let choice = if cuda {
        DeviceChoice::Cuda
    } else {
        DeviceChoice::Cpu
    };
    let burn_name = match run_on(choice, RoundTrip) {
        Ok(Ok(name)) => name,
        Ok(Err(message)) => return CheckResult::fail(NAME, message),
        Err(error) => return CheckResult::fail(NAME, error.to_string()),
    };
    let described = if cuda {
        format!("cuda: {burn_name}, {}", nvidia_smi_summary())
    } else {
        format!("cpu: {burn_name}, f32, {}", cpu_threads())
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

/// `NVIDIA H200, driver 570.133.20, CUDA 13.0, 143771 MiB (nvidia-smi)` for the GPU
/// burn uses (the first of CUDA_VISIBLE_DEVICES, which nvidia-smi itself ignores).
fn nvidia_smi_summary() -> String {
    let gpu = std::env::var("CUDA_VISIBLE_DEVICES")
        .ok()
        .and_then(|v| v.split(',').next().map(str::to_owned))
        .unwrap_or_else(|| "0".to_owned());
    let query = Command::new("nvidia-smi")
        .args([
            "--query-gpu=name,driver_version,memory.total",
            "--format=csv,noheader",
            "-i",
            &gpu,
        ])
        .output();
    let fields = match query {
        Ok(output) if output.status.success() => {
            String::from_utf8_lossy(&output.stdout).trim().to_owned()
        }
        Ok(output) => {
            return format!(
                "nvidia-smi failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Err(_) => return "no nvidia-smi on PATH: GPU name, driver and memory unknown".to_owned(),
    };
    let mut parts = fields.split(',').map(str::trim);
    let (name, driver, memory) = (
        parts.next().unwrap_or("?"),
        parts.next().unwrap_or("?"),
        parts.next().unwrap_or("?"),
    );
    format!(
        "{name}, driver {driver}, CUDA {}, {memory} (nvidia-smi)",
        cuda_version().unwrap_or_else(|| "?".to_owned())
    )
}

/// The highest CUDA version the driver supports, from nvidia-smi's banner
/// (`CUDA Version: 13.0`); its query options have no field for it.
fn cuda_version() -> Option<String> {
    let output = Command::new("nvidia-smi").output().ok()?;
    let banner = String::from_utf8_lossy(&output.stdout);
    let rest = banner.split("CUDA Version:").nth(1)?;
    rest.split_whitespace().next().map(str::to_owned)
}
