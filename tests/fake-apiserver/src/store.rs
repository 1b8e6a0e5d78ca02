//! The object store: every object as JSON under (group, plural, namespace, name),
//! one global resourceVersion counter, and the bounded history of changes that
//! watches replay. The verbs live in `verbs.rs` and `delete.rs`; this file holds
//! the primitives they share (insert, update, remove) and the read side.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Instant;

use serde_json::{Value, json};

use crate::errors::{ApiError, ApiResult};
use crate::meta::{self, meta_mut};
use crate::resources::{Registry, ResourceType};
use crate::selector::Selector;

/// Where an object lives. The version is not part of it: each resource is served
/// at one version.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub group: String,
    pub plural: String,
    /// Empty for cluster-scoped objects.
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(resource: &ResourceType, namespace: Option<&str>, name: &str) -> Self {
        Self {
            group: resource.group.clone(),
            plural: resource.plural.clone(),
            namespace: namespace.unwrap_or_default().to_owned(),
            name: name.to_owned(),
        }
    }

    fn is_of(&self, resource: &ResourceType) -> bool {
        self.group == resource.group && self.plural == resource.plural
    }
}

/// What happened to an object, as watch events name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeType {
    Added,
    Modified,
    Deleted,
}

/// One entry of the watch history.
#[derive(Clone, Debug)]
pub struct Change {
    pub resource_version: u64,
    pub key: ObjectKey,
    pub change: ChangeType,
    /// The object after the change (for a deletion: its last state).
    pub object: Value,
    /// The object before, so that a selector watch can tell an object that stopped
    /// matching (sent as DELETED) from one that started to (sent as ADDED).
    pub previous: Option<Value>,
}

/// How a deletion treats the objects that name the deleted one as their owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Propagation {
    /// Dependents are deleted too (Foreground is treated the same way).
    Background,
    /// Dependents stay; their owner references to the deleted object are removed.
    Orphan,
}

/// One write request the server answered, for assertions on how often a
/// controller writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteRecord {
    pub at: Instant,
    /// `create`, `update`, `patch`, `delete` or `deletecollection`.
    pub verb: String,
    pub group: String,
    pub plural: String,
    /// Empty for cluster-scoped objects.
    pub namespace: String,
    /// Empty for collection requests.
    pub name: String,
    pub subresource: Option<String>,
    /// The HTTP status code of the answer.
    pub code: u16,
}

/// All state of one fake API server.
#[derive(Debug)]
pub struct Store {
    pub registry: Registry,
    pub(super) objects: BTreeMap<ObjectKey, Value>,
    /// The newest resourceVersion handed out.
    pub resource_version: u64,
    pub(super) history: VecDeque<Change>,
    history_limit: usize,
    /// Watches from a resourceVersion below this have lost events: they get 410.
    pub compacted: u64,
    /// Deletion requests waiting for finalizers, and how they propagate.
    pub(super) pending_deletions: HashMap<ObjectKey, Propagation>,
    pub(super) writes: Vec<WriteRecord>,
    /// Source of uids and generated names.
    serial: u64,
}

impl Store {
    pub fn new(registry: Registry, history_limit: usize) -> Self {
        Self {
            registry,
            objects: BTreeMap::new(),
            resource_version: 0,
            history: VecDeque::new(),
            history_limit: history_limit.max(1),
            compacted: 0,
            pending_deletions: HashMap::new(),
            writes: Vec::new(),
            serial: 0,
        }
    }

    /// The resource type of a stored key.
    pub(super) fn resource_of(&self, key: &ObjectKey) -> ResourceType {
        self.registry
            .all()
            .iter()
            .find(|t| key.is_of(t))
            .cloned()
            .expect("objects are only stored for registered types")
    }

    pub fn get(
        &self,
        resource: &ResourceType,
        namespace: Option<&str>,
        name: &str,
    ) -> ApiResult<Value> {
        self.objects
            .get(&ObjectKey::new(resource, namespace, name))
            .cloned()
            .ok_or_else(|| ApiError::not_found(resource, name))
    }

