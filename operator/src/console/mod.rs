//! The operator's console (`--console-listen`): the cluster's FineTuneJobs in a
//! browser, with the same pages `trainer console` shows for local runs (the
//! `anneal-console` crate). A jobs list filtered by namespace and phase, and a page per
//! job: where it stands, its loss curve, its checkpoints' answers side by side, its
//! log, conditions, Events and manifest. Everything is read when a page is asked for
//! ([`job_sources`]); nothing is kept.
//!
//! Read-only: it changes nothing and shows no Secret. Without sign-in it shows what
//! the operator sees, and the chart binds it to the pod's loopback, so that only who
//! may `kubectl port-forward` into the operator's namespace reaches it; with sign-in
//! ([`viewer`]) each viewer sees the jobs they may read themselves. Every replica
//! serves it (the log lines come from the leader's report endpoint; a follower shows
//! the log events the run copied to storage).

pub mod job_sources;
pub mod viewer;

use std::sync::{Arc, OnceLock};

use anneal_console::job_pages::{JobFilter, jobs_page, refused_page, sign_in_page};
use anneal_console::jobs::{JobDetails, job_manifest, job_row, job_summary};
use anneal_console::pages;
use anneal_console::runs::LOG_LINES_SHOWN;
use anneal_crds::FineTuneJob;
use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use kube::{Api, Client};
use serde::Deserialize;
use tracing::warn;

use crate::config::OperatorConfig;
use crate::finetunejob::kube_report::KubeReportCluster;
use crate::report::ReportState;
use viewer::{AuthSettings, ConsoleAuth, Identified, TOKEN_COOKIE, Viewer, identify, may};

