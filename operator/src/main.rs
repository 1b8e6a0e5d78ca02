//! `anneal-operator`: the process the Helm chart and deploy/ run. Flags (each also an
//! environment variable) configure it; logs are JSON lines by default.

use std::time::Duration;

use anneal_operator::admission::WebhookTls;
use anneal_operator::admission::certificate::OperatorCertificate;
use anneal_operator::cli::OperatorArgs;
use anneal_operator::console::ConsoleSettings;
use anneal_operator::leader_election::LeaseSettings;
use anneal_operator::operator_run::{Listeners, OperatorSettings, WebhookServing, run_operator};
use anneal_operator::report::ReportSettings;
use clap::Parser;
use tokio::net::TcpListener;
use tokio::sync::watch;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = OperatorArgs::parse();
    anneal_crds::storage::install_crypto_provider();
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
    let console = ConsoleSettings {
        auth: args.console_auth_settings(),
        ..ConsoleSettings::default()
    };
    let settings = OperatorSettings {
        console,
        config: args.config,
        namespace: args.watch_namespace,
        lease: args
            .leader_election
            .then(|| LeaseSettings::new(&args.lease_namespace, &args.lease_name, &identity)),
        report: ReportSettings::default(),
        instance: identity,
        webhook: args.webhook_cert_dir.map(|cert_dir| WebhookServing {
            listen: args.webhook_listen,
            tls: WebhookTls { cert_dir },
            certificate: args.webhook_cert_secret.map(|secret| {
                let host = args.webhook_host.clone().unwrap_or_default();
                OperatorCertificate {
                    namespace: args.lease_namespace.clone(),
                    secret,
                    hosts: vec![host.clone(), format!("{host}.cluster.local")],
                    configuration: args.webhook_configuration.clone().unwrap_or_default(),
                }
            }),
        }),
    };
    let client = kube::Client::try_default().await?;
    let report_listener = TcpListener::bind(args.report_listen).await?;
    let health_listener = TcpListener::bind(args.health_listen).await?;
    let console_listener = match args.console_listen {
        Some(address) => Some(TcpListener::bind(address).await?),
        None => None,
    };
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_termination().await;
        tracing::info!("shutting down");
        let _ = stop.send(true);
        // A stuck shutdown must not outlive the pod's grace period.
        tokio::time::sleep(Duration::from_secs(25)).await;
        std::process::exit(1);
    });
    let listeners = Listeners {
        report: report_listener,
        health: health_listener,
        console: console_listener,
    };
    run_operator(client, settings, listeners, stopped).await
}

async fn wait_for_termination() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
