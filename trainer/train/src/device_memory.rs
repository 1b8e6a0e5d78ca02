//! The memory of the device a run trains on, for the memory plan. On CUDA: what the
//! caller gives (the operator's `gpuMemory` in a pod, `trainer train --gpu-memory`),
//! else what the GPU reports, else the plan's default; on the CPU backend:
//! `--cpu-memory`, else the host's MemAvailable.

use anneal_crds::memory_plan::{ByteSize, DEFAULT_GPU_MEMORY, DeviceMemory};
use anneal_model::backend::on_cpu_backend;
use burn::prelude::Backend;

/// What the caller says about the device's memory; a figure left unset is looked up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GivenMemory {
    /// Memory of one GPU, for the CUDA backend.
    pub gpu: Option<ByteSize>,
    /// RAM for the CPU backend.
    pub cpu: Option<ByteSize>,
}

/// The device a plan is made for, and where its memory figure came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FoundMemory {
    pub device: DeviceMemory,
    /// `--gpu-memory`, `reported by the GPU`, `MemAvailable`, ...: said in the
    /// micro-batch line, so a surprising choice can be traced to its figure.
    pub from: &'static str,
}

/// The memory of `devices` on backend `B` (each GPU's, as the first reports it); `None` on the CPU when
/// neither `--cpu-memory` nor /proc/meminfo says (not Linux).
pub fn device_memory<B: Backend>(devices: &[B::Device], given: GivenMemory) -> Option<FoundMemory> {
    if on_cpu_backend::<B>() {
        let (memory, from) = match given.cpu {
            Some(memory) => (memory, "--cpu-memory"),
            None => (host_available_memory()?, "MemAvailable"),
        };
        // Several CPU devices exist only in tests, which run the multi-device paths
        // on the one CPU: each is planned with the whole memory.
        return Some(FoundMemory {
            device: DeviceMemory::cpu(memory).with_devices(devices.len() as u32),
            from,
        });
    }
    let (memory, from) = match given.gpu {
        Some(memory) => (memory, "--gpu-memory"),
        None => match reported_gpu_memory::<B>(&devices[0]) {
            Some(memory) => (memory, "reported by the GPU"),
            None => (DEFAULT_GPU_MEMORY, "the default"),
        },
    };
    Some(FoundMemory {
        device: DeviceMemory::gpus(memory, devices.len() as u32),
        from,
    })
}

/// The memory the host can give without swapping, from /proc/meminfo.
fn host_available_memory() -> Option<ByteSize> {
    mem_available(&std::fs::read_to_string("/proc/meminfo").ok()?)
}

/// `MemAvailable:  16270432 kB` of a /proc/meminfo text (the kernel's kB are KiB).
fn mem_available(meminfo: &str) -> Option<ByteSize> {
    let line = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemAvailable:"))?;
    let kib: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(ByteSize(kib * 1024)).filter(|size| size.bytes() > 0)
}

/// The total memory of the CUDA device, as burn's CUDA runtime read it.
#[cfg(feature = "cuda")]
fn reported_gpu_memory<B: Backend>(device: &B::Device) -> Option<ByteSize> {
    use burn::cubecl::Runtime;
    use burn::cubecl::cuda::{CudaDevice, CudaRuntime};
    let device = (device as &dyn std::any::Any).downcast_ref::<CudaDevice>()?;
    let max_page_size = CudaRuntime::client(device)
        .properties()
        .memory
        .max_page_size;
    // cubecl-cuda 0.10 (burn 0.21) exposes no total: it reads cuDeviceTotalMem and keeps
    // a quarter of it as the largest single allocation (`max_page_size`), which gives the
    // total back. Recheck this when burn moves.
    Some(ByteSize(max_page_size * 4)).filter(|size| size.bytes() > 0)
}

#[cfg(not(feature = "cuda"))]
fn reported_gpu_memory<B: Backend>(_device: &B::Device) -> Option<ByteSize> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train_backend::CpuTrainBackend;
    use anneal_crds::memory_plan::DeviceKind;

    #[test]
    fn mem_available_is_read_in_kib() {
        let meminfo = "MemTotal:       32780604 kB\nMemFree:         1234 kB\nMemAvailable:   16270432 kB\nBuffers: 1 kB\n";
        assert_eq!(mem_available(meminfo), Some(ByteSize(16_270_432 * 1024)));
        assert_eq!(mem_available("MemTotal: 5 kB\n"), None);
        assert_eq!(mem_available("MemAvailable: lots\n"), None);
    }

    #[test]
    fn the_cpu_backend_takes_cpu_memory_and_ignores_gpu_memory() {
        let given = GivenMemory {
            gpu: Some(ByteSize::gib(80)),
            cpu: Some(ByteSize::gib(3)),
        };
        let found = device_memory::<CpuTrainBackend>(&[Default::default()], given).unwrap();
        assert_eq!(found.device, DeviceMemory::cpu(ByteSize::gib(3)));
        assert_eq!(found.from, "--cpu-memory");

        let host = device_memory::<CpuTrainBackend>(&[Default::default()], GivenMemory::default());
        if let Some(host) = host {
            assert_eq!(host.device.kind, DeviceKind::Cpu);
            assert_eq!(host.from, "MemAvailable");
            assert!(host.device.per_device.bytes() > 0);
        }
    }
}
