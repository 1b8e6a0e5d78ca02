//! The console's job pages: the FineTuneJobs list and a job's page, with its image
//! samples.

use std::sync::Arc;

use anneal_console::chart_controls::StepQuery;
use anneal_console::job_pages::{JobFilter, jobs_page};
use anneal_console::jobs::{JobDetails, job_manifest, job_row, job_summary};
use anneal_console::pages;
use anneal_console::runs::LOG_LINES_SHOWN;
use anneal_crds::FineTuneJob;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::viewer::FINETUNEJOBS;
use super::{
    ConsoleState, html_page, job_actions, job_plan, job_sources, listed, unavailable, viewed,
    viewer_of,
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
    let mut jobs: Vec<FineTuneJob> = match listed(&state, &viewer, FINETUNEJOBS).await {
        Ok(jobs) => jobs,
        Err(response) => return response,
    };
    // Newest first, as a hosted service lists them.
    jobs.sort_by_key(|job| std::cmp::Reverse(job.metadata.creation_timestamp.clone()));
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

pub async fn job_page(
    State(state): State<Arc<ConsoleState>>,
    Path((namespace, name)): Path<(String, String)>,
    Query(steps): Query<StepQuery>,
    headers: HeaderMap,
) -> Response {
    let (viewer, job) =
        match viewed::<FineTuneJob>(&state, &headers, FINETUNEJOBS, &namespace, &name).await {
            Ok(found) => found,
            Err(response) => return response,
        };
    let (history, events, permitted, memory_plan) = tokio::join!(
        job_sources::run_events(&state.client, &job, &state.config),
        job_sources::job_events(&state.client, &job),
        job_actions::permitted(&state, &viewer, &job),
        job_plan::memory_plan_text(&state, &job),
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
        memory_plan,
        estimate: job.status.as_ref().and_then(|s| s.estimate.clone()),
        actions: job_actions::job_actions(&viewer, &job, permitted),
    };
    let page = pages::run_page(&summary, Some(&details), &steps.window());
    html_page(StatusCode::OK, page)
}

pub async fn job_sample_picture(
    State(state): State<Arc<ConsoleState>>,
    Path((namespace, name, checkpoint, file)): Path<(String, String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let job = match viewed::<FineTuneJob>(&state, &headers, FINETUNEJOBS, &namespace, &name).await {
        Ok((_, job)) => job,
        Err(response) => return response,
    };
    match job_sources::sample_picture(&state.client, &job, &state.config, &checkpoint, &file).await
    {
        Some(bytes) => ([(header::CONTENT_TYPE, "image/png")], bytes).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
