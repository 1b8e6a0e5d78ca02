//! The HTTP side of the report endpoint:
//!
//! - `POST /v1/jobs/{namespace}/{name}/events`: one trainer event or an array of them,
//!   with the job's bearer token; answers `{"accepted": N, "refused": R, "lastSeq": S}`,
//!   where repeats are not counted, refused events broke a rule (see `fold_rules`), and
//!   `lastSeq` is the newest seq held (0 before any), so a trainer may drop everything
//!   up to it from its retry queue. The answer comes once those events are in the
//!   job's stored status (writes stay coalesced, one a second per job), or `503` with
//!   `Retry-After` after 5 s without: what the endpoint acknowledged survives the
//!   operator's death.
//! - `GET /v1/jobs/{namespace}/{name}/logs[?follow=true][&tail=N]`: the job's recent
//!   log lines as text, with the same bearer token; with `follow` the response stays
//!   open and streams new lines until the trainer reports a terminal phase or the
//!   client goes away.
//!
//! A post is judged from its headers before its body is read: the token (in memory,
//! no cluster read), the source's refusals, the job's rate, the declared length and
//! the shared byte budget. Only then is the body read, and never past its limit.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anneal_crds::events::TrainerEvent;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::{Stream, StreamExt, stream};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

use super::ReportCluster;
use super::access::{authorize_logs, authorize_post};
use super::auth::bearer_token;
use super::coalescer::write_job;
use super::job_gauges::update_job_gauges;
use super::job_reports::{JobKey, JobSlot};
use super::log_buffer::{LogSubscription, LogUpdate};
use super::post_limits::BodyReservation;
use super::state::{ReportState, Shared};

/// Events one post may carry; the trainer sends at most 100.
const BATCH_EVENTS_MAX: usize = 1000;
/// The one answer for a missing token, a wrong one and an unknown job.
const UNAUTHORIZED: &str = "no job here takes this token (missing, wrong, or the job has ended)";

/// The report endpoint's routes, ready to serve. Serve them with
/// `into_make_service_with_connect_info::<SocketAddr>()`, so that refusals are limited
/// per source address.
pub fn report_router<C: ReportCluster>(state: ReportState<C>) -> Router {
    Router::new()
        .route("/v1/jobs/{namespace}/{name}/events", post(post_events::<C>))
        .route("/v1/jobs/{namespace}/{name}/logs", get(get_logs::<C>))
        .with_state(state)
}

async fn post_events<C: ReportCluster>(
    State(state): State<ReportState<C>>,
    Path((namespace, name)): Path<(String, String)>,
    request: Request,
) -> Response {
    let shared = &*state.shared;
    let key = JobKey::new(&namespace, &name);
    let (parts, body) = request.into_parts();
    let source = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    let slot = match admit_post(shared, &key, &parts.headers, source) {
        Ok(slot) => slot,
        Err(refused) => return refused.answer(shared),
    };
    let (reservation, body) = match read_body(shared, &parts.headers, body).await {
        Ok(read) => read,
        Err(refused) => return refused.answer(shared),
    };
    let events = match parse_events(&body) {
        Ok(events) => events,
        Err(problem) => return reject(shared, StatusCode::BAD_REQUEST, "malformed", &problem),
    };
    if events.len() > BATCH_EVENTS_MAX {
        let message = format!(
            "a batch of {} events; at most {BATCH_EVENTS_MAX} a post",
            events.len()
        );
        return reject(shared, StatusCode::PAYLOAD_TOO_LARGE, "too_large", &message);
    }
    drop(body);
    fold_posted(shared, &slot, events, reservation).await
}

/// How long a post waits for its events to reach the job's stored status before it is
/// answered `503` (to be sent again): under the trainer's 10 s request timeout.
const PERSIST_WAIT: Duration = Duration::from_secs(5);

/// Waits until the job's stored status holds the events up to `seq`, writing it when
/// it is due rather than waiting for the flusher's next tick; `false` after
/// [`PERSIST_WAIT`].
async fn wait_until_persisted<C: ReportCluster>(
    shared: &Shared<C>,
    slot: &Arc<JobSlot>,
    seq: u64,
) -> bool {
    let deadline = Instant::now() + PERSIST_WAIT;
    let tick = (shared.settings.flush_interval / 4).max(Duration::from_millis(10));
    let mut persisted = slot.watch_persisted();
    loop {
        if *persisted.borrow_and_update() >= seq {
            return true;
        }
        // Failures are counted and logged there; the job stays due for another try.
        let _ = write_job(shared, slot, false).await;
        if *persisted.borrow_and_update() >= seq {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        let _ = tokio::time::timeout(tick.min(deadline - now), persisted.changed()).await;
    }
}

/// A post turned away before its events were looked at.
struct Refused {
    status: StatusCode,
    /// The label of `anneal_report_rejected_total`.
    reason: &'static str,
    message: String,
    /// Worth retrying in a second (`Retry-After: 1`).
    retry: bool,
}

impl Refused {
    fn new(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            reason,
            message: message.into(),
            retry: false,
        }
    }

    fn retry_after_a_second(self) -> Self {
        Self {
            retry: true,
            ..self
        }
    }

    fn answer<C>(self, shared: &Shared<C>) -> Response {
        let mut response = reject(shared, self.status, self.reason, &self.message);
        if self.retry {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// The checks made from the headers alone: the token, then the job's post rate. A
/// refused post costs a map lookup and a counter; its body is never read.
fn admit_post<C>(
    shared: &Shared<C>,
    key: &JobKey,
    headers: &HeaderMap,
    source: Option<IpAddr>,
) -> Result<Arc<JobSlot>, Refused> {
    let slot = bearer_token(headers).and_then(|token| authorize_post(shared, key, token));
    let Some(slot) = slot else {
        if !shared.limits.refusal_within_limit(source) {
            return Err(Refused::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_refusals",
                "too many refused posts from this address; wait",
            )
            .retry_after_a_second());
        }
        return Err(Refused::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            UNAUTHORIZED,
        ));
    };
    if !shared.limits.job_may_post(key) {
        return Err(Refused::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "this job posts too often; batch events and retry",
        )
        .retry_after_a_second());
    }
    Ok(slot)
}

