//! The HTTP side of the report endpoint:
//!
//! - `POST /v1/jobs/{namespace}/{name}/events`: one trainer event or an array of them,
//!   with the job's bearer token; answers `{"accepted": N, "lastSeq": S}`, where
//!   repeats are not counted and `lastSeq` is the newest seq held (0 before any), so
//!   a trainer may drop everything up to it from its retry queue.
//! - `GET /v1/jobs/{namespace}/{name}/logs[?follow=true][&tail=N]`: the job's recent
//!   log lines as text; with `follow` the response stays open and streams new lines
//!   until the trainer reports a terminal phase or the client goes away.
//!
//! Logs need no token (users read them through `kubectl port-forward`), so this
//! router must only be reachable inside the cluster: its Service is ClusterIP and
//! it must never be exposed through an Ingress or LoadBalancer.

use std::convert::Infallible;

use anneal_crds::events::TrainerEvent;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::{Stream, StreamExt, stream};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

use super::access::{Access, authorize, job_for_logs};
use super::auth::bearer_token;
use super::job_gauges::update_job_gauges;
use super::job_reports::JobKey;
use super::log_buffer::{LogSubscription, LogUpdate};
use super::state::{ReportState, Shared};
use super::{ReportCluster, ReportError};

/// Largest post accepted: a full trainer batch (100 events) with long sample answers
/// in its checkpoint events stays well below it.
const POST_BYTES_MAX: usize = 8 * 1024 * 1024;

/// The report endpoint's routes, ready to serve.
pub fn report_router<C: ReportCluster>(state: ReportState<C>) -> Router {
    Router::new()
        .route("/v1/jobs/{namespace}/{name}/events", post(post_events::<C>))
        .route("/v1/jobs/{namespace}/{name}/logs", get(get_logs::<C>))
        .layer(DefaultBodyLimit::max(POST_BYTES_MAX))
        .with_state(state)
}

async fn post_events<C: ReportCluster>(
    State(state): State<ReportState<C>>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let shared = &*state.shared;
    let Some(token) = bearer_token(&headers) else {
        return reject(
            shared,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing bearer token",
        );
    };
    let key = JobKey::new(&namespace, &name);
    let slot = match authorize(shared, &key, token).await {
        Ok(Access::Granted(slot)) => slot,
        Ok(Access::Unauthorized) => {
            return reject(
                shared,
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "wrong bearer token",
            );
        }
        Ok(Access::UnknownJob) => {
            let message = format!("no FineTuneJob {namespace}/{name} takes reports");
            return reject(shared, StatusCode::NOT_FOUND, "unknown_job", &message);
        }
        Err(error) => return cluster_unavailable(&error),
    };
    let events = match parse_events(&body) {
        Ok(events) => events,
        Err(problem) => return reject(shared, StatusCode::BAD_REQUEST, "malformed", &problem),
    };

    let outcome = slot.fold_batch(&events, Instant::now(), shared.settings.flush_interval);
    for event_type in &outcome.accepted_types {
        shared
            .metrics
            .report_events
            .with_label_values(&[*event_type])
            .inc();
    }
    if let Some((training, progress)) = &outcome.gauges {
        update_job_gauges(
            &shared.metrics,
            &namespace,
            &name,
            training.as_ref(),
            progress.as_ref(),
        );
    }
    // Events are the cluster's record, not the trainer's problem: a failure to record
    // one is logged and the post still succeeds (the status carries the facts).
    for milestone in &outcome.milestones {
        if let Err(error) = shared
            .cluster
            .record_milestone(&namespace, &name, milestone)
            .await
        {
            tracing::warn!(%namespace, %name, reason = %milestone.reason, %error, "recording a milestone event failed");
        }
    }
    let answer = json!({
        "accepted": outcome.accepted_types.len(),
        "lastSeq": outcome.last_seq,
    });
    (StatusCode::OK, axum::Json(answer)).into_response()
}

/// One event object, or an array of them; the error names what is wrong and where.
fn parse_events(body: &[u8]) -> Result<Vec<TrainerEvent>, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|error| format!("body is not JSON: {error}"))?;
    match value {
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(index, item)| {
                serde_json::from_value(item)
                    .map_err(|error| format!("event {} of the batch: {error}", index + 1))
            })
            .collect(),
        Value::Object(_) => serde_json::from_value(value)
            .map(|event| vec![event])
            .map_err(|error| format!("event: {error}")),
        _ => Err("body must be an event object or an array of events".to_owned()),
    }
}

#[derive(Debug, Deserialize)]
struct LogsQuery {
    #[serde(default)]
    follow: bool,
    tail: Option<usize>,
}

async fn get_logs<C: ReportCluster>(
    State(state): State<ReportState<C>>,
    Path((namespace, name)): Path<(String, String)>,
    Query(query): Query<LogsQuery>,
) -> Response {
    let slot = match job_for_logs(&state.shared, &JobKey::new(&namespace, &name)).await {
        Ok(Some(slot)) => slot,
        Ok(None) => {
            let message = format!("no FineTuneJob {namespace}/{name}");
            return error_response(StatusCode::NOT_FOUND, &message);
        }
        Err(error) => return cluster_unavailable(&error),
    };
    let subscription = slot.subscribe_logs(query.tail);
    let body = if query.follow {
        Body::from_stream(follow_stream(subscription))
    } else {
        Body::from(lines_text(&subscription.backlog))
    };
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn lines_text<L: AsRef<str>>(lines: &[L]) -> String {
    lines.iter().fold(String::new(), |mut text, line| {
        text.push_str(line.as_ref());
        text.push('\n');
        text
    })
}

/// The buffered lines, then each new line as its own chunk, ending at the run's end.
/// Dropping the stream (the client went away) drops its receiver, nothing else.
fn follow_stream(
    subscription: LogSubscription,
) -> impl Stream<Item = Result<String, Infallible>> + Send + 'static {
    let backlog = (!subscription.backlog.is_empty()).then(|| Ok(lines_text(&subscription.backlog)));
    let updates = stream::unfold(subscription.updates, |updates| async move {
        let mut updates = updates?;
        let chunk = match updates.recv().await {
            Ok(LogUpdate::Line(line)) => format!("{line}\n"),
            Ok(LogUpdate::Finished) | Err(RecvError::Closed) => return None,
            Err(RecvError::Lagged(skipped)) => {
                format!("... {skipped} lines skipped: this reader fell behind\n")
            }
        };
        Some((Ok(chunk), Some(updates)))
    });
    stream::iter(backlog).chain(updates)
}

/// A refused post: counted by reason, answered with a JSON error.
fn reject<C>(shared: &Shared<C>, status: StatusCode, reason: &str, message: &str) -> Response {
    shared
        .metrics
        .report_rejected
        .with_label_values(&[reason])
        .inc();
    error_response(status, message)
}

fn cluster_unavailable(error: &ReportError) -> Response {
    tracing::warn!(%error, "report endpoint could not read the job");
    error_response(
        StatusCode::SERVICE_UNAVAILABLE,
        &format!("cannot read the job now: {error}"),
    )
}

fn error_response(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}
