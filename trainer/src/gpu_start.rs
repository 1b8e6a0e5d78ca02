//! What `trainer train` and `trainer serve` do first when they compute on CUDA, before
//! reading a manifest or a model: point cubecl's kernel caches at `--kernel-cache`
//! ([`crate::kernel_cache`]), then run the doctor's quick checks (the driver and the
//! CUDA it runs, a tensor round trip, a bf16 matmul against a host reference). A node
//! whose GPU, driver or CUDA cannot work then fails in seconds, with the reason in its
//! last line (what a FineTuneJob's status quotes), instead of after the downloads or
//! with a panic from inside burn-cuda. Nothing here runs on the CPU; `--skip-gpu-check`
//! (`ANNEAL_SKIP_GPU_CHECK=true`) skips the checks, not the cache.

use std::path::PathBuf;
use std::time::Instant;

use anneal_model::backend::{DeviceChoice, gpu_visible};

use crate::doctor::{self, CheckResult};
use crate::kernel_cache::{self, KernelCacheError};

#[derive(clap::Args, Debug, Clone, Default)]
pub struct GpuStartArgs {
    /// On CUDA, skip the check of the GPU (driver and CUDA, a bf16 matmul) that runs
    /// before the work.
    // Any value but n, no, f, false, off or 0 in the environment skips it.
    #[arg(long, env = "ANNEAL_SKIP_GPU_CHECK", value_parser = clap::builder::FalseyValueParser::new())]
    pub skip_gpu_check: bool,
    /// On CUDA, the writable folder where compiled kernels and autotune results are
    /// kept (one subfolder per GPU model and CUDA), so a restarted process skips that
    /// work. Default: cubecl's own places.
    #[arg(long, env = "ANNEAL_KERNEL_CACHE", value_name = "DIR")]
    pub kernel_cache: Option<PathBuf>,
}

/// Why the work did not start.
#[derive(Debug, thiserror::Error)]
pub enum GpuStartError {
    #[error(transparent)]
    KernelCache(#[from] KernelCacheError),
    #[error(
        "the GPU failed its start check, nothing was run: {first}{more} (`trainer doctor --device cuda` runs every check; --skip-gpu-check or ANNEAL_SKIP_GPU_CHECK=true skips this one)"
    )]
    Check { first: String, more: String },
}

impl GpuStartError {
    /// Whether another try (another node, a restarted pod) may get further: with a
    /// volume or a GPU it may; a trainer built without CUDA never will.
    pub fn may_pass_on_retry(&self) -> bool {
        match self {
            Self::KernelCache(_) => true,
            Self::Check { .. } => cfg!(feature = "cuda"),
        }
    }
}

/// Whether `device` computes on CUDA here.
pub fn uses_cuda(device: DeviceChoice) -> bool {
    match device {
        DeviceChoice::Cpu => false,
        DeviceChoice::Cuda => true,
        DeviceChoice::Auto => gpu_visible(),
    }
}

/// Readies the GPU for `trainer {command}` on `device`; a no-op on the CPU. The
/// checks' lines go to stderr (stdout may be JSON events).
pub fn prepare(
    command: &str,
    device: DeviceChoice,
    args: &GpuStartArgs,
) -> Result<(), GpuStartError> {
    if !uses_cuda(device) {
        return Ok(());
    }
    if let Some(root) = &args.kernel_cache {
        let dir = kernel_cache::configure(root)?;
        eprintln!("trainer {command}: kernel cache in {}", dir.display());
    }
    if args.skip_gpu_check {
        eprintln!("trainer {command}: GPU start check skipped");
        return Ok(());
    }
    let start = Instant::now();
    // A panicking check prints burn's message through the default hook as well; its
    // FAIL line quotes it.
    let previous_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let results = doctor::quick_checks(true);
    std::panic::set_hook(previous_hook);
    for result in &results {
        eprintln!("{}", result.line());
    }
    let failed: Vec<&CheckResult> = results.iter().filter(|r| !r.passed).collect();
    match failed.split_first() {
        None => {
            let names: Vec<&str> = results.iter().map(|r| r.name).collect();
            eprintln!(
                "trainer {command}: GPU start check passed ({}) in {:.1} s",
                names.join(", "),
                start.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Some((first, rest)) => Err(GpuStartError::Check {
            first: format!("{}: {}", first.name, first.detail),
            more: if rest.is_empty() {
                String::new()
            } else {
                let names: Vec<&str> = rest.iter().map(|r| r.name).collect();
                format!("; failed too: {}", names.join(", "))
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_gets_neither_check_nor_cache() {
        let cache = tempfile::tempdir().unwrap();
        let args = GpuStartArgs {
            skip_gpu_check: false,
            kernel_cache: Some(cache.path().join("kernels")),
        };
        assert!(prepare("train", DeviceChoice::Cpu, &args).is_ok());
        assert!(!uses_cuda(DeviceChoice::Cpu));
        assert!(!cache.path().join("kernels").exists());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn without_cuda_the_check_fails_naming_why_and_no_retry_helps() {
        let error = prepare("train", DeviceChoice::Cuda, &GpuStartArgs::default()).unwrap_err();
        let message = error.to_string();
        assert!(
            message.starts_with(
                "the GPU failed its start check, nothing was run: backend: this trainer was built without CUDA; rebuild with `--features cuda`; failed too: matmul ("
            ),
            "{message}"
        );
        assert!(!error.may_pass_on_retry());
        assert!(
            !uses_cuda(DeviceChoice::Auto),
            "no GPU is visible without CUDA"
        );
    }
}
