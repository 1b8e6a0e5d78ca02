//! Watch streams: newline-delimited `{"type": ..., "object": ...}` events replayed
//! from the store's history after the requested resourceVersion, then live.
//!
//! - no `resourceVersion`, or `0`: synthetic ADDED events for every current match
//!   first (with `sendInitialEvents=true`, followed by the BOOKMARK annotated
//!   `k8s.io/initial-events-end` that streaming lists wait for);
//! - a resourceVersion older than the kept history: one ERROR event carrying a
//!   410 Expired Status, then the stream ends (clients re-list);
//! - selectors apply to the object before and after each change, so an object
//!   that stops matching arrives as DELETED and one that starts to as ADDED;
//! - `allowWatchBookmarks=true`: a BOOKMARK at the newest resourceVersion after
//!   every idle `bookmark_interval`;
//! - `timeoutSeconds`: the stream ends after that long.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::errors::{ApiError, ApiResult};
use crate::query::Query;
use crate::resources::ResourceType;
use crate::selector::Selector;
use crate::shared::{Shared, Signal};
use crate::store::{Change, ChangeType};

/// What a watch request asks for.
#[derive(Clone, Debug)]
pub struct WatchRequest {
    pub resource: ResourceType,
    pub namespace: Option<String>,
    pub selector: Selector,
    /// `None`: start with the current state as ADDED events.
    pub after: Option<u64>,
    pub send_initial_events: bool,
    pub bookmarks: bool,
    pub timeout: Option<Duration>,
}

impl WatchRequest {
    pub fn parse(
        resource: ResourceType,
        namespace: Option<String>,
        selector: Selector,
        query: &Query,
    ) -> ApiResult<Self> {
        let after =
            match query.get("resourceVersion") {
                None | Some("" | "0") => None,
                Some(rv) => Some(rv.parse::<u64>().map_err(|_| {
                    ApiError::bad_request(format!("invalid resourceVersion {rv:?}"))
                })?),
            };
        let timeout = match query.get("timeoutSeconds") {
            None => None,
            Some(s) => Some(Duration::from_secs(s.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!("invalid timeoutSeconds {s:?}"))
            })?)),
        };
        let send_initial_events = query.flag("sendInitialEvents");
        Ok(Self {
            resource,
            namespace,
            selector,
            // A streaming list starts from the current state whatever version it names.
            after: if send_initial_events { None } else { after },
            send_initial_events,
            bookmarks: query.flag("allowWatchBookmarks"),
            timeout,
        })
    }

    /// The event type a change is seen as through this watch, if it is seen at all.
    fn sees(&self, change: &Change) -> Option<&'static str> {
        if change.key.group != self.resource.group
            || change.key.plural != self.resource.plural
            || self
                .namespace
                .as_ref()
                .is_some_and(|ns| *ns != change.key.namespace)
        {
            return None;
        }
        let now = self.selector.matches(&change.object);
        let before = change
            .previous
            .as_ref()
            .is_some_and(|p| self.selector.matches(p));
        match (change.change, before, now) {
            (ChangeType::Added, _, true) => Some("ADDED"),
            (ChangeType::Modified, true, true) => Some("MODIFIED"),
            (ChangeType::Modified, false, true) => Some("ADDED"),
            (ChangeType::Modified, true, false) => Some("DELETED"),
            (ChangeType::Deleted, b, n) if b || n => Some("DELETED"),
            _ => None,
        }
    }

    fn bookmark(&self, resource_version: u64, initial_events_end: bool) -> Bytes {
        let mut metadata = json!({"resourceVersion": resource_version.to_string()});
        if initial_events_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let object = json!({
            "kind": self.resource.kind,
            "apiVersion": self.resource.api_version(),
            "metadata": metadata,
        });
        line("BOOKMARK", &object)
    }
}

fn line(event_type: &str, object: &Value) -> Bytes {
    let mut text = json!({"type": event_type, "object": object}).to_string();
    text.push('\n');
    Bytes::from(text)
}

/// One open watch.
struct Cursor {
    shared: Arc<Shared>,
    request: WatchRequest,
    signal: watch::Receiver<Signal>,
    disconnects: u64,
    /// The newest resourceVersion this stream has looked at.
    seen: u64,
    pending: VecDeque<Bytes>,
    deadline: Option<Instant>,
    next_bookmark: Instant,
    finished: bool,
}

impl Cursor {
    /// Queues what the store holds after `seen`, or the 410 when it no longer can.
    fn catch_up(&mut self) {
        let signal = *self.signal.borrow_and_update();
        if signal.closed || signal.disconnects != self.disconnects {
            self.finished = true;
            return;
        }
        let store = self.shared.lock();
        if self.seen < store.compacted {
            let error = ApiError::gone(format!(
                "too old resource version: {} ({})",
                self.seen, store.compacted
            ));
            self.pending.push_back(line("ERROR", &error.to_status()));
            self.finished = true;
            return;
        }
        let first = store
            .history
            .partition_point(|c| c.resource_version <= self.seen);
        for change in store.history.range(first..) {
            if let Some(event_type) = self.request.sees(change) {
                self.pending.push_back(line(event_type, &change.object));
            }
        }
        self.seen = store.resource_version;
    }

    /// Waits for a store change, the next bookmark, the timeout or a disconnect.
    async fn wait(&mut self) {
        let bookmark = self.request.bookmarks.then_some(self.next_bookmark);
        let wake = match (bookmark, self.deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let sleep = async {
            match wake {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = self.signal.changed() => {
                // The sender lives in `shared`, which this cursor holds: it cannot
                // close, but end the stream rather than spin if it ever does.
                if changed.is_err() {
                    self.finished = true;
                }
            }
            () = sleep => {
                let now = Instant::now();
                if self.deadline.is_some_and(|d| now >= d) {
                    self.finished = true;
                } else if self.request.bookmarks && now >= self.next_bookmark {
                    self.pending.push_back(self.request.bookmark(self.seen, false));
                    self.next_bookmark = now + self.shared.bookmark_interval;
                }
            }
        }
    }

    async fn next(mut self) -> Option<(Result<Bytes, Infallible>, Self)> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some((Ok(event), self));
            }
            if self.finished {
                return None;
            }
            self.catch_up();
            if self.pending.is_empty() && !self.finished {
                self.wait().await;
            }
        }
    }
}

/// The streaming response to a watch request.
pub fn serve(shared: Arc<Shared>, request: WatchRequest) -> Response {
    // Subscribe before reading the store, so no change slips in between unnoticed.
    let signal = shared.subscribe();
    let disconnects = signal.borrow().disconnects;
    let mut pending = VecDeque::new();
    let seen = match request.after {
        Some(after) => after,
        None => {
            let store = shared.lock();
            let namespace = request.namespace.as_deref();
            for object in store.select(&request.resource, namespace, &request.selector) {
                pending.push_back(line("ADDED", &object));
            }
            if request.send_initial_events {
                pending.push_back(request.bookmark(store.resource_version, true));
            }
            store.resource_version
        }
    };
    let now = Instant::now();
    let cursor = Cursor {
        deadline: request.timeout.map(|t| now + t),
        next_bookmark: now + shared.bookmark_interval,
        shared,
        request,
        signal,
        disconnects,
        seen,
        pending,
        finished: false,
    };
    let stream = futures_util::stream::unfold(cursor, Cursor::next);
    Response::builder()
        .status(200)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .expect("a valid response")
}
