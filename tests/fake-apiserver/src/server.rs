//! The public handles: `FakeApi`, the API state with its router and direct
//! accessors for assertions, and `FakeApiServer`, which serves a `FakeApi` over
//! HTTP on a loopback port for a real `kube::Client`.

use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use kube::Resource;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::handlers;
use crate::resources::ResourceType;
use crate::shared::{AuditRecord, Options, Shared};
use crate::store::{ObjectKey, WriteRecord};

/// The fake API's state; cheap to clone (all clones share it).
#[derive(Clone, Debug)]
pub struct FakeApi {
    shared: Arc<Shared>,
}

impl Default for FakeApi {
    fn default() -> Self {
        Self::new(Options::default())
    }
}

impl FakeApi {
    pub fn new(options: Options) -> Self {
        Self {
            shared: Arc::new(Shared::new(options)),
        }
    }

    /// The axum router answering API requests against this state; a
    /// `tower::Service` that can also be served elsewhere.
    pub fn router(&self) -> axum::Router {
        handlers::router(self.shared.clone())
    }

    /// A client that calls the router in-process (no socket), default namespace
    /// `default`.
    pub fn service_client(&self) -> kube::Client {
        kube::Client::new(self.router(), "default")
    }

    /// Serves another resource type from now on.
    pub fn register(&self, resource: ResourceType) {
        self.shared.lock().registry.register(resource);
    }

    fn resource(&self, api_version: &str, kind: &str) -> ResourceType {
        self.shared
            .lock()
            .registry
            .by_kind(api_version, kind)
            .cloned()
            .unwrap_or_else(|| panic!("the fake API server does not serve {api_version} {kind}"))
    }

    /// Every stored object of a type, ordered by namespace and name.
    pub fn objects(&self, api_version: &str, kind: &str) -> Vec<Value> {
        let resource = self.resource(api_version, kind);
        self.shared.lock().objects_of(&resource)
    }

    /// One stored object (`namespace` empty for cluster-scoped types).
    pub fn object(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Option<Value> {
        let resource = self.resource(api_version, kind);
        let key = ObjectKey::new(&resource, Some(namespace), name);
        self.shared.lock().objects.get(&key).cloned()
    }

    /// One stored object, typed.
    pub fn get<K>(&self, namespace: &str, name: &str) -> Option<K>
    where
        K: Resource<DynamicType = ()> + DeserializeOwned,
    {
        let object = self.object(&K::api_version(&()), &K::kind(&()), namespace, name)?;
        Some(serde_json::from_value(object).expect("a stored object reads as its type"))
    }

    /// Every stored object of a type, typed.
    pub fn list<K>(&self) -> Vec<K>
    where
        K: Resource<DynamicType = ()> + DeserializeOwned,
    {
        self.objects(&K::api_version(&()), &K::kind(&()))
            .into_iter()
            .map(|o| serde_json::from_value(o).expect("a stored object reads as its type"))
            .collect()
    }

    /// The newest resourceVersion handed out.
    pub fn resource_version(&self) -> u64 {
        self.shared.lock().resource_version
    }

    /// How many requests were answered (or are being answered), discovery included.
    pub fn request_count(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// Every write request (create, update, patch, delete, deletecollection), in order.
    pub fn writes(&self) -> Vec<WriteRecord> {
        self.shared.lock().writes().to_vec()
    }

    /// Every request to a resource so far, in arrival order, with the attributes RBAC
    /// authorizes (discovery requests are not included: every identity may make them).
    pub fn audit(&self) -> Vec<AuditRecord> {
        self.shared
            .audit
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The write requests to one object (any group) and subresource
    /// (`None`: the main resource).
    pub fn writes_to(
        &self,
        plural: &str,
        namespace: &str,
        name: &str,
        subresource: Option<&str>,
    ) -> Vec<WriteRecord> {
        self.shared
            .lock()
            .writes()
            .iter()
            .filter(|w| {
                w.plural == plural
                    && w.namespace == namespace
                    && w.name == name
                    && w.subresource.as_deref() == subresource
            })
            .cloned()
            .collect()
    }

    /// Drops the watch history, as etcd compaction does: watches resuming from any
    /// earlier resourceVersion get 410 Gone.
    pub fn compact(&self) {
        self.shared.write(|store| store.compact());
    }

    /// Answers creates of the review kind `plural` (`tokenreviews`,
    /// `subjectaccessreviews`, registered first) with the `status` `answer` makes of
    /// the review sent; nothing is stored.
    pub fn answer_reviews(
        &self,
        plural: &str,
        answer: impl Fn(&Value) -> Value + Send + Sync + 'static,
    ) {
        self.shared.reviews.set(plural, Arc::new(answer));
    }

    /// Injects `schedule`'s faults from now on (`None`: none).
    pub fn set_faults(&self, schedule: Option<crate::FaultSchedule>) {
        self.shared.faults.set(schedule);
    }

    /// The faults injected so far.
    pub fn fault_counts(&self) -> crate::FaultCounts {
        self.shared.faults.counts()
    }

    /// Ends every open watch stream, as an API server restart would; clients
    /// reconnect from their last resourceVersion.
    pub fn disconnect_watches(&self) {
        self.shared.disconnect_watches();
    }
}

/// A `FakeApi` served on `127.0.0.1` on a free port. Dropping it stops serving
/// and ends its watch streams.
#[derive(Debug)]
pub struct FakeApiServer {
    api: FakeApi,
    address: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl FakeApiServer {
    /// Serves a fresh `FakeApi` with the default options.
    pub async fn start() -> Self {
        Self::serve(FakeApi::default()).await
    }

    /// Serves a fresh `FakeApi` with these options.
    pub async fn start_with(options: Options) -> Self {
        Self::serve(FakeApi::new(options)).await
    }

    /// Serves `api`.
    pub async fn serve(api: FakeApi) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let address = listener.local_addr().expect("a bound address");
        let (stop, stopped) = oneshot::channel::<()>();
        let router = api.router();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(error) = axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::warn!(%error, "fake API server stopped");
            }
        });
        Self {
            api,
            address,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// A kube client for this server over HTTP, without credentials, default
    /// namespace `default`.
    pub fn client(&self) -> kube::Client {
        let url = self.url().parse().expect("a valid URL");
        kube::Client::try_from(kube::Config::new(url)).expect("a client for a plain HTTP URL")
    }

    /// A client like `client` that authenticates as `user` (a bearer token the
    /// server records in `audit` and never checks).
    pub fn client_as(&self, user: &str) -> kube::Client {
        let url = self.url().parse().expect("a valid URL");
        let mut config = kube::Config::new(url);
        config.headers.push((
            http::header::AUTHORIZATION,
            format!("Bearer {user}")
                .parse()
                .expect("a user name that is a valid header value"),
        ));
        kube::Client::try_from(config).expect("a client for a plain HTTP URL")
    }

    /// The served state.
    pub fn api(&self) -> &FakeApi {
        &self.api
    }

    /// Stops serving: watch streams end, open requests finish, then the server task.
    pub async fn shutdown(mut self) {
        self.api.shared.close();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Deref for FakeApiServer {
    type Target = FakeApi;

    fn deref(&self) -> &FakeApi {
        &self.api
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.api.shared.close();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
