//! `trainer doctor [--device cpu|cuda|auto]`: is this machine ready to train? It says
//! what the backend is, multiplies matrices on it against a host reference, runs
//! one LoRA training step on the bundled tiny model, and runs two on two copies of it
//! as data parallelism does. Each check prints one line,
//! `ok` or `FAIL` with its figures; exit 0 when all pass, 1 otherwise. The GPU check
//! script (scripts/gpu/check.sh) runs it first.

use std::io::Write;
use std::process::ExitCode;

use anneal_model::backend::{DeviceChoice, gpu_visible};

use crate::device_arg::DeviceArg;

use crate::doctor::{
    CheckResult, backend_info, guarded, lora_step_check, matmul_check, replicas_check,
};

/// A check of the backend: `true` for CUDA, `false` for the CPU.
type Check = fn(bool) -> CheckResult;

#[derive(clap::Args, Debug, Clone)]
pub struct DoctorArgs {
    /// The backend to check; auto is CUDA when built in and a GPU is visible.
    #[arg(long, value_enum, default_value_t)]
    pub device: DeviceArg,
}

pub fn run(args: &DoctorArgs) -> ExitCode {
    let cuda = match DeviceChoice::from(args.device) {
        DeviceChoice::Cpu => false,
        DeviceChoice::Cuda => true,
        DeviceChoice::Auto => gpu_visible(),
    };
    println!(
        "trainer doctor: the {} backend",
        if cuda { "CUDA" } else { "CPU" }
    );
    // A panicking check prints burn's message through the default hook as well;
    // the FAIL line quotes it, so stderr stays quiet.
    let previous_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let checks: [(&'static str, Check); 4] = [
        ("backend", backend_info::check),
        ("matmul", matmul_check::check),
        ("lora step", lora_step_check::check),
        ("replicas", replicas_check::check),
    ];
    let mut failed = 0;
    for (name, check) in checks {
        let result = guarded(name, || check(cuda));
        failed += usize::from(!result.passed);
        println!("{}", result.line());
        // Each line as it is known: the training step can take a while on a cold GPU.
        let _ = std::io::stdout().flush();
    }
    std::panic::set_hook(previous_hook);
    if failed == 0 {
        println!("all {} checks passed", checks.len());
        ExitCode::SUCCESS
    } else {
        println!("{failed} of {} checks failed", checks.len());
        ExitCode::from(1)
    }
}
