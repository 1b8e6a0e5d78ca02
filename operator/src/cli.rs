//! The operator's command line: every flag, each also an environment variable (what the
//! Helm chart and deploy/ set). The flags planned children depend on are the
//! [`OperatorConfig`] itself, flattened in; the rest configure the process. The binary
//! parses it; tests read its help to check that the chart sets only variables the
//! operator knows.

use std::net::SocketAddr;

use clap::{CommandFactory, Parser};

use crate::config::OperatorConfig;
use crate::console::viewer::{AuthSettings, ConsoleAuth};

#[derive(Parser, Debug)]
#[command(
    name = "anneal-operator",
    version,
    about = "Anneal's Kubernetes operator: FineTuneJobs, trainer pods, status and logs; ModelDeployments and their serving pods"
)]
pub struct OperatorArgs {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "ANNEAL_WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,
    #[command(flatten)]
    pub config: OperatorConfig,
    /// Where the report endpoint listens.
    #[arg(long, env = "ANNEAL_REPORT_LISTEN", default_value = "0.0.0.0:8080")]
    pub report_listen: SocketAddr,
    /// Folder with the admission webhook's certificate (`tls.crt`, `tls.key`, as a
    /// mounted `kubernetes.io/tls` Secret holds them, reloaded when renewed). Set, the
    /// webhook is served on --webhook-listen; unset, not at all.
    #[arg(long, env = "ANNEAL_WEBHOOK_CERT_DIR")]
    pub webhook_cert_dir: Option<std::path::PathBuf>,
    /// A `kubernetes.io/tls` Secret in the operator's namespace (POD_NAMESPACE) where
    /// the operator makes and rotates the webhook's certificate itself, writing the
    /// serving pair into --webhook-cert-dir; needs --webhook-host and
    /// --webhook-configuration.
    #[arg(
        long,
        env = "ANNEAL_WEBHOOK_CERT_SECRET",
        requires_all = ["webhook_cert_dir", "webhook_host", "webhook_configuration"]
    )]
    pub webhook_cert_secret: Option<String>,
    /// The name the API server calls the webhook at (`SERVICE.NAMESPACE.svc`), for
    /// the certificate the operator makes.
    #[arg(long, env = "ANNEAL_WEBHOOK_HOST")]
    pub webhook_host: Option<String>,
    /// The ValidatingWebhookConfiguration whose `caBundle` the operator keeps when it
    /// makes the certificate.
    #[arg(long, env = "ANNEAL_WEBHOOK_CONFIGURATION")]
    pub webhook_configuration: Option<String>,
    /// Where the admission webhook listens (HTTPS).
    #[arg(long, env = "ANNEAL_WEBHOOK_LISTEN", default_value = "0.0.0.0:9443")]
    pub webhook_listen: SocketAddr,
    /// Where the console (the FineTuneJobs in a browser, read-only) listens; unset,
    /// there is none. The chart binds it to the pod's loopback (`127.0.0.1:8090`):
    /// reached with `kubectl port-forward`, by whoever may do that.
    #[arg(long, env = "ANNEAL_CONSOLE_LISTEN")]
    pub console_listen: Option<SocketAddr>,
    /// Who the console's viewers are: `none` (no sign-in; the operator's own view,
    /// for a loopback console), `token` (a Kubernetes token, checked with a
    /// TokenReview) or `header` (an authenticating proxy in front names the user);
    /// with `token` or `header` each viewer sees the jobs they may read.
    #[arg(long, env = "ANNEAL_CONSOLE_AUTH", value_enum, default_value_t = ConsoleAuth::None)]
    pub console_auth: ConsoleAuth,
    /// With `--console-auth header`: the header naming the user.
    #[arg(
        long,
        env = "ANNEAL_CONSOLE_USER_HEADER",
        default_value = "X-Forwarded-User"
    )]
    pub console_user_header: String,
    /// With `--console-auth header`: the header listing the user's groups, comma-separated.
    #[arg(
        long,
        env = "ANNEAL_CONSOLE_GROUPS_HEADER",
        default_value = "X-Forwarded-Groups"
    )]
    pub console_groups_header: String,
    /// Where /metrics, /healthz and /readyz listen.
    #[arg(long, env = "ANNEAL_HEALTH_LISTEN", default_value = "0.0.0.0:9090")]
    pub health_listen: SocketAddr,
    /// Elect a leader on a Lease (needed with more than one replica).
    #[arg(long, env = "ANNEAL_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// Namespace of the leader Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "anneal-system")]
    pub lease_namespace: String,
    /// Name of the leader Lease.
    #[arg(long, env = "ANNEAL_LEASE_NAME", default_value = "anneal-operator")]
    pub lease_name: String,
    /// This replica's identity in the Lease and in Events (its pod name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// `json` or `text`.
    #[arg(long, env = "ANNEAL_LOG_FORMAT", default_value = "json")]
    pub log_format: String,
}

impl OperatorArgs {
    /// The console's sign-in settings.
    pub fn console_auth_settings(&self) -> AuthSettings {
        AuthSettings {
            mode: self.console_auth,
            user_header: self.console_user_header.clone(),
            groups_header: self.console_groups_header.clone(),
        }
    }
}

/// `anneal-operator --help`, as text.
pub fn help_text() -> String {
    OperatorArgs::command().render_help().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use anneal_crds::memory_plan::ByteSize;

    #[test]
    fn no_flags_run_with_the_default_config() {
        let args = OperatorArgs::try_parse_from(["anneal-operator"]).unwrap();
        assert_eq!(args.config, OperatorConfig::default());
        assert_eq!(args.config.trainer_backoff_limit, 3);
        assert_eq!(args.config.trainer_grace_seconds, 300);
        assert_eq!(args.config.gpu_memory, ByteSize::gib(80));
        assert_eq!(
            args.config.fetch_image,
            "ghcr.io/anneal-dev/anneal-fetch:0.1.0"
        );
        assert_eq!(args.config.kernel_cache_claim, None, "an emptyDir per pod");
    }

    #[test]
    fn a_gpu_memory_that_is_not_a_size_is_refused_with_the_flag_named() {
        let error = OperatorArgs::try_parse_from(["anneal-operator", "--gpu-memory=lots"])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("--gpu-memory") && error.contains("\"lots\" is not a memory size"),
            "{error}"
        );
    }

    #[test]
    fn config_flags_set_the_config() {
        let args = OperatorArgs::try_parse_from([
            "anneal-operator",
            "--trainer-image=trainer:dev",
            "--fetch-image=fetch:dev",
            "--kernel-cache-claim=anneal-kernels",
            "--default-output-uri=s3://runs/anneal",
            "--trainer-backoff-limit=5",
            "--gpu-memory=141GiB",
        ])
        .unwrap();
        assert_eq!(
            args.config,
            OperatorConfig {
                trainer_image: "trainer:dev".to_owned(),
                fetch_image: "fetch:dev".to_owned(),
                kernel_cache_claim: Some("anneal-kernels".to_owned()),
                default_output_uri: Some("s3://runs/anneal".to_owned()),
                trainer_backoff_limit: 5,
                gpu_memory: ByteSize::gib(141),
                ..OperatorConfig::default()
            }
        );
    }
}
