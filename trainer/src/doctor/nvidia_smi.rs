//! What `nvidia-smi` says about the GPU burn uses: its name, the driver's version and
//! the highest CUDA that driver supports, and its memory. burn 0.21 and cubecl expose
//! none of these, and the NVIDIA container toolkit mounts `nvidia-smi` into GPU pods
//! (the trainer image asks for the `utility` capability), so the doctor, the start
//! check and the kernel cache's folder name all read them from here.

use std::process::Command;

/// One GPU, as nvidia-smi reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuInfo {
    /// `NVIDIA H100 80GB HBM3`.
    pub name: String,
    /// `550.54.15`.
    pub driver: String,
    /// `81559 MiB`.
    pub memory: String,
    /// The highest CUDA the driver runs, `12.4` (from the banner; `None` if it has none).
    pub driver_cuda: Option<String>,
}

/// The GPU burn computes on: the first of `CUDA_VISIBLE_DEVICES` (which nvidia-smi
/// itself ignores), else GPU 0.
pub fn query() -> Result<GpuInfo, String> {
    let gpu = std::env::var("CUDA_VISIBLE_DEVICES")
        .ok()
        .and_then(|v| v.split(',').next().map(str::to_owned))
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "0".to_owned());
    let fields = run(&[
        "--query-gpu=name,driver_version,memory.total",
        "--format=csv,noheader",
        "-i",
        &gpu,
    ])?;
    let banner = run(&[]).unwrap_or_default();
    parse(&fields, &banner).ok_or_else(|| format!("nvidia-smi printed {fields:?}"))
}

fn run(args: &[&str]) -> Result<String, String> {
    match Command::new("nvidia-smi").args(args).output() {
        Ok(output) if output.status.success() => {
            Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
        }
        Ok(output) => Err(format!(
            "nvidia-smi failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )),
        Err(_) => Err("no nvidia-smi on PATH".to_owned()),
    }
}

/// The query's CSV line (`name, driver, memory`) and the banner's `CUDA Version: 12.4`
/// (the query options have no field for it).
fn parse(fields: &str, banner: &str) -> Option<GpuInfo> {
    let mut parts = fields.lines().next()?.split(',').map(str::trim);
    let (name, driver, memory) = (parts.next()?, parts.next()?, parts.next()?);
    let driver_cuda = banner
        .split("CUDA Version:")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_owned);
    Some(GpuInfo {
        name: name.to_owned(),
        driver: driver.to_owned(),
        memory: memory.to_owned(),
        driver_cuda,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_line_and_the_banner_give_the_gpu_and_its_drivers_cuda() {
        let banner =
            "| NVIDIA-SMI 550.54.15    Driver Version: 550.54.15    CUDA Version: 12.4     |";
        assert_eq!(
            parse("NVIDIA H100 80GB HBM3, 550.54.15, 81559 MiB\n", banner),
            Some(GpuInfo {
                name: "NVIDIA H100 80GB HBM3".to_owned(),
                driver: "550.54.15".to_owned(),
                memory: "81559 MiB".to_owned(),
                driver_cuda: Some("12.4".to_owned()),
            })
        );
        let no_banner = parse("NVIDIA H200, 570.133.20, 143771 MiB", "").unwrap();
        assert_eq!(no_banner.driver_cuda, None);
        assert_eq!(parse("garbage", banner), None);
    }
}
