//! `--device`, as `train`, `generate` and `serve` take it.

use anneal_model::backend::DeviceChoice;

/// Where to compute.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeviceArg {
    Cpu,
    Cuda,
    /// CUDA when built in and a GPU is visible, else the CPU.
    #[default]
    Auto,
}

impl From<DeviceArg> for DeviceChoice {
    fn from(device: DeviceArg) -> Self {
        match device {
            DeviceArg::Cpu => DeviceChoice::Cpu,
            DeviceArg::Cuda => DeviceChoice::Cuda,
            DeviceArg::Auto => DeviceChoice::Auto,
        }
    }
}
