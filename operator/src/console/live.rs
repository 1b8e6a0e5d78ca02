//! Live pages: server-sent events that tell an open page its objects changed, fed by
//! a watch on the API server (one per open page: the whole list's FineTuneJobs, or the
//! one job). A `changed` event carries only the object's new resourceVersion; the
//! page fetches itself again, so
//! what it shows is always decided by the same rules as a first load, permissions
//! included. Keep-alive comments every 15 seconds keep proxies from closing it.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use anneal_crds::FineTuneJob;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};
use kube::Api;
use kube::runtime::watcher;

use super::viewer::FINETUNEJOBS;
use super::{ConsoleState, check_get, viewer_of, watched};

/// `changed` for each change the watch sees after its first listing.
fn changes(
    api: Api<FineTuneJob>,
    config: watcher::Config,
) -> impl Stream<Item = Result<Event, Infallible>> + Send {
    watcher(api, config).filter_map(|event| async move {
        match event {
            // The data is the object's new resourceVersion: a browser does not
            // dispatch an event whose data is empty.
            Ok(watcher::Event::Apply(job) | watcher::Event::Delete(job)) => {
                let version = job.metadata.resource_version.unwrap_or_else(|| "-".into());
                Some(Ok(Event::default().event("changed").data(version)))
            }
            // The first listing is what the page already shows; a watch error is
            // retried by the watcher itself.
            _ => None,
        }
    })
}

/// The stream as server-sent events, ending when the operator stops.
fn follow(
    state: &ConsoleState,
    stream: impl Stream<Item = Result<Event, Infallible>> + Send + 'static,
) -> Response {
    let mut stopping = state.stopping.clone();
    let stopped = async move {
        let _ = stopping.wait_for(|stop| *stop).await;
    };
    let keep_alive = KeepAlive::new().interval(Duration::from_secs(15));
    Sse::new(stream.take_until(Box::pin(stopped)))
        .keep_alive(keep_alive)
        .into_response()
}

/// Changes of any FineTuneJob the console lists (which of them the viewer sees is
/// decided when the list is fetched again).
pub async fn jobs_changes(State(state): State<Arc<ConsoleState>>, headers: HeaderMap) -> Response {
    if let Err(response) = viewer_of(&state, &headers).await {
        return response;
    }
    let api: Api<FineTuneJob> = match &state.namespace {
        Some(namespace) => Api::namespaced(state.client.clone(), namespace),
        None => Api::all(state.client.clone()),
    };
    follow(&state, changes(api, watcher::Config::default()))
}

/// Changes of one FineTuneJob, for a viewer who may get it.
pub async fn job_changes(
    State(state): State<Arc<ConsoleState>>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let viewer = match viewer_of(&state, &headers).await {
        Ok(viewer) => viewer,
        Err(response) => return response,
    };
    if let Err(response) = check_get(&state, &viewer, FINETUNEJOBS, &namespace, &name).await {
        return response;
    }
    if !watched(&state, &namespace) {
        return axum::http::StatusCode::NOT_FOUND.into_response();
    }
    let api: Api<FineTuneJob> = Api::namespaced(state.client.clone(), &namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    follow(&state, changes(api, config))
}