    /// The objects of a type, in one namespace or all, that match `selector`,
    /// ordered by namespace and name.
    pub fn select(
        &self,
        resource: &ResourceType,
        namespace: Option<&str>,
        selector: &Selector,
    ) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|(key, object)| {
                key.is_of(resource)
                    && namespace.is_none_or(|ns| key.namespace == ns)
                    && selector.matches(object)
            })
            .map(|(_, object)| object.clone())
            .collect()
    }

    /// A list response: every match in one page, so never a `continue` token.
    pub fn list(
        &self,
        resource: &ResourceType,
        namespace: Option<&str>,
        selector: &Selector,
    ) -> Value {
        json!({
            "kind": format!("{}List", resource.kind),
            "apiVersion": resource.api_version(),
            "metadata": {"resourceVersion": self.resource_version.to_string()},
            "items": self.select(resource, namespace, selector),
        })
    }

    pub(super) fn next_serial(&mut self) -> u64 {
        self.serial += 1;
        self.serial
    }

    /// Hands out the next resourceVersion and writes it into `object`.
    fn stamp(&mut self, object: &mut Value) -> u64 {
        self.resource_version += 1;
        meta_mut(object).insert(
            "resourceVersion".to_owned(),
            Value::from(self.resource_version.to_string()),
        );
        self.resource_version
    }

    fn record(
        &mut self,
        key: ObjectKey,
        change: ChangeType,
        object: Value,
        previous: Option<Value>,
    ) {
        self.history.push_back(Change {
            resource_version: self.resource_version,
            key,
            change,
            object,
            previous,
        });
        while self.history.len() > self.history_limit {
            let evicted = self.history.pop_front().expect("longer than the limit");
            self.compacted = evicted.resource_version;
        }
    }

    /// Forgets the whole history, as etcd compaction does: every watch that resumes
    /// from an earlier resourceVersion gets 410 Gone.
    pub fn compact(&mut self) {
        self.history.clear();
        self.compacted = self.resource_version;
    }

    /// Stores a new object (ADDED).
    pub(super) fn insert(&mut self, key: ObjectKey, mut object: Value) -> Value {
        self.stamp(&mut object);
        self.objects.insert(key.clone(), object.clone());
        self.record(key, ChangeType::Added, object.clone(), None);
        object
    }

    /// Stores a new version of an existing object, with the server's rules: server-owned
    /// metadata kept, no new finalizers once deleting, nothing stored (and no new
    /// resourceVersion, no event) when nothing changed, generation bumped when
    /// something outside metadata and status changed, and the object removed when
    /// it is being deleted and its last finalizer went.
    pub(super) fn update(
        &mut self,
        key: &ObjectKey,
        old: &Value,
        mut candidate: Value,
    ) -> ApiResult<Value> {
        let resource = self.resource_of(key);
        meta::carry_server_fields(old, &mut candidate);
        let map = candidate
            .as_object_mut()
            .expect("meta_mut made it an object");
        map.insert("apiVersion".to_owned(), Value::from(resource.api_version()));
        map.insert("kind".to_owned(), Value::from(resource.kind.clone()));
        meta_mut(&mut candidate).insert("name".to_owned(), Value::from(key.name.clone()));
        meta::normalize(&mut candidate);

        let terminating = meta::is_terminating(old);
        if terminating {
            let before = meta::finalizers(old);
            if meta::finalizers(&candidate)
                .iter()
                .any(|f| !before.contains(f))
            {
                let message = "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted";
                return Err(ApiError::invalid(&resource, &key.name, message));
            }
        }
        if candidate == *old {
            return Ok(candidate);
        }
        if meta::spec_differs(old, &candidate) {
            meta::bump_generation(&mut candidate);
        }
        if terminating && meta::finalizers(&candidate).is_empty() {
            let propagation = self
                .pending_deletions
                .remove(key)
                .unwrap_or_else(|| default_propagation(&resource));
            return Ok(self.remove(key, candidate, propagation));
        }
        Ok(self.store_modified(key, old, candidate))
    }

    /// Stores `new` over `old` as is (MODIFIED), at a new resourceVersion.
    pub(super) fn store_modified(&mut self, key: &ObjectKey, old: &Value, mut new: Value) -> Value {
        self.stamp(&mut new);
        self.objects.insert(key.clone(), new.clone());
        self.record(
            key.clone(),
            ChangeType::Modified,
            new.clone(),
            Some(old.clone()),
        );
        new
    }

    /// Removes an object (DELETED, carrying its last state at a new
    /// resourceVersion) and collects its dependents.
    pub(super) fn remove(
        &mut self,
        key: &ObjectKey,
        mut last: Value,
        propagation: Propagation,
    ) -> Value {
        self.stamp(&mut last);
        let previous = self.objects.remove(key);
        self.pending_deletions.remove(key);
        self.record(key.clone(), ChangeType::Deleted, last.clone(), previous);
        if let Some(uid) = meta::meta_str(&last, "uid") {
            self.collect_dependents(uid, propagation);
        }
        last
    }

    /// Whether some stored object has this uid.
    pub(super) fn uid_exists(&self, uid: &str) -> bool {
        self.objects
            .values()
            .any(|o| meta::meta_str(o, "uid") == Some(uid))
    }

    pub(super) fn log_write(&mut self, record: WriteRecord) {
        self.writes.push(record);
    }

    pub fn writes(&self) -> &[WriteRecord] {
        &self.writes
    }

    /// All stored objects of a type, ordered by namespace and name.
    pub fn objects_of(&self, resource: &ResourceType) -> Vec<Value> {
        self.select(resource, None, &Selector::default())
    }
}

/// What a deletion without `propagationPolicy` does.
pub fn default_propagation(resource: &ResourceType) -> Propagation {
    if resource.orphans_by_default() {
        Propagation::Orphan
    } else {
        Propagation::Background
    }
}
