//! The GPU start check as `trainer train` and `trainer serve` run it in a pod: never on
//! the CPU; on CUDA before the manifest or the model is read, failing with the check
//! that broke and why as the last line (exit 2 when no retry can help: this build has
//! no CUDA); skipped with --skip-gpu-check or ANNEAL_SKIP_GPU_CHECK=true; and
//! --kernel-cache made on CUDA only. Builds without CUDA see the failing side; the
//! passing side needs a GPU (scripts/gpu/check.sh's quick start runs it).

use std::path::Path;
use std::process::Command;

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn last_line(&self) -> &str {
        self.stderr.lines().last().unwrap_or_default()
    }
}

fn trainer(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_trainer"));
    command
        .args(args)
        .env_remove("ANNEAL_SKIP_GPU_CHECK")
        .env_remove("ANNEAL_KERNEL_CACHE")
        .env_remove("CUDA_VERSION")
        .envs(env.iter().copied());
    let output = command.output().unwrap();
    Run {
        code: output.status.code(),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

/// The manifest error `trainer train` ends with when it gets past the GPU.
fn manifest_missing(manifest: &Path) -> String {
    format!(
        "trainer train: {}: No such file or directory (os error 2)",
        manifest.display()
    )
}

#[test]
fn the_cpu_runs_no_start_check_and_makes_no_kernel_cache() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("missing.yaml");
    let cache = dir.path().join("kernels");
    let run = trainer(
        &[
            "train",
            manifest.to_str().unwrap(),
            "--device",
            "cpu",
            "--kernel-cache",
            cache.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert_eq!(run.stderr, format!("{}\n", manifest_missing(&manifest)));
    assert!(!cache.exists());
}

#[cfg(not(feature = "cuda"))]
#[test]
fn cuda_without_it_fails_the_start_check_before_the_manifest_is_read() {
    let manifest = Path::new("/nonexistent/job.yaml");
    let run = trainer(&["train", "/nonexistent/job.yaml", "--device", "cuda"], &[]);
    assert_eq!(run.code, Some(2), "no retry brings CUDA into this build");
    assert_eq!(run.stdout, "");
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(
        lines[0],
        "FAIL  backend    this trainer was built without CUDA; rebuild with `--features cuda`"
    );
    assert!(lines[1].starts_with("FAIL  matmul     "), "{}", run.stderr);
    assert_eq!(
        run.last_line(),
        "trainer train: the GPU failed its start check, nothing was run: backend: this trainer \
         was built without CUDA; rebuild with `--features cuda`; failed too: matmul \
         (`trainer doctor --device cuda` runs every check; --skip-gpu-check or \
         ANNEAL_SKIP_GPU_CHECK=true skips this one)"
    );
    assert!(!run.stderr.contains(&manifest_missing(manifest)));
}

#[cfg(not(feature = "cuda"))]
#[test]
fn the_start_check_is_skipped_by_flag_or_environment() {
    let manifest = Path::new("/nonexistent/job.yaml");
    let skipped = format!(
        "trainer train: GPU start check skipped\n{}\n",
        manifest_missing(manifest)
    );
    let train = ["train", "/nonexistent/job.yaml", "--device", "cuda"];
    let by_flag = trainer(&[&train[..], &["--skip-gpu-check"]].concat(), &[]);
    assert_eq!((by_flag.code, by_flag.stderr), (Some(2), skipped.clone()));
    let by_env = trainer(&train, &[("ANNEAL_SKIP_GPU_CHECK", "true")]);
    assert_eq!((by_env.code, by_env.stderr), (Some(2), skipped));
    let not_skipped = trainer(&train, &[("ANNEAL_SKIP_GPU_CHECK", "false")]);
    assert!(
        not_skipped
            .last_line()
            .starts_with("trainer train: the GPU failed its start check"),
        "{}",
        not_skipped.stderr
    );
}

#[cfg(not(feature = "cuda"))]
#[test]
fn on_cuda_the_kernel_cache_folder_is_made_before_anything_else() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("kernels");
    let run = trainer(
        &[
            "train",
            "/nonexistent/job.yaml",
            "--device",
            "cuda",
            "--skip-gpu-check",
        ],
        &[("ANNEAL_KERNEL_CACHE", cache.to_str().unwrap())],
    );
    // No nvidia-smi names a GPU here, and CUDA_VERSION is unset: the generic folder.
    let made = cache.join("gpu");
    assert_eq!(
        run.stderr.lines().next(),
        Some(format!("trainer train: kernel cache in {}", made.display()).as_str()),
        "{}",
        run.stderr
    );
    assert!(made.is_dir());

    // A folder that cannot be made fails the run, naming it, before any CUDA work.
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let run = trainer(
        &[
            "train",
            "/nonexistent/job.yaml",
            "--device",
            "cuda",
            "--kernel-cache",
            file.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(run.code, Some(1), "a volume may work on the next try");
    assert!(
        run.last_line().starts_with(&format!(
            "trainer train: --kernel-cache {}/gpu: ",
            file.display()
        )),
        "{}",
        run.stderr
    );
}

#[cfg(not(feature = "cuda"))]
#[test]
fn serve_checks_the_gpu_before_loading_the_model() {
    let serve = [
        "serve",
        "--model",
        "/nonexistent/model",
        "--device",
        "cuda",
        "--port",
        "0",
    ];
    let run = trainer(&serve, &[]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.last_line().starts_with(
            "trainer serve: the GPU failed its start check, nothing was run: backend: this \
             trainer was built without CUDA"
        ),
        "{}",
        run.stderr
    );
    let skipped = trainer(&serve, &[("ANNEAL_SKIP_GPU_CHECK", "1")]);
    assert_eq!(skipped.code, Some(2), "{}", skipped.stderr);
    assert_eq!(
        skipped.stderr.lines().next(),
        Some("trainer serve: GPU start check skipped")
    );
    assert!(!skipped.stderr.contains("start check, nothing was run"));
}
