//! `anneal-operator`: the process the Helm chart and deploy/ run. Flags (each also an
//! environment variable) configure it; logs are JSON lines by default.

use std::net::SocketAddr;
use std::time::Duration;

use anneal_operator::config::OperatorConfig;
use anneal_operator::leader_election::LeaseSettings;
use anneal_operator::operator_run::{OperatorSettings, run_operator};
use anneal_operator::report::ReportSettings;
use clap::Parser;
use tokio::net::TcpListener;
use tokio::sync::watch;

#[derive(Parser, Debug)]
#[command(
    name = "anneal-operator",
    version,
    about = "Anneal's Kubernetes operator: FineTuneJobs, trainer pods, status and logs; ModelDeployments and their serving pods"
)]
struct Args {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "ANNEAL_WATCH_NAMESPACE")]
    watch_namespace: Option<String>,
    /// Image of trainer pods.
    #[arg(long, env = "ANNEAL_TRAINER_IMAGE", default_value_t = OperatorConfig::default().trainer_image)]
    trainer_image: String,
    /// Image of ModelDeployments with `runtime: vllm`.
    #[arg(long, env = "ANNEAL_VLLM_IMAGE", default_value_t = OperatorConfig::default().vllm_image)]
    vllm_image: String,
    /// GPU extended resource for jobs and deployments that keep the default
    /// resources.gpuResourceName (nvidia.com/gpu), e.g. amd.com/gpu.
    #[arg(long, env = "ANNEAL_DEFAULT_GPU_RESOURCE_NAME", default_value_t = OperatorConfig::default().default_gpu_resource_name)]
    default_gpu_resource_name: String,
    /// Object storage prefix for jobs without spec.output (s3://bucket/prefix).
    #[arg(long, env = "ANNEAL_DEFAULT_OUTPUT_URI")]
    default_output_uri: Option<String>,
    /// Secret with storage credentials, in each job's namespace, for jobs that name none.
    #[arg(long, env = "ANNEAL_DEFAULT_CREDENTIALS_SECRET")]
    default_credentials_secret: Option<String>,
    /// URL trainer pods reach this operator's report endpoint at.
    #[arg(long, env = "ANNEAL_REPORT_BASE_URL", default_value_t = OperatorConfig::default().report_base_url)]
    report_base_url: String,
    /// Where the report endpoint listens.
    #[arg(long, env = "ANNEAL_REPORT_LISTEN", default_value = "0.0.0.0:8080")]
    report_listen: SocketAddr,
    /// Where /metrics, /healthz and /readyz listen.
    #[arg(long, env = "ANNEAL_HEALTH_LISTEN", default_value = "0.0.0.0:9090")]
    health_listen: SocketAddr,
    /// Retries of a trainer pod that fails with a retryable error.
    #[arg(long, env = "ANNEAL_TRAINER_BACKOFF_LIMIT", default_value_t = 3)]
    trainer_backoff_limit: i32,
    /// Elect a leader on a Lease (needed with more than one replica).
    #[arg(long, env = "ANNEAL_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// Namespace of the leader Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "anneal-system")]
    lease_namespace: String,
    /// Name of the leader Lease.
    #[arg(long, env = "ANNEAL_LEASE_NAME", default_value = "anneal-operator")]
    lease_name: String,
    /// This replica's identity in the Lease and in Events (its pod name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// `json` or `text`.
    #[arg(long, env = "ANNEAL_LOG_FORMAT", default_value = "json")]
    log_format: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if args.log_format == "text" {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    } else {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    }
    let identity = args.identity.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| format!("anneal-operator-{}", std::process::id()))
    });
    let settings = OperatorSettings {
        config: OperatorConfig {
            trainer_image: args.trainer_image,
            vllm_image: args.vllm_image,
            default_output_uri: args.default_output_uri,
            default_credentials_secret: args.default_credentials_secret,
            report_base_url: args.report_base_url,
            trainer_backoff_limit: args.trainer_backoff_limit,
            default_gpu_resource_name: args.default_gpu_resource_name,
            ..OperatorConfig::default()
        },
        namespace: args.watch_namespace,
        lease: args
            .leader_election
            .then(|| LeaseSettings::new(&args.lease_namespace, &args.lease_name, &identity)),
        report: ReportSettings::default(),
        instance: identity,
    };
    let client = kube::Client::try_default().await?;
    let report_listener = TcpListener::bind(args.report_listen).await?;
    let health_listener = TcpListener::bind(args.health_listen).await?;
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_termination().await;
        tracing::info!("shutting down");
        let _ = stop.send(true);
        // A stuck shutdown must not outlive the pod's grace period.
        tokio::time::sleep(Duration::from_secs(25)).await;
        std::process::exit(1);
    });
    run_operator(client, settings, report_listener, health_listener, stopped).await
}

async fn wait_for_termination() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
