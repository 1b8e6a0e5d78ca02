//! What the operator benchmarks share: the release `anneal-operator` binary run as its
//! own process against an in-process fake API server, and its memory as the kernel
//! counts it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::fake_kubelet::free_port;
use crate::operator_process::operator_binary;

/// The operator process and where its health and metrics answer.
pub struct BenchOperator {
    pub child: Child,
    pub health: String,
}

impl BenchOperator {
    /// Starts the operator (no leader election, logs at `warn`) on the API server at
    /// `api_url`, with `args` added, and waits until it is healthy.
    pub async fn start(api_url: &str, dir: &Path, args: &[String]) -> BenchOperator {
        let kubeconfig = write_kubeconfig(dir, api_url);
        let health_port = free_port();
        let health = format!("http://127.0.0.1:{health_port}");
        let child = Command::new(operator_binary())
            .env("KUBECONFIG", &kubeconfig)
            .env("RUST_LOG", "warn")
            .args([
                "--leader-election=false".to_owned(),
                "--default-output-uri=s3://bench/runs".to_owned(),
                format!("--report-listen=127.0.0.1:{}", free_port()),
                format!("--health-listen=127.0.0.1:{health_port}"),
            ])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        while reqwest::get(format!("{health}/healthz")).await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Let the watches start before a burst.
        tokio::time::sleep(Duration::from_millis(500)).await;
        BenchOperator { child, health }
    }

    /// The most memory the process has held (VmHWM), in MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        status_mib(self.child.id(), "VmHWM:")
    }

    /// The memory the process holds now (VmRSS), in MiB.
    pub fn rss_mib(&self) -> f64 {
        status_mib(self.child.id(), "VmRSS:")
    }

    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The bench's `--jobs N` (`default` without it), its reference run's (a tenth), and
/// whether `--write` asks for benches/RESULTS.md to be written.
pub fn bench_args(default: usize) -> (usize, usize, bool) {
    let args: Vec<String> = std::env::args().collect();
    let jobs = (args.iter().position(|a| a == "--jobs"))
        .and_then(|i| args.get(i + 1))
        .map_or(default, |n| n.parse().expect("--jobs takes a number"));
    (jobs, jobs / 10, args.iter().any(|a| a == "--write"))
}

/// benches/RESULTS.md.
pub fn results_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../benches/RESULTS.md")
}

fn write_kubeconfig(dir: &Path, api_url: &str) -> PathBuf {
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: fake, cluster: {{server: \"{api_url}\"}}}}]\n\
             users: [{{name: fake, user: {{}}}}]\ncontexts: [{{name: fake, context: {{cluster: fake, user: fake}}}}]\n\
             current-context: fake\n"
        ),
    )
    .unwrap();
    kubeconfig
}

fn status_mib(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}
