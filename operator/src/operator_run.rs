//! The operator process put together: health and metrics endpoints, leader election,
//! then (as leader only) the report endpoint, the status flusher and the FineTuneJob,
//! ModelDeployment and ModelEvaluation controllers. The binary calls [`run_operator`]; end-to-end
//! tests call it in-process against the fake API server.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::admission::certificate::{OperatorCertificate, keep_certificate};
use crate::admission::{
    KubeAccessReviewer, WebhookTls, admission_router, serve_webhook, wait_for_files,
};
use crate::config::OperatorConfig;
use crate::console::{ConsoleSettings, ConsoleState, console_router};
use crate::finetunejob::controller::{self as finetunejob, run_finetunejob_controller};
use crate::finetunejob::kube_report::KubeReportCluster;
use crate::leader_election::{LeaderElector, LeaseSettings};
use crate::metrics::Metrics;
use crate::modeldeployment::controller::run_modeldeployment_controller;
use crate::modelevaluation::controller::run_modelevaluation_controller;
use crate::report::{ReportSettings, ReportState, report_router};
use crate::shared::controller_context::Context as ControllerContext;

/// Everything the process is configured with.
#[derive(Clone, Debug)]
pub struct OperatorSettings {
    pub config: OperatorConfig,
    /// Watch one namespace; `None` watches all.
    pub namespace: Option<String>,
    /// Leader election; `None` runs as the only replica.
    pub lease: Option<LeaseSettings>,
    pub report: ReportSettings,
    /// Name in Kubernetes Events' `reportingInstance` (the pod name).
    pub instance: String,
    /// The admission webhook, served by every replica; `None` serves none.
    pub webhook: Option<WebhookServing>,
    /// How the console learns who its viewers are, and reaches deployments.
    pub console: ConsoleSettings,
}

/// Where the admission webhook listens and its certificate.
#[derive(Clone, Debug)]
pub struct WebhookServing {
    pub listen: std::net::SocketAddr,
    pub tls: WebhookTls,
    /// Set when the operator makes and rotates the certificate itself, writing it into
    /// `tls.cert_dir`.
    pub certificate: Option<OperatorCertificate>,
}

/// The sockets the operator serves on, bound by the caller (tests bind port 0).
pub struct Listeners {
    /// The report endpoint (leader only).
    pub report: TcpListener,
    /// /metrics, /healthz, /readyz.
    pub health: TcpListener,
    /// The console, when there is one (every replica).
    pub console: Option<TcpListener>,
}

/// How long the controllers' running reconciles get to finish at shutdown.
const CONTROLLER_STOP: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs until `shutdown` turns true, or until this replica loses its lease (then it
/// returns an error, and the pod restarts as a follower).
pub async fn run_operator(
    client: Client,
    settings: OperatorSettings,
    listeners: Listeners,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let Listeners {
        report: report_listener,
        health: health_listener,
        console: console_listener,
    } = listeners;
    let metrics = Metrics::new();
    let leading = Arc::new(AtomicBool::new(false));
    let health = health_router(metrics.clone(), leading.clone());
    spawn_server("health endpoint", health_listener, health, shutdown.clone());

    let leader_reports = Arc::new(OnceLock::new());
    if let Some(listener) = console_listener {
        let console = console_router(ConsoleState {
            client: client.clone(),
            config: settings.config.clone(),
            namespace: settings.namespace.clone(),
            reports: leader_reports.clone(),
            auth: settings.console.auth.clone(),
            serving_address: settings.console.serving_address.clone(),
            stopping: shutdown.clone(),
        });
        spawn_server("console", listener, console, shutdown.clone());
    }

    // The webhook answers the API server whichever replica leads: it reads nothing
    // the leader holds.
    if let Some(webhook) = settings.webhook.clone() {
        spawn_webhook(webhook, &client, &settings.config, shutdown.clone())?;
    }

    let elector = settings
        .lease
        .clone()
        .map(|lease| LeaderElector::new(client.clone(), lease));
    if let Some(elector) = &elector {
        info!(identity = %elector.settings().identity, "waiting to become the leader");
        tokio::select! {
            () = elector.acquire() => {}
            () = wait_for(shutdown.clone()) => return Ok(()),
        }
        info!("leading");
    }
    leading.store(true, Ordering::SeqCst);

    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "anneal-operator".to_owned(),
            instance: Some(settings.instance.clone()),
        },
    );
    let reports = ReportState::with_settings(
        KubeReportCluster::new(client.clone(), recorder.clone()),
        metrics.clone(),
        settings.report.clone(),
    );
    let _ = leader_reports.set(reports.clone());
    let flusher = reports.spawn_flusher();
    let report_app = report_router(reports.clone());
    let report_shutdown = shutdown.clone();
    tokio::spawn(async move {
        // Each connection's address, for the per-source limit on refused posts.
        let app = report_app.into_make_service_with_connect_info::<std::net::SocketAddr>();
        let served = axum::serve(report_listener, app)
            .with_graceful_shutdown(wait_for(report_shutdown))
            .await;
        if let Err(error) = served {
            error!(%error, "report endpoint stopped");
        }
    });

    let (stop_controller, controller_stop) = watch::channel(false);
    let controllers = spawn_controllers(
        client,
        recorder,
        metrics,
        &settings,
        reports.clone(),
        controller_stop,
    );
    let lost_lease = async {
        match &elector {
            Some(elector) => elector.keep_renewing().await,
            None => std::future::pending().await,
        }
    };
    let outcome = tokio::select! {
        () = lost_lease => Err(anyhow::anyhow!("lost the leader lease; stopping so that another replica leads")),
        _ = shutdown.wait_for(|stop| *stop) => Ok(()),
    };
    leading.store(false, Ordering::SeqCst);
    let _ = stop_controller.send(true);
    stop_controllers(controllers).await;
    if let Err(error) = reports.flush_all().await {
        error!(%error, "writing the last reported status");
    }
    flusher.abort();
    if let Some(elector) = &elector
        && outcome.is_ok()
        && let Err(error) = elector.release().await
    {
        error!(%error, "releasing the leader lease");
    }
    outcome
}

