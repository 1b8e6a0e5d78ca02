//! Deletion: finalizers keep an object in the "terminating" state until they are
//! gone, and removing an object collects its dependents through their
//! `ownerReferences`, the way the garbage collector does, but synchronously,
//! inside the deleting request.

use serde_json::{Value, json};

use crate::errors::{ApiError, ApiResult};
use crate::meta::{self, meta_mut};
use crate::resources::ResourceType;
use crate::selector::Selector;
use crate::store::{ObjectKey, Propagation, Store, default_propagation};

/// The parts of `DeleteOptions` the fake honours.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteOptions {
    /// `None`: the resource's default (orphan for batch/v1 Jobs, background otherwise).
    pub propagation: Option<Propagation>,
    /// `preconditions.uid`
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`
    pub resource_version: Option<String>,
}

impl DeleteOptions {
    /// From the request body (a `DeleteOptions` object, possibly empty) and the
    /// `propagationPolicy` query parameter, which wins when both are given.
    pub fn parse(body: &[u8], query_policy: Option<&str>) -> ApiResult<Self> {
        let body: Value = if body.iter().all(u8::is_ascii_whitespace) {
            Value::Null
        } else {
            serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?
        };
        if body
            .get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|d| !d.is_empty())
        {
            return Err(ApiError::bad_request(
                "dryRun is not supported by the fake API server",
            ));
        }
        let policy = query_policy.or_else(|| body.get("propagationPolicy").and_then(Value::as_str));
        let propagation = match policy {
            Some("Background" | "Foreground") => Some(Propagation::Background),
            Some("Orphan") => Some(Propagation::Orphan),
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "unsupported propagationPolicy {other:?}"
                )));
            }
            None => match body.get("orphanDependents").and_then(Value::as_bool) {
                Some(true) => Some(Propagation::Orphan),
                Some(false) => Some(Propagation::Background),
                None => None,
            },
        };
        let precondition = |field: &str| {
            body.pointer(&format!("/preconditions/{field}"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        Ok(Self {
            propagation,
            uid: precondition("uid"),
            resource_version: precondition("resourceVersion"),
        })
    }
}

impl Store {
    /// DELETE of one object.
    pub fn delete(
        &mut self,
        resource: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        options: &DeleteOptions,
    ) -> ApiResult<Value> {
        let key = ObjectKey::new(resource, namespace, name);
        let object = self.get(resource, namespace, name)?;
        self.delete_key(&key, object, options)
    }

    /// DELETE of a collection: every match is deleted as if one by one; the answer
    /// lists them as they were left (removed, or terminating).
    pub fn delete_collection(
        &mut self,
        resource: &ResourceType,
        namespace: Option<&str>,
        selector: &Selector,
        options: &DeleteOptions,
    ) -> ApiResult<Value> {
        let mut items = Vec::new();
        for object in self.select(resource, namespace, selector) {
            let name = meta::meta_str(&object, "name")
                .unwrap_or_default()
                .to_owned();
            let key = ObjectKey::new(resource, meta::meta_str(&object, "namespace"), &name);
            // An earlier deletion's garbage collection may have taken it already.
            if let Some(current) = self.objects.get(&key).cloned() {
                items.push(self.delete_key(&key, current, options)?);
            }
        }
        Ok(json!({
            "kind": format!("{}List", resource.kind),
            "apiVersion": resource.api_version(),
            "metadata": {"resourceVersion": self.resource_version.to_string()},
            "items": items,
        }))
    }

    fn delete_key(
        &mut self,
        key: &ObjectKey,
        object: Value,
        options: &DeleteOptions,
    ) -> ApiResult<Value> {
        let resource = self.resource_of(key);
        let stale = |field: &str, wanted: &Option<String>| {
            wanted
                .as_deref()
                .is_some_and(|w| meta::meta_str(&object, field) != Some(w))
        };
        if stale("uid", &options.uid) || stale("resourceVersion", &options.resource_version) {
            return Err(ApiError::conflict(&resource, &key.name));
        }
        let propagation = options
            .propagation
            .unwrap_or_else(|| default_propagation(&resource));
        if meta::finalizers(&object).is_empty() {
            return Ok(self.remove(key, object, propagation));
        }
        // The newest request decides how the eventual removal propagates.
        self.pending_deletions.insert(key.clone(), propagation);
        if meta::is_terminating(&object) {
            return Ok(object);
        }
        let mut terminating = object.clone();
        let fields = meta_mut(&mut terminating);
        fields.insert("deletionTimestamp".to_owned(), meta::now());
        fields.insert("deletionGracePeriodSeconds".to_owned(), Value::from(0));
        // The real server bumps generation when it starts a graceful deletion, so
        // controllers comparing observedGeneration see the change.
        meta::bump_generation(&mut terminating);
        Ok(self.store_modified(key, &object, terminating))
    }

    /// The garbage collector's work after the object with `owner_uid` is gone:
    /// a dependent with another owner that still exists only loses the reference to
    /// the removed one; any other dependent is deleted (background, recursively)
    /// or, for `Orphan`, loses the reference.
    pub(super) fn collect_dependents(&mut self, owner_uid: &str, propagation: Propagation) {
        let dependents: Vec<ObjectKey> = self
            .objects
            .iter()
            .filter(|(_, object)| meta::owner_uids(object).iter().any(|u| u == owner_uid))
            .map(|(key, _)| key.clone())
            .collect();
        for key in dependents {
            // Collecting an earlier dependent may have removed this one already.
            let Some(object) = self.objects.get(&key).cloned() else {
                continue;
            };
            let other_owner_alive = meta::owner_uids(&object)
                .iter()
                .any(|uid| uid != owner_uid && self.uid_exists(uid));
            if propagation == Propagation::Orphan || other_owner_alive {
                let mut released = object.clone();
                meta::remove_owner(&mut released, owner_uid);
                self.store_modified(&key, &object, released);
            } else {
                let background = DeleteOptions {
                    propagation: Some(Propagation::Background),
                    ..DeleteOptions::default()
                };
                // Preconditions are unset, so this cannot fail.
                let _ = self.delete_key(&key, object, &background);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_from_body_and_query() {
        let body = br#"{"propagationPolicy":"Foreground","preconditions":{"uid":"u"}}"#;
        let options = DeleteOptions::parse(body, None).unwrap();
        assert_eq!(options.propagation, Some(Propagation::Background));
        assert_eq!(options.uid.as_deref(), Some("u"));
        let options = DeleteOptions::parse(b"", Some("Orphan")).unwrap();
        assert_eq!(options.propagation, Some(Propagation::Orphan));
        assert_eq!(
            DeleteOptions::parse(b"{}", None).unwrap(),
            DeleteOptions::default()
        );
        assert_eq!(
            DeleteOptions::parse(b"", Some("Sideways"))
                .unwrap_err()
                .code,
            400
        );
    }
}
