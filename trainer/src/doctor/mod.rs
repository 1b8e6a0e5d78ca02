//! `trainer doctor`'s checks, one file each: what the backend is
//! ([`backend_info`], the GPU's side from [`nvidia_smi`]), a matmul against a host
//! reference ([`matmul_check`]) and one LoRA training step on the bundled tiny model
//! ([`lora_step_check`], with the model built into the binary by [`tiny_model`] so the
//! check runs in a pod with no repository), and the same steps on two copies of the
//! model as data parallelism runs them ([`replicas_check`]). The first two, at a small size, are also
//! the start check of `train` and `serve` on CUDA ([`quick_checks`]).

pub mod backend_info;
pub mod lora_step_check;
pub mod matmul_check;
pub mod nvidia_smi;
pub mod replicas_check;
pub mod tiny_model;

/// One line of the report: `ok` or `FAIL`, the check's name and its figures.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckResult {
    pub name: &'static str,
    pub passed: bool,
    pub detail: String,
}

impl CheckResult {
    pub fn ok(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            passed: true,
            detail: detail.into(),
        }
    }

    pub fn fail(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            passed: false,
            detail: detail.into(),
        }
    }

    /// `ok    matmul      ...` / `FAIL  matmul      ...`: fixed columns a script can split.
    pub fn line(&self) -> String {
        let status = if self.passed { "ok" } else { "FAIL" };
        format!("{status:<5} {:<10} {}", self.name, self.detail)
    }
}

/// Runs `check`, turning a panic (burn-cuda panics on driver and compiler errors) into a
/// `FAIL` line that quotes it, so one broken check does not hide the others.
pub fn guarded(name: &'static str, check: impl FnOnce() -> CheckResult) -> CheckResult {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(check)) {
        Ok(result) => result,
        Err(payload) => {
            let message = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)");
            CheckResult::fail(name, format!("panicked: {message}"))
        }
    }
}

/// The checks a GPU pod runs before its work (`crate::gpu_start`): the backend (driver,
/// CUDA, a tensor round trip) and a small matmul in the dtype the backend computes in,
/// each guarded, in that order. Seconds, where the full doctor's LoRA step takes longer.
pub fn quick_checks(cuda: bool) -> Vec<CheckResult> {
    vec![
        guarded("backend", || backend_info::check(cuda)),
        guarded("matmul", || {
            matmul_check::check_spec(cuda, matmul_check::MatmulSpec::quick(cuda))
        }),
    ]
}