/// The three controllers and the notifier (`spec.notify`), each until `stop` turns
/// true, by kind.
fn spawn_controllers(
    client: Client,
    recorder: Recorder,
    metrics: Metrics,
    settings: &OperatorSettings,
    reports: ReportState<KubeReportCluster>,
    stop: watch::Receiver<bool>,
) -> [(&'static str, tokio::task::JoinHandle<()>); 4] {
    let notifier = crate::notify::run_notifier(
        client.clone(),
        metrics.clone(),
        settings.config.notify_allowed_hosts.clone(),
        settings.namespace.clone(),
        wait_for(stop.clone()),
    );
    let shared = Arc::new(ControllerContext {
        client: client.clone(),
        recorder: recorder.clone(),
        metrics: metrics.clone(),
        config: settings.config.clone(),
    });
    let training = Arc::new(finetunejob::Context {
        client,
        recorder,
        metrics,
        config: settings.config.clone(),
        reports,
    });
    let namespace = || settings.namespace.clone();
    [
        (
            "FineTuneJob",
            tokio::spawn(run_finetunejob_controller(
                training,
                namespace(),
                wait_for(stop.clone()),
            )),
        ),
        (
            "ModelDeployment",
            tokio::spawn(run_modeldeployment_controller(
                shared.clone(),
                namespace(),
                wait_for(stop.clone()),
            )),
        ),
        (
            "ModelEvaluation",
            tokio::spawn(run_modelevaluation_controller(
                shared,
                namespace(),
                wait_for(stop),
            )),
        ),
        ("Notifier", tokio::spawn(notifier)),
    ]
}

/// Waits for the told-to-stop controllers' running reconciles, [`CONTROLLER_STOP`] at
/// most each. kube's graceful shutdown waits for the controller's cache to fill first;
/// a stop that comes before it has (a replica stopped right after it started) would
/// wait forever.
async fn stop_controllers(controllers: [(&'static str, tokio::task::JoinHandle<()>); 4]) {
    for (kind, mut task) in controllers {
        if tokio::time::timeout(CONTROLLER_STOP, &mut task)
            .await
            .is_err()
        {
            warn!(kind, "the controller did not stop in time; ending it");
            task.abort();
        }
    }
}

/// `/healthz` (the process is alive), `/readyz` (this replica leads, so the report
/// Service sends trainers to it), `/metrics`.
fn health_router(metrics: Metrics, leading: Arc<AtomicBool>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(leading): State<Arc<AtomicBool>>| async move {
                if leading.load(Ordering::SeqCst) {
                    (StatusCode::OK, "leading")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "standing by")
                }
            }),
        )
        .with_state(leading)
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4",
                        )],
                        metrics.render(),
                    )
                }
            }),
        )
}

/// Resolves once the flag turns true (or its sender is gone).
/// Serves `app` on `listener` until `shutdown` turns true.
fn spawn_server(
    what: &'static str,
    listener: TcpListener,
    app: Router,
    shutdown: watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(wait_for(shutdown))
            .await;
        if let Err(error) = served {
            error!(%error, "{what} stopped");
        }
    });
}

async fn wait_for(mut flag: watch::Receiver<bool>) {
    let _ = flag.wait_for(|stop| *stop).await;
}

/// Starts serving the admission webhook; it stops gracefully when `shutdown` turns true.
fn spawn_webhook(
    webhook: WebhookServing,
    client: &Client,
    config: &OperatorConfig,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let listener = std::net::TcpListener::bind(webhook.listen)?;
    let handle = axum_server::Handle::new();
    let keeper = webhook.certificate.clone().map(|certificate| {
        tokio::spawn(keep_certificate(
            client.clone(),
            certificate,
            webhook.tls.cert_dir.clone(),
        ))
    });
    let router = admission_router(KubeAccessReviewer::new(client.clone()), config.clone());
    let stopping = handle.clone();
    tokio::spawn(async move {
        wait_for(shutdown).await;
        stopping.graceful_shutdown(Some(std::time::Duration::from_secs(5)));
    });
    tokio::spawn(async move {
        if keeper.is_some() {
            // The first certificate is being made: serve once its files are there.
            wait_for_files(&webhook.tls).await;
        }
        if let Err(error) = serve_webhook(listener, webhook.tls, router, handle).await {
            error!(%error, "admission webhook stopped");
        }
        if let Some(keeper) = keeper {
            keeper.abort();
        }
    });
    Ok(())
}
