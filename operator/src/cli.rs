//! The operator's command line: every flag, each also an environment variable (what the
//! Helm chart and deploy/ set). The binary parses it; tests read its help to check that
//! the chart sets only variables the operator knows.

use std::net::SocketAddr;

use clap::{CommandFactory, Parser};

use crate::config::OperatorConfig;

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
    /// Image of trainer pods.
    #[arg(long, env = "ANNEAL_TRAINER_IMAGE", default_value_t = OperatorConfig::default().trainer_image)]
    pub trainer_image: String,
    /// Image of ModelDeployments with `runtime: vllm`.
    #[arg(long, env = "ANNEAL_VLLM_IMAGE", default_value_t = OperatorConfig::default().vllm_image)]
    pub vllm_image: String,
    /// GPU extended resource for jobs and deployments that keep the default
    /// resources.gpuResourceName (nvidia.com/gpu), e.g. amd.com/gpu.
    #[arg(long, env = "ANNEAL_DEFAULT_GPU_RESOURCE_NAME", default_value_t = OperatorConfig::default().default_gpu_resource_name)]
    pub default_gpu_resource_name: String,
    /// Object storage prefix for jobs without spec.output (s3://bucket/prefix).
    #[arg(long, env = "ANNEAL_DEFAULT_OUTPUT_URI")]
    pub default_output_uri: Option<String>,
    /// Secret with storage credentials, in each job's namespace, for jobs that name none.
    #[arg(long, env = "ANNEAL_DEFAULT_CREDENTIALS_SECRET")]
    pub default_credentials_secret: Option<String>,
    /// URL trainer pods reach this operator's report endpoint at.
    #[arg(long, env = "ANNEAL_REPORT_BASE_URL", default_value_t = OperatorConfig::default().report_base_url)]
    pub report_base_url: String,
    /// Where the report endpoint listens.
    #[arg(long, env = "ANNEAL_REPORT_LISTEN", default_value = "0.0.0.0:8080")]
    pub report_listen: SocketAddr,
    /// Where /metrics, /healthz and /readyz listen.
    #[arg(long, env = "ANNEAL_HEALTH_LISTEN", default_value = "0.0.0.0:9090")]
    pub health_listen: SocketAddr,
    /// Retries of a trainer pod that fails with a retryable error.
    #[arg(long, env = "ANNEAL_TRAINER_BACKOFF_LIMIT", default_value_t = 3)]
    pub trainer_backoff_limit: i32,
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

/// `anneal-operator --help`, as text.
pub fn help_text() -> String {
    OperatorArgs::command().render_help().to_string()
}
