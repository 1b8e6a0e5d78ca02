//! Reading and writing `metadata` on stored JSON objects: the fields the server
//! owns, finalizers, owner references, and the comparisons that decide whether a
//! write changed anything and whether it bumps `metadata.generation`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Map, Value};

/// Fields of `metadata` that clients cannot set through an update or patch.
const SERVER_OWNED: [&str; 7] = [
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "resourceVersion",
    "namespace",
];

/// `metadata` of `object`, created when missing.
pub fn meta_mut(object: &mut Value) -> &mut Map<String, Value> {
    if !object.is_object() {
        *object = Value::Object(Map::new());
    }
    let map = object.as_object_mut().expect("made an object above");
    let meta = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    meta.as_object_mut().expect("made an object above")
}

/// A string field of `metadata`.
pub fn meta_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    object.get("metadata")?.get(field)?.as_str()
}

/// The current time as Kubernetes writes timestamps (RFC 3339, whole seconds).
pub fn now() -> Value {
    serde_json::to_value(Time(Timestamp::now())).expect("a timestamp serializes")
}

pub fn finalizers(object: &Value) -> Vec<String> {
    object
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|f| f.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The uids in `metadata.ownerReferences`.
pub fn owner_uids(object: &Value) -> Vec<String> {
    object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|refs| {
            refs.iter()
                .filter_map(|r| r.get("uid").and_then(Value::as_str).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Drops the owner references to `uid`.
pub fn remove_owner(object: &mut Value, uid: &str) {
    if let Some(Value::Array(refs)) = meta_mut(object).get_mut("ownerReferences") {
        refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(uid));
    }
    normalize(object);
}

/// Whether the object is being deleted (waiting for its finalizers).
pub fn is_terminating(object: &Value) -> bool {
    object
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
}

/// Copies the server-owned metadata of `from` onto `to`, so that updates and
/// patches cannot change them.
pub fn carry_server_fields(from: &Value, to: &mut Value) {
    let source = from
        .get("metadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let target = meta_mut(to);
    for field in SERVER_OWNED {
        match source.get(field) {
            Some(value) => target.insert(field.to_owned(), value.clone()),
            None => target.remove(field),
        };
    }
}

/// Drops what the real server never returns: null metadata fields and empty
/// finalizer, label, annotation and owner-reference collections (Go's `omitempty`),
/// so that "no finalizers" always reads as a missing field.
pub fn normalize(object: &mut Value) {
    let meta = meta_mut(object);
    meta.retain(|field, value| match (field.as_str(), value) {
        (_, Value::Null) => false,
        ("finalizers" | "ownerReferences" | "managedFields", Value::Array(a)) => !a.is_empty(),
        ("labels" | "annotations", Value::Object(m)) => !m.is_empty(),
        _ => true,
    });
}

/// Whether two versions of an object differ outside `metadata` and `status`, the
/// rule for bumping `metadata.generation`.
pub fn spec_differs(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| {
        let mut map = v.as_object().cloned().unwrap_or_default();
        map.remove("metadata");
        map.remove("status");
        map
    };
    strip(old) != strip(new)
}

/// Increments `metadata.generation` (starting from 0 when missing).
pub fn bump_generation(object: &mut Value) {
    let meta = meta_mut(object);
    let generation = meta.get("generation").and_then(Value::as_i64).unwrap_or(0);
    meta.insert("generation".to_owned(), Value::from(generation + 1));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn carry_and_normalize() {
        let old =
            json!({"metadata": {"uid": "u", "resourceVersion": "3", "generation": 2, "name": "a"}});
        let mut new = json!({"metadata": {"uid": "x", "generation": 9, "finalizers": [], "labels": {}, "name": "a"}});
        carry_server_fields(&old, &mut new);
        normalize(&mut new);
        assert_eq!(
            new,
            json!({"metadata": {"uid": "u", "resourceVersion": "3", "generation": 2, "name": "a"}})
        );
    }

    #[test]
    fn generation_rule_ignores_metadata_and_status() {
        let a = json!({"metadata": {"labels": {"x": "1"}}, "spec": {"n": 1}, "status": {"p": 1}});
        let b = json!({"metadata": {"labels": {"x": "2"}}, "spec": {"n": 1}, "status": {"p": 2}});
        let c = json!({"metadata": {}, "spec": {"n": 2}});
        assert!(!spec_differs(&a, &b));
        assert!(spec_differs(&a, &c));
        assert!(now().as_str().unwrap().ends_with('Z'));
    }
}
