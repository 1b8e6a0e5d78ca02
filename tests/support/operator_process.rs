//! The real `anneal-operator` binary as a child process against a `World`, so that a
//! test can kill it as a crashed pod dies (SIGKILL: no checkpoint of its in-memory
//! report buffers, no graceful shutdown) and start it again on the same ports.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::fake_kubelet::free_port;
use crate::operator_harness::World;

/// `anneal-operator` beside the running test or bench (`target/debug/`, built by
/// `./scripts/test.sh` before the tests; `target/release/` for benches).
pub fn operator_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("ANNEAL_OPERATOR_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("anneal-operator");
    assert!(
        path.is_file(),
        "{} is missing: build it first with `cargo build [--release] -p anneal-operator \
         --bin anneal-operator` (./scripts/test.sh does for the tests), or set \
         ANNEAL_OPERATOR_BIN",
        path.display()
    );
    path
}

/// An operator process and how to start another like it.
pub struct OperatorProcess {
    child: Option<Child>,
    command: Vec<(String, String)>,
    args: Vec<String>,
    log: PathBuf,
    pub report_url: String,
    pub health_url: String,
    /// How many times it was killed.
    pub kills: u32,
}

impl OperatorProcess {
    /// Writes a kubeconfig for `world`'s API server that authenticates as `user` (the
    /// fault schedule can single it out) and starts the operator with `world`'s
    /// configuration, its log in `dir`.
    pub async fn start(world: &World, user: &str, dir: &Path) -> OperatorProcess {
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters: [{{name: fake, cluster: {{server: \"{}\"}}}}]\n\
                 users: [{{name: fake, user: {{token: {user}}}}}]\n\
                 contexts: [{{name: fake, context: {{cluster: fake, user: fake}}}}]\n\
                 current-context: fake\n",
                world.api.url()
            ),
        )
        .unwrap();
        let (report_port, health_port) = (free_port(), free_port());
        let report_url = format!("http://127.0.0.1:{report_port}");
        let config = &world.config;
        let mut args = vec![
            "--leader-election=false".to_owned(),
            "--log-format=text".to_owned(),
            format!("--report-listen=127.0.0.1:{report_port}"),
            format!("--health-listen=127.0.0.1:{health_port}"),
            format!("--report-base-url={report_url}"),
            format!("--trainer-image={}", config.trainer_image),
            format!("--trainer-backoff-limit={}", config.trainer_backoff_limit),
            format!(
                "--allowed-storage-endpoints={}",
                config.allowed_storage_endpoints.join(",")
            ),
        ];
        if let Some(output) = &config.default_output_uri {
            args.push(format!("--default-output-uri={output}"));
        }
        if let Some(secret) = &config.default_credentials_secret {
            args.push(format!("--default-credentials-secret={secret}"));
        }
        let mut process = OperatorProcess {
            child: None,
            command: vec![
                ("KUBECONFIG".to_owned(), kubeconfig.display().to_string()),
                (
                    "RUST_LOG".to_owned(),
                    "warn,anneal_operator=info".to_owned(),
                ),
            ],
            args,
            log: dir.join("operator.log"),
            report_url,
            health_url: format!("http://127.0.0.1:{health_port}"),
            kills: 0,
        };
        process.spawn().await;
        process
    }

    /// Starts the process and waits until its health endpoint answers.
    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(operator_binary())
            .envs(self.command.iter().map(|(k, v)| (k, v)))
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let started = Instant::now();
        while reqwest::get(format!("{}/healthz", self.health_url))
            .await
            .is_err()
        {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the operator did not start; its log:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL, then a new process on the same ports.
    pub async fn kill_and_restart(&mut self, down_for: Duration) {
        self.kill();
        tokio::time::sleep(down_for).await;
        self.spawn().await;
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            self.kills += 1;
        }
    }

    /// The last lines of its log, for a failure message.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
