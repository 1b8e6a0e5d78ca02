//! The console's job pages: the FineTuneJobs list and a job's page, with its image
//! samples.

use std::sync::Arc;

use anneal_console::job_pages::{JobFilter, jobs_page};
use anneal_console::jobs::{JobDetails, job_manifest, job_row, job_summary};
use anneal_console::pages;
use anneal_console::runs::LOG_LINES_SHOWN;
use anneal_crds::FineTuneJob;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kube::Api;
use serde::Deserialize;

use super::viewer::{FINETUNEJOBS, Viewer};
use super::{
    ConsoleState, check_get, html_page, job_actions, job_sources, listable_namespaces, unavailable,
    viewer_of, watched,
};

#[derive(Deserialize, Default)]
pub struct FilterQuery {
    namespace: Option<String>,
    phase: Option<String>,
}

pub async fn jobs_list(
    State(state): State<Arc<ConsoleState>>,
    Query(query): Query<FilterQuery>,
    headers: HeaderMap,
) -> Response {
    let viewer = match viewer_of(&state, &headers).await {
        Ok(viewer) => viewer,
        Err(response) => return response,
    };
    let listed = job_sources::list_jobs(&state.client, state.namespace.as_deref()).await;
    let jobs = match listed {
        Ok(jobs) => jobs,
        Err(error) => return unavailable("listing FineTuneJobs", &error),
    };
    let present = jobs
        .iter()
        .filter_map(|j| j.metadata.namespace.clone())
        .collect();
    let allowed = match listable_namespaces(&state, &viewer, FINETUNEJOBS, present).await {
        Ok(allowed) => allowed,
        Err(error) => return unavailable("reviewing access", &error),
    };
    let jobs: Vec<FineTuneJob> = (jobs.into_iter())
        .filter(|j| {
            j.metadata
                .namespace
                .as_ref()
                .is_some_and(|n| allowed.contains(n))
        })
        .collect();
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
) -> Result<(Viewer, FineTuneJob), Response> {
    let viewer = viewer_of(state, headers).await?;
    check_get(state, &viewer, FINETUNEJOBS, namespace, name).await?;
    let api: Api<FineTuneJob> = Api::namespaced(state.client.clone(), namespace);
    let found = if watched(state, namespace) {
        api.get_opt(name).await
    } else {
        Ok(None)
    };
    match found {
        Ok(Some(job)) => Ok((viewer, job)),
        Ok(None) => {
            let page = pages::not_found(&format!("There is no FineTuneJob {namespace}/{name}."));
            Err(html_page(StatusCode::NOT_FOUND, page))
        }
        Err(error) => Err(unavailable("reading a FineTuneJob", &error)),
    }
}

pub async fn job_page(
    State(state): State<Arc<ConsoleState>>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let (viewer, job) = match viewed_job(&state, &headers, &namespace, &name).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let (history, events, permitted) = tokio::join!(
        job_sources::run_events(&state.client, &job, &state.config),
        job_sources::job_events(&state.client, &job),
        job_actions::permitted(&state, &viewer, &job),
    );
    let permitted = match permitted {
        Ok(permitted) => permitted,
        Err(error) => return unavailable("reviewing access", &error),
    };
    let log = (state.reports.get())
        .and_then(|reports| reports.log_tail(&namespace, &name, LOG_LINES_SHOWN));
    let summary = job_summary(&job, history.as_deref().ok(), log.as_deref());
    let details = JobDetails {
        conditions: job.status.clone().unwrap_or_default().conditions,
        events_unread: events.as_ref().err().map(ToString::to_string),
        events: events.unwrap_or_default(),
        history_unread: history.err(),
        manifest: job_manifest(&job),
        actions: job_actions::job_actions(&viewer, &job, permitted),
    };
    html_page(StatusCode::OK, pages::run_page(&summary, Some(&details)))
}

pub async fn job_sample_picture(
    State(state): State<Arc<ConsoleState>>,
    Path((namespace, name, checkpoint, file)): Path<(String, String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let job = match viewed_job(&state, &headers, &namespace, &name).await {
        Ok((_, job)) => job,
        Err(response) => return response,
    };
    match job_sources::sample_picture(&state.client, &job, &state.config, &checkpoint, &file).await
    {
        Some(bytes) => ([(header::CONTENT_TYPE, "image/png")], bytes).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