/// What every console request reads with.
#[derive(Clone)]
pub struct ConsoleState {
    pub client: Client,
    pub config: OperatorConfig,
    /// The watched namespace; `None`: all.
    pub namespace: Option<String>,
    /// The report endpoint, once this replica leads.
    pub reports: Arc<OnceLock<ReportState<KubeReportCluster>>>,
    pub auth: AuthSettings,
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
        .route("/login", get(sign_in).post(sign_in_with_token))
        .route("/logout", post(sign_out))
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

/// The request's viewer, or the answer for one who is not signed in (sent to sign
/// in) or not accepted.
async fn viewer_of(state: &ConsoleState, headers: &HeaderMap) -> Result<Viewer, Response> {
    match identify(&state.auth, headers, &state.client).await {
        Identified::Viewer(viewer) => Ok(viewer),
        Identified::SignIn => Err(Redirect::to("/login").into_response()),
        Identified::Refused(why) => {
            let sign_in = state.auth.mode == ConsoleAuth::Token;
            Err(html_page(
                StatusCode::UNAUTHORIZED,
                refused_page(&why, sign_in),
            ))
        }
    }
}

/// The jobs of `jobs` the viewer may list: all when they may list FineTuneJobs in all
/// namespaces, else those of the namespaces they may list them in.
async fn visible_jobs(
    state: &ConsoleState,
    viewer: &Viewer,
    jobs: Vec<FineTuneJob>,
) -> kube::Result<Vec<FineTuneJob>> {
    let cluster_wide = state.namespace.is_none();
    if !matches!(viewer, Viewer::User(_))
        || (cluster_wide && may(&state.client, viewer, "list", None, None).await?)
    {
        return Ok(jobs);
    }
    let mut namespaces: Vec<String> = jobs
        .iter()
        .filter_map(|j| j.metadata.namespace.clone())
        .collect();
    namespaces.sort();
    namespaces.dedup();
    let mut allowed = Vec::new();
    for namespace in namespaces {
        if may(&state.client, viewer, "list", Some(&namespace), None).await? {
            allowed.push(namespace);
        }
    }
    Ok(jobs
        .into_iter()
        .filter(|j| {
            j.metadata
                .namespace
                .as_ref()
                .is_some_and(|n| allowed.contains(n))
        })
        .collect())
}

async fn jobs_list(
    State(state): State<Arc<ConsoleState>>,
    Query(query): Query<FilterQuery>,
    headers: HeaderMap,
) -> Response {
    let viewer = match viewer_of(&state, &headers).await {
        Ok(viewer) => viewer,
        Err(response) => return response,
    };
    let listed = job_sources::list_jobs(&state.client, state.namespace.as_deref()).await;
    let visible = match listed {
        Ok(jobs) => visible_jobs(&state, &viewer, jobs).await,
        Err(error) => Err(error),
    };
    let jobs = match visible {
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
    let page = jobs_page(&rows, &filter, &namespaces, viewer.name());
    html_page(StatusCode::OK, page)
}

/// The job the viewer asked for, or the answer when they may not get it (asked
/// before it is read: a refusal says nothing of whether it is there), it is not
/// there, or not in the watched namespace.
async fn viewed_job(
    state: &ConsoleState,
    headers: &HeaderMap,
    namespace: &str,
    name: &str,
) -> Result<FineTuneJob, Response> {
    let viewer = viewer_of(state, headers).await?;
    match may(&state.client, &viewer, "get", Some(namespace), Some(name)).await {
        Ok(true) => {}
        Ok(false) => {
            let who = viewer.name().unwrap_or("you");
            let why = format!("{who} may not get the FineTuneJob {namespace}/{name}.");
            return Err(html_page(StatusCode::FORBIDDEN, refused_page(&why, false)));
        }
        Err(error) => return Err(unavailable("reviewing access", &error)),
    }
    let watched = state.namespace.as_deref().is_none_or(|n| n == namespace);
    let api: Api<FineTuneJob> = Api::namespaced(state.client.clone(), namespace);
    let found = if watched {
        api.get_opt(name).await
    } else {
        Ok(None)
    };
    match found {
        Ok(Some(job)) => Ok(job),
        Ok(None) => {
            let page = pages::not_found(&format!("There is no FineTuneJob {namespace}/{name}."));
            Err(html_page(StatusCode::NOT_FOUND, page))
        }
        Err(error) => Err(unavailable("reading a FineTuneJob", &error)),
    }
}

async fn job_page(
    State(state): State<Arc<ConsoleState>>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let job = match viewed_job(&state, &headers, &namespace, &name).await {
        Ok(job) => job,
        Err(response) => return response,
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
    headers: HeaderMap,
) -> Response {
    let job = match viewed_job(&state, &headers, &namespace, &name).await {
        Ok(job) => job,
        Err(response) => return response,
    };
    match job_sources::sample_picture(&state.client, &job, &state.config, &checkpoint, &file).await
    {
        Some(bytes) => ([(header::CONTENT_TYPE, "image/png")], bytes).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn sign_in(State(state): State<Arc<ConsoleState>>) -> Response {
    if state.auth.mode != ConsoleAuth::Token {
        return Redirect::to("/").into_response();
    }
    html_page(StatusCode::OK, sign_in_page(None))
}

#[derive(Deserialize)]
struct SignInForm {
    token: String,
}

/// Checks the token with the API server; a good one is kept in the browser as a
/// cookie scripts cannot read and other sites' requests do not carry.
async fn sign_in_with_token(
    State(state): State<Arc<ConsoleState>>,
    Form(form): Form<SignInForm>,
) -> Response {
    if state.auth.mode != ConsoleAuth::Token {
        return Redirect::to("/").into_response();
    }
    let token = form.token.trim();
    let refused = |why: &str| html_page(StatusCode::UNAUTHORIZED, sign_in_page(Some(why)));
    let cookie_safe = |b: u8| b.is_ascii_graphic() && !matches!(b, b';' | b',' | b'"' | b'\\');
    if token.is_empty() || !token.bytes().all(cookie_safe) {
        return refused("That is not a token.");
    }
    match viewer::review_token(&state.client, token).await {
        Ok(Some(_)) => {
            let cookie = format!(
                "{TOKEN_COOKIE}={token}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={SIGN_IN_SECONDS}"
            );
            ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
        }
        Ok(None) => refused("The API server does not accept this token."),
        Err(error) => {
            warn!(%error, "console: reviewing a token");
            refused("The token could not be checked; try again.")
        }
    }
}

/// How long a sign-in lasts in the browser (the token may end sooner).
const SIGN_IN_SECONDS: u64 = 8 * 3600;

async fn sign_out() -> Response {
    let cookie = format!("{TOKEN_COOKIE}=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0");
    ([(header::SET_COOKIE, cookie)], Redirect::to("/login")).into_response()
}