/// Reads the body within the per-post limit and the shared byte budget; the
/// reservation is held until the events are folded.
async fn read_body<C>(
    shared: &Shared<C>,
    headers: &HeaderMap,
    body: Body,
) -> Result<(BodyReservation, Bytes), Refused> {
    let limit = shared.limits.body_bytes_max();
    let too_large = || {
        let message = format!("the body is larger than {limit} bytes; post smaller batches");
        Refused::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|bytes| bytes > limit as u64) {
        return Err(too_large());
    }
    // Without a declared length (a chunked body), the most it may grow to is reserved.
    let reserve = declared.map_or(limit, |bytes| bytes as usize);
    let Some(reservation) = shared.limits.reserve_body(reserve) else {
        return Err(Refused::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "the endpoint is reading as many bodies as it holds at once; retry",
        )
        .retry_after_a_second());
    };
    match Limited::new(body, reserve).collect().await {
        Ok(collected) => Ok((reservation, collected.to_bytes())),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Err(error) => Err(Refused::new(
            StatusCode::BAD_REQUEST,
            "malformed",
            format!("reading the body: {error}"),
        )),
    }
}

/// Folds an authorized post's events and answers with what was taken.
async fn fold_posted<C: ReportCluster>(
    shared: &Shared<C>,
    slot: &Arc<JobSlot>,
    events: Vec<TrainerEvent>,
    reservation: BodyReservation,
) -> Response {
    let (namespace, name) = (&slot.key.namespace, &slot.key.name);
    let outcome = slot.fold_batch(&events, Instant::now(), shared.settings.flush_interval);
    // Folded: what the post held in memory goes back to the shared budget before the
    // wait for the status write.
    drop(events);
    drop(reservation);
    for event_type in &outcome.accepted_types {
        shared
            .metrics
            .report_events
            .with_label_values(&[*event_type])
            .inc();
    }
    for (seq, reason, why) in &outcome.refused {
        shared
            .metrics
            .report_events_refused
            .with_label_values(&[*reason])
            .inc();
        tracing::warn!(%namespace, %name, seq, reason, why, "refused a trainer event");
    }
    if let Some((training, progress)) = &outcome.gauges {
        update_job_gauges(
            &shared.metrics,
            namespace,
            name,
            training.as_ref(),
            progress.as_ref(),
        );
    }
    // Events are the cluster's record, not the trainer's problem: a failure to record
    // one is logged and the post still succeeds (the status carries the facts).
    for milestone in &outcome.milestones {
        if let Err(error) = shared
            .cluster
            .record_milestone(namespace, name, milestone)
            .await
        {
            tracing::warn!(%namespace, %name, reason = %milestone.reason, %error, "recording a milestone event failed");
        }
    }
    // Acknowledged only once recorded: an operator that dies before writing the
    // status has not said yes, and the trainer posts the same events again.
    if !wait_until_persisted(shared, slot, outcome.last_seq).await {
        return Refused::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_recorded",
            "the events are held but the job's status could not be written yet; post them again",
        )
        .retry_after_a_second()
        .answer(shared);
    }
    let answer = json!({
        "accepted": outcome.accepted_types.len(),
        "refused": outcome.refused.len(),
        "lastSeq": outcome.last_seq,
    });
    (StatusCode::OK, axum::Json(answer)).into_response()
}

/// One event object, or an array of them, parsed straight into events: never through
/// a generic JSON tree, which takes ten to twenty times the body's bytes for small
/// objects. The error names what is wrong and where (serde's line and column).
pub fn parse_events(body: &[u8]) -> Result<Vec<TrainerEvent>, String> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => serde_json::from_slice::<Vec<TrainerEvent>>(body)
            .map_err(|error| format!("body is not a batch of events: {error}")),
        Some(b'{') => serde_json::from_slice::<TrainerEvent>(body)
            .map(|event| vec![event])
            .map_err(|error| format!("body is not an event: {error}")),
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
    headers: HeaderMap,
) -> Response {
    let shared = &*state.shared;
    let key = JobKey::new(&namespace, &name);
    let Some(slot) = bearer_token(&headers).and_then(|token| authorize_logs(shared, &key, token))
    else {
        return error_response(StatusCode::UNAUTHORIZED, UNAUTHORIZED);
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

fn error_response(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}
