//! The operator's console (`--console-listen`): the cluster's FineTuneJobs in a
//! browser, with the same pages `trainer console` shows for local runs (the
//! `anneal-console` crate). A jobs list filtered by namespace and phase, and a page per
//! job: where it stands, its loss curve, its checkpoints' answers side by side, its
//! log, conditions, Events and manifest. Everything is read when a page is asked for
//! ([`job_sources`]); nothing is kept.
//!
//! Read-only, with the operator's own permissions: it changes nothing and shows no
//! Secret. Every replica serves it (the log lines come from the leader's report
//! endpoint; a follower shows the log events the run copied to storage). The chart
//! binds it to the pod's loopback, so that only who may `kubectl port-forward` into
//! the operator's namespace reaches it.

pub mod job_sources;

use std::sync::{Arc, OnceLock};

use anneal_console::job_pages::{JobFilter, jobs_page};
use anneal_console::jobs::{JobDetails, job_manifest, job_row, job_summary};
use anneal_console::pages;
use anneal_console::runs::LOG_LINES_SHOWN;
use anneal_crds::FineTuneJob;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use kube::{Api, Client};
use serde::Deserialize;
use tracing::warn;

use crate::config::OperatorConfig;
use crate::finetunejob::kube_report::KubeReportCluster;
use crate::report::ReportState;

/// What every console request reads with.
#[derive(Clone)]
pub struct ConsoleState {
    pub client: Client,
    pub config: OperatorConfig,
    /// The watched namespace; `None`: all.
    pub namespace: Option<String>,
    /// The report endpoint, once this replica leads.
    pub reports: Arc<OnceLock<ReportState<KubeReportCluster>>>,
}

/// The console's routes.
pub fn console_router(state: ConsoleState) -> Router {
    Router::new()
        .route("/", get(jobs_list))
        .route("/jobs/{namespace}/{name}", get(job_page))
        .route(
            "/jobs/{namespace}/{name}/samples/{checkpoint}/{file}",
            get(job_sample_picture),
        )
        .route("/health", get(|| async { "ok" }))
        .with_state(Arc::new(state))
}

#[derive(Deserialize, Default)]
struct FilterQuery {
    namespace: Option<String>,
    phase: Option<String>,
}

fn html_page(status: StatusCode, markup: maud::Markup) -> Response {
    let headers = [(header::CACHE_CONTROL, "no-store")];
    (status, headers, Html(markup.into_string())).into_response()
}

fn unavailable(what: &str, error: &kube::Error) -> Response {
    warn!(%error, "console: {what}");
    let page = pages::not_found(&format!("The Kubernetes API did not answer: {error}"));
    html_page(StatusCode::SERVICE_UNAVAILABLE, page)
}

async fn jobs_list(
    State(state): State<Arc<ConsoleState>>,
    Query(query): Query<FilterQuery>,
) -> Response {
    let jobs = match job_sources::list_jobs(&state.client, state.namespace.as_deref()).await {
        Ok(jobs) => jobs,
        Err(error) => return unavailable("listing FineTuneJobs", &error),
    };
    let rows: Vec<_> = jobs.iter().map(job_row).collect();
    let mut namespaces: Vec<String> = rows.iter().map(|r| r.namespace.clone()).collect();
    namespaces.sort();
    namespaces.dedup();
    let chosen = |value: Option<String>| value.filter(|v| !v.is_empty());
    let filter = JobFilter {
        namespace: chosen(query.namespace),
        phase: chosen(query.phase),
    };
    html_page(StatusCode::OK, jobs_page(&rows, &filter, &namespaces))
}

/// The job, when the console may show it (in the watched namespace) and it is there.
async fn find_job(
    state: &ConsoleState,
    namespace: &str,
    name: &str,
) -> Result<Option<FineTuneJob>, kube::Error> {
    if state.namespace.as_deref().is_some_and(|n| n != namespace) {
        return Ok(None);
    }
    let api: Api<FineTuneJob> = Api::namespaced(state.client.clone(), namespace);
    api.get_opt(name).await
}

async fn job_page(
    State(state): State<Arc<ConsoleState>>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    let job = match find_job(&state, &namespace, &name).await {
        Ok(Some(job)) => job,
        Ok(None) => {
            let page = pages::not_found(&format!("There is no FineTuneJob {namespace}/{name}."));
            return html_page(StatusCode::NOT_FOUND, page);
        }
        Err(error) => return unavailable("reading a FineTuneJob", &error),
    };
    let (history, events) = tokio::join!(
        job_sources::run_events(&state.client, &job, &state.config),
        job_sources::job_events(&state.client, &job),
    );
    let log = (state.reports.get())
        .and_then(|reports| reports.log_tail(&namespace, &name, LOG_LINES_SHOWN));
    let summary = job_summary(&job, history.as_deref().ok(), log.as_deref());
    let details = JobDetails {
        conditions: job.status.clone().unwrap_or_default().conditions,
        events_unread: events.as_ref().err().map(ToString::to_string),
        events: events.unwrap_or_default(),
        history_unread: history.err(),
        manifest: job_manifest(&job),
    };
    html_page(StatusCode::OK, pages::run_page(&summary, Some(&details)))
}

async fn job_sample_picture(
    State(state): State<Arc<ConsoleState>>,
    Path((namespace, name, checkpoint, file)): Path<(String, String, String, String)>,
) -> Response {
    let Ok(Some(job)) = find_job(&state, &namespace, &name).await else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match job_sources::sample_picture(&state.client, &job, &state.config, &checkpoint, &file).await
    {
        Some(bytes) => ([(header::CONTENT_TYPE, "image/png")], bytes).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
