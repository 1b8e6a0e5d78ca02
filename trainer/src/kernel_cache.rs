//! Where burn-cuda keeps the kernels it compiles and the autotune results it measures.
//! cubecl (its compiler and runtime) keeps neither where a pod can find them again by
//! default: compiled PTX is not cached at all, and autotune results go under a
//! `target/` above the working folder or `~/.cache/cubecl`, on a read-only root file
//! system or in scratch that dies with the pod. It has no environment variable for
//! them either, only a `cubecl.toml` found from the working folder up, so the trainer
//! sets cubecl's configuration itself, once, before any CUDA work: both caches under
//! `--kernel-cache DIR` (the pod's writable volume, `ANNEAL_KERNEL_CACHE`).
//!
//! The folder is named after the GPU and the image's CUDA ([`cache_dir`]): cubecl keys
//! compiled PTX by the kernel alone, so PTX for one GPU or from a newer NVRTC would
//! otherwise be loaded on another GPU, or by an older driver, when a volume is shared.

use std::path::{Path, PathBuf};

/// Why the cache folder cannot be used: cubecl would panic on its first write.
#[derive(Debug, thiserror::Error)]
#[error("--kernel-cache {}: {source}", path.display())]
pub struct KernelCacheError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// `{root}/{GPU}-cuda{CUDA}`, e.g. `/var/cache/anneal/kernels/NVIDIA-H100-80GB-HBM3-cuda12.4.1`:
/// one folder per GPU model and NVRTC version, with only `[A-Za-z0-9._-]` in its name.
pub fn cache_dir(root: &Path, gpu_name: Option<&str>, cuda_version: Option<&str>) -> PathBuf {
    let gpu = gpu_name.map(str::trim).filter(|n| !n.is_empty());
    let mut name = gpu.unwrap_or("gpu").to_owned();
    if let Some(cuda) = cuda_version.map(str::trim).filter(|v| !v.is_empty()) {
        name.push_str("-cuda");
        name.push_str(cuda);
    }
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    // `.` or `..` would not be a folder of its own.
    if name.chars().all(|c| c == '.') {
        return root.join("gpu");
    }
    root.join(name)
}

/// Points cubecl's compiled-kernel and autotune caches at this GPU's folder under
/// `root`, made and checked writable first. Call before anything touches CUDA.
pub fn configure(root: &Path) -> Result<PathBuf, KernelCacheError> {
    let gpu = crate::doctor::nvidia_smi::query().ok().map(|gpu| gpu.name);
    let cuda = std::env::var("CUDA_VERSION").ok();
    let dir = cache_dir(root, gpu.as_deref(), cuda.as_deref());
    let error = |source| KernelCacheError {
        path: dir.clone(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(error)?;
    tempfile::tempfile_in(&dir).map_err(error)?;
    set_cubecl_caches(&dir);
    Ok(dir)
}

#[cfg(feature = "cuda")]
fn set_cubecl_caches(dir: &Path) {
    use burn::cubecl::config::cache::CacheConfig;
    use burn::cubecl::config::{CubeClRuntimeConfig, RuntimeConfig};
    // What cubecl would read itself (a cubecl.toml, CUBECL_* variables), with the caches moved.
    let mut config = CubeClRuntimeConfig::from_current_dir().override_from_env();
    config.autotune.cache = CacheConfig::File(dir.to_path_buf());
    config.compilation.cache = Some(CacheConfig::File(dir.to_path_buf()));
    CubeClRuntimeConfig::set(config);
}

/// Without CUDA nothing compiles kernels: the folder is only made.
#[cfg(not(feature = "cuda"))]
fn set_cubecl_caches(_dir: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_folder_is_named_after_the_gpu_and_the_images_cuda() {
        let root = Path::new("/var/cache/anneal/kernels");
        assert_eq!(
            cache_dir(root, Some("NVIDIA H100 80GB HBM3"), Some("12.4.1")),
            root.join("NVIDIA-H100-80GB-HBM3-cuda12.4.1")
        );
        assert_eq!(
            cache_dir(root, Some("NVIDIA A100-SXM4-80GB"), None),
            root.join("NVIDIA-A100-SXM4-80GB")
        );
        assert_eq!(
            cache_dir(root, None, Some("12.4.1")),
            root.join("gpu-cuda12.4.1")
        );
        assert_eq!(cache_dir(root, Some(" "), None), root.join("gpu"));
        // Nothing in a name climbs out of the root.
        assert_eq!(cache_dir(root, Some("../x/y"), None), root.join("..-x-y"));
        assert_eq!(cache_dir(root, Some(".."), None), root.join("gpu"));
    }

    #[test]
    fn configure_makes_the_folder_and_refuses_one_it_cannot_write() {
        let root = tempfile::tempdir().unwrap();
        let dir = configure(&root.path().join("kernels")).unwrap();
        assert!(dir.is_dir() && dir.starts_with(root.path().join("kernels")));
        let file = root.path().join("a-file");
        std::fs::write(&file, "").unwrap();
        let error = configure(&file).unwrap_err().to_string();
        assert!(
            error.starts_with(&format!("--kernel-cache {}/", file.display())),
            "{error}"
        );
    }
}
