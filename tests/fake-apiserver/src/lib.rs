//! A fake Kubernetes API server for controller tests: kube's `Client` talks to it
//! over real HTTP on loopback (`FakeApiServer`), or in-process through its axum
//! `Router` as a `tower::Service` (`FakeApi::service_client`).
//!
//! ```no_run
//! # async fn example() {
//! use anneal_fake_apiserver::FakeApiServer;
//! use k8s_openapi::api::core::v1::ConfigMap;
//! let server = FakeApiServer::start().await;
//! let configmaps: kube::Api<ConfigMap> = kube::Api::default_namespaced(server.client());
//! // ... run the code under test, then assert on the store directly:
//! let stored: Vec<ConfigMap> = server.list();
//! # }
//! ```
//!
//! # What it emulates
//!
//! - Objects stored as JSON per (group, plural, namespace, name) for the types in
//!   `resources::Registry::default()` (core pods, secrets, configmaps, services,
//!   events, namespaces; events.k8s.io events; batch jobs; apps deployments;
//!   coordination leases; anneal.dev finetunejobs, modeldeployments and
//!   modelevaluations), more via
//!   `FakeApi::register`. Other paths: 404 Status.
//! - URLs `/api/v1/namespaces/{ns}/{plural}[/{name}[/status]]`, `/api/v1/{plural}`
//!   (all namespaces, or cluster-scoped types) and the `/apis/{group}/{version}/...`
//!   equivalents; discovery (`/version`, `/api`, `/apis`, `/api/v1`,
//!   `/apis/{group}/{version}`).
//! - get; list (`{Kind}List` with the current resourceVersion); watch (see
//!   `watch.rs`: resume from a resourceVersion out of the last `history_limit`
//!   changes, 410 Expired beyond that, bookmarks, `timeoutSeconds`,
//!   `sendInitialEvents`).
//! - create (uid, resourceVersion from one global counter, creationTimestamp,
//!   generation 1, generateName, 409 AlreadyExists); replace (409 Conflict on a stale
//!   `metadata.resourceVersion`; one is not required); patch: merge
//!   (RFC 7386), JSON (RFC 6902: add, remove, replace, test, move, copy; 422
//!   when it does not apply), apply and strategic merge (both see below);
//!   a `metadata.resourceVersion` in a patch is a precondition too.
//! - The `status` subresource: writes to `/status` change only `.status`; writes to
//!   the main resource of a type with that subresource keep the old `.status`
//!   (and a created object's `.status` is dropped).
//! - `metadata.generation` goes up when anything outside `metadata` and `status`
//!   changes, and when a graceful deletion starts. The resourceVersion changes on
//!   every change; a write that changes nothing keeps it and sends no watch event.
//!   Server-owned metadata (uid, creationTimestamp, deletionTimestamp, generation,
//!   resourceVersion, namespace, name) cannot be changed by writes; a patch that
//!   names another uid is refused with 409 (a real server refuses it too).
//! - Finalizers: deleting an object that has some sets `deletionTimestamp` (a
//!   MODIFIED event); new finalizers cannot be added then (422); the write that
//!   removes the last one removes the object (DELETED).
//! - Garbage collection through `ownerReferences`, synchronously inside the
//!   deleting request: `Background` (the default) and `Foreground` (treated like
//!   `Background`) delete dependents recursively; `Orphan` keeps them and removes
//!   their owner references to the deleted object (as the real collector does); a
//!   dependent with another owner that still exists only loses that reference.
//!   Deleting a batch/v1 Job without `propagationPolicy` orphans its Pods, as the
//!   real API server's legacy default for Jobs does. `preconditions` (uid,
//!   resourceVersion) are checked. Delete collection works. An object created
//!   when every owner it names is already gone is collected right away (the real
//!   collector deletes it shortly after).
//! - `labelSelector` (`=`, `==`, `!=`, `in`, `notin`, exists, `!`) and
//!   `fieldSelector` (`=`, `==`, `!=` on any dotted path) on list, watch and delete
//!   collection.
//! - Failures as `v1 Status` objects with reason and code (400 BadRequest, 404
//!   NotFound, 405, 409 AlreadyExists/Conflict, 410 Expired, 415, 422 Invalid).
//! - For tests: direct typed and JSON accessors, a request counter, a log of every
//!   write request with its time and outcome (`writes_to`), an audit log of every
//!   resource request with its RBAC attributes and the client's bearer token as the
//!   user (`audit`, `client_as`), `compact` (etcd compaction),
//!   `disconnect_watches` (an API server restart), and `answer_reviews`: a review
//!   kind (TokenReview, SubjectAccessReview) answered with the status the test
//!   computes from the review sent, nothing stored.
//! - A seeded fault schedule (`set_faults`, see `faults.rs`): 500s, 409s on writes,
//!   latency, 410s at watch start and watch streams cut off, on a share of the
//!   requests of one user or of all.
//!
//! # What it does not emulate
//!
//! - Authentication and authorization (RBAC): tokens are recorded, never checked
//!   (tests compare the audit log with RBAC rules themselves); admission (mutating and validating
//!   webhooks, NamespaceLifecycle: namespaces need not exist), quota and limits.
//! - Schemas: no validation, defaulting or pruning of unknown fields, no CEL rules
//!   (`x-kubernetes-validations`), no CRD registration via the API; objects are
//!   stored as sent. Built-in types get none of their server-side defaults (a Pod
//!   has no `status.phase` until someone writes one) and no controllers run (no
//!   Job or Deployment creates Pods, no ReplicaSets: that is the fake kubelet's job).
//! - Server-side apply is a recursive merge of the applied fields (like a merge
//!   patch) that creates the object when missing; `fieldManager` is required and
//!   `force` accepted, but there is no field ownership: no `managedFields`, no
//!   conflicts, and fields a manager stops applying are not removed. Apply bodies
//!   must be JSON (kube sends JSON), not YAML.
//! - Strategic merge patch is a plain merge patch: lists are replaced whole, no
//!   `patchMergeKey` merging (containers by name, conditions by type), no `$patch`
//!   or `$retainKeys` directives.
//! - Lists are never paginated: `limit` is ignored and every list is one page with
//!   no `continue` token (a request carrying one is a 400).
//!   `resourceVersion`/`resourceVersionMatch` on get and list are ignored: reads
//!   always see the newest state.
//! - Watch: the old `/watch/` path prefix; `resourceVersionMatch` on watches; a
//!   watch from a future resourceVersion just waits.
//! - Deletion: no grace periods (Pods go away at once), Foreground deletion does not
//!   wait for dependents nor add the `foregroundDeletion` finalizer, and Orphan does
//!   not add the `orphan` finalizer.
//! - `dryRun` (rejected with 400), `PUT` creating a missing object, subresources
//!   other than `status` (scale, log, exec, eviction, binding), field-selector
//!   restrictions per kind, aggregated discovery, protobuf, table output, API
//!   outages (beyond the per-request failures of the fault schedule).

mod delete;
mod discovery;
mod errors;
mod faults;
mod handlers;
mod meta;
mod patch;
mod path;
mod query;
mod resources;
mod selector;
mod server;
mod shared;
mod store;
mod verbs;
mod watch;

pub use errors::ApiError;
pub use faults::{FaultCounts, FaultSchedule};
pub use resources::{Registry, ResourceType};
pub use server::{FakeApi, FakeApiServer};
pub use shared::{AuditRecord, Options};
pub use store::WriteRecord;
