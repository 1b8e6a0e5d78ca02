//! The state every request handler and watch stream shares: the store behind a
//! mutex, and a signal that wakes watch streams when the store changed, when
//! the test drops all watch connections, or when the server shuts down.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

use crate::faults::Faults;
use crate::resources::Registry;
use crate::store::Store;

/// One request to a resource, as an authorizer sees it (RBAC's attributes).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AuditRecord {
    /// Who asked: the bearer token the client sent (`FakeApiServer::client_as`), or
    /// empty for an anonymous client.
    pub user: String,
    /// RBAC's verb: `get`, `list`, `watch`, `create`, `update`, `patch`, `delete` or
    /// `deletecollection`. A server-side apply that creates its object is recorded
    /// twice, as `patch` and then `create`: the real API server authorizes both.
    pub verb: String,
    /// API group (empty for the core group).
    pub group: String,
    /// Resource (plural).
    pub resource: String,
    pub subresource: Option<String>,
    /// Empty for cluster-scoped objects and requests across all namespaces.
    pub namespace: String,
    /// Empty for collection requests.
    pub name: String,
}

/// Tunables of a fake API server.
#[derive(Clone, Debug)]
pub struct Options {
    /// Changes kept for watches to resume from; older resourceVersions get 410 Gone.
    pub history_limit: usize,
    /// How often a watch with `allowWatchBookmarks=true` gets a BOOKMARK when idle
    /// (the real server: about a minute).
    pub bookmark_interval: Duration,
    /// The served resource types.
    pub registry: Registry,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            history_limit: 10_000,
            bookmark_interval: Duration::from_secs(1),
            registry: Registry::default(),
        }
    }
}

/// What watch streams wait on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Signal {
    /// The store's newest resourceVersion.
    pub resource_version: u64,
    /// Bumped to end every open watch stream.
    pub disconnects: u64,
    /// The server is shutting down: streams end and new ones end at once.
    pub closed: bool,
}

/// Shared by handlers and streams behind an `Arc`.
#[derive(Debug)]
pub struct Shared {
    store: Mutex<Store>,
    signal: watch::Sender<Signal>,
    pub requests: AtomicU64,
    pub bookmark_interval: Duration,
    /// Every request to a resource, in arrival order.
    pub audit: Mutex<Vec<AuditRecord>>,
    /// The fault schedule in force, if any.
    pub faults: Faults,
    /// Review kinds (`tokenreviews`, `subjectaccessreviews`) the test answers: a
    /// create of one returns the request with the `status` this makes, and stores
    /// nothing, as the real server's reviews do.
    pub reviews: Reviews,
}

/// The `status` of a review, from the review as it was sent.
pub type ReviewAnswer =
    std::sync::Arc<dyn Fn(&serde_json::Value) -> serde_json::Value + Send + Sync>;

/// The answered review kinds, by plural.
#[derive(Default)]
pub struct Reviews(Mutex<std::collections::BTreeMap<String, ReviewAnswer>>);

impl Reviews {
    pub fn set(&self, plural: &str, answer: ReviewAnswer) {
        let mut reviews = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        reviews.insert(plural.to_owned(), answer);
    }

    pub fn get(&self, plural: &str) -> Option<ReviewAnswer> {
        let reviews = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        reviews.get(plural).cloned()
    }
}

impl std::fmt::Debug for Reviews {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let reviews = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f.debug_list().entries(reviews.keys()).finish()
    }
}

impl Shared {
    pub fn new(options: Options) -> Self {
        Self {
            store: Mutex::new(Store::new(options.registry, options.history_limit)),
            signal: watch::Sender::new(Signal::default()),
            requests: AtomicU64::new(0),
            bookmark_interval: options.bookmark_interval,
            audit: Mutex::new(Vec::new()),
            faults: Faults::default(),
            reviews: Reviews::default(),
        }
    }

    /// The store, for reading. A panicking test thread must not wedge the server
    /// for the others, hence the poison is ignored.
    pub fn lock(&self) -> MutexGuard<'_, Store> {
        self.store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs a write on the store, then wakes the watch streams if anything changed.
    pub fn write<R>(&self, f: impl FnOnce(&mut Store) -> R) -> R {
        let (result, resource_version) = {
            let mut store = self.lock();
            let result = f(&mut store);
            (result, store.resource_version)
        };
        self.signal.send_if_modified(|signal| {
            let changed = signal.resource_version != resource_version;
            signal.resource_version = resource_version;
            changed
        });
        result
    }

    /// A receiver for a new watch stream; it has seen the current value.
    pub fn subscribe(&self) -> watch::Receiver<Signal> {
        self.signal.subscribe()
    }

    /// Ends every open watch stream (clients reconnect, as after an API server restart).
    pub fn disconnect_watches(&self) {
        self.signal.send_modify(|signal| signal.disconnects += 1);
    }

    /// Ends every watch stream for good.
    pub fn close(&self) {
        self.signal.send_modify(|signal| signal.closed = true);
    }

    pub fn count_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub fn audit(&self, record: AuditRecord) {
        self.audit
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(record);
    }
}
