//! The patch formats: JSON merge patch (RFC 7386), which also stands in for
//! server-side apply; strategic merge patch as a merge patch whose `conditions`
//! lists merge by `type`; and JSON patch (RFC 6902).

use serde_json::{Map, Value};

/// How a PATCH body is to be applied, from its `Content-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchKind {
    Merge,
    Json,
    /// A merge patch in which `conditions` lists merge by `type` (their
    /// `patchMergeKey` in every built-in kind); no other list merging, no `$patch`
    /// directives.
    StrategicMerge,
    /// Server-side apply, merged like a merge patch (see the module documentation).
    Apply,
}

impl PatchKind {
    /// The kind named by a `Content-Type` header (parameters such as `charset` ignored).
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        match content_type.split(';').next().unwrap_or("").trim() {
            "application/merge-patch+json" => Some(Self::Merge),
            "application/json-patch+json" => Some(Self::Json),
            "application/strategic-merge-patch+json" => Some(Self::StrategicMerge),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Some(Self::Apply),
            _ => None,
        }
    }
}

/// RFC 7386: objects merge key by key, `null` removes a key, anything else
/// (arrays included) replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    merge(target, patch, false);
}

/// A strategic merge patch as far as the fake goes: a merge patch, except that a
/// `conditions` list of objects merges entry by entry on `type`, as the real server
/// merges a pod's or a Deployment's conditions (so the kubelet's `Ready` and a
/// controller's readiness gate condition do not overwrite each other).
pub fn strategic_merge_patch(target: &mut Value, patch: &Value) {
    merge(target, patch, true);
}

/// A merge patch; with `conditions_by_type`, `conditions` lists merge on `type`.
fn merge(target: &mut Value, patch: &Value, conditions_by_type: bool) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let target = target.as_object_mut().expect("made an object above");
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
            continue;
        }
        let slot = target.entry(key.clone()).or_insert(Value::Null);
        match (key.as_str(), value, &mut *slot) {
            ("conditions", Value::Array(entries), Value::Array(existing)) if conditions_by_type => {
                for entry in entries {
                    let kind = entry.get("type");
                    match existing
                        .iter_mut()
                        .find(|e| kind.is_some() && e.get("type") == kind)
                    {
                        Some(found) => merge(found, entry, true),
                        None => existing.push(entry.clone()),
                    }
                }
            }
            _ => merge(slot, value, conditions_by_type),
        }
    }
}

/// RFC 6902 on `document`; all operations or none. The error is the message of a 422.
pub fn json_patch(document: &Value, operations: &Value) -> Result<Value, String> {
    let operations = operations
        .as_array()
        .ok_or("a JSON patch must be an array of operations")?;
    let mut doc = document.clone();
    for (i, op) in operations.iter().enumerate() {
        apply_operation(&mut doc, op)
            .map_err(|e| format!("JSON patch operation {i} ({op}): {e}"))?;
    }
    Ok(doc)
}

fn apply_operation(doc: &mut Value, op: &Value) -> Result<(), String> {
    let name = op
        .get("op")
        .and_then(Value::as_str)
        .ok_or("missing \"op\"")?;
    let path = pointer(op, "path")?;
    let value = || {
        op.get("value")
            .cloned()
            .ok_or_else(|| "missing \"value\"".to_owned())
    };
    match name {
        "add" => add(doc, &path, value()?),
        "remove" => remove(doc, &path).map(drop),
        "replace" => {
            remove(doc, &path)?;
            add(doc, &path, value()?)
        }
        "test" => {
            // Like the JSON-patch library Kubernetes uses, a missing member tests
            // equal to null: kube-runtime's finalizer helper relies on this when it
            // adds the first finalizer.
            let actual = get(doc, &path).cloned().unwrap_or(Value::Null);
            if actual == value()? {
                Ok(())
            } else {
                Err(format!("test failed: the value is {actual}"))
            }
        }
        "move" => {
            let from = pointer(op, "from")?;
            let moved = remove(doc, &from)?;
            add(doc, &path, moved)
        }
        "copy" => {
            let from = pointer(op, "from")?;
            let copied = get(doc, &from).cloned().ok_or("\"from\" does not exist")?;
            add(doc, &path, copied)
        }
        other => Err(format!("unknown op {other:?}")),
    }
}

/// A JSON pointer's reference tokens, unescaped (`~1` is `/`, `~0` is `~`).
fn pointer(op: &Value, field: &str) -> Result<Vec<String>, String> {
    let text = op
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("missing {field:?}"))?;
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let rest = text
        .strip_prefix('/')
        .ok_or_else(|| format!("{field} {text:?} does not start with '/'"))?;
    Ok(rest
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn get<'a>(doc: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(doc, |current, token| match current {
        Value::Object(map) => map.get(token),
        Value::Array(items) => token.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

/// The container holding the last token of `path`.
fn parent<'a>(doc: &'a mut Value, path: &[String]) -> Result<&'a mut Value, String> {
    let mut current = doc;
    for token in &path[..path.len() - 1] {
        current = match current {
            Value::Object(map) => map.get_mut(token),
            Value::Array(items) => token.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
            _ => None,
        }
        .ok_or_else(|| format!("path /{} does not exist", path.join("/")))?;
    }
    Ok(current)
}

fn add(doc: &mut Value, path: &[String], value: Value) -> Result<(), String> {
    let Some(last) = path.last() else {
        *doc = value;
        return Ok(());
    };
    match parent(doc, path)? {
        Value::Object(map) => {
            map.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(items) => {
            let index = if last == "-" {
                items.len()
            } else {
                last.parse::<usize>()
                    .ok()
                    .filter(|i| *i <= items.len())
                    .ok_or_else(|| format!("array index {last:?} out of range"))?
            };
            items.insert(index, value);
            Ok(())
        }
        _ => Err(format!("path /{} is inside a scalar", path.join("/"))),
    }
}

fn remove(doc: &mut Value, path: &[String]) -> Result<Value, String> {
    let last = path.last().ok_or("cannot remove the whole document")?;
    let missing = || format!("path /{} does not exist", path.join("/"));
    match parent(doc, path)? {
        Value::Object(map) => map.remove(last).ok_or_else(missing),
        Value::Array(items) => {
            let index = last
                .parse::<usize>()
                .ok()
                .filter(|i| *i < items.len())
                .ok_or_else(missing)?;
            Ok(items.remove(index))
        }
        _ => Err(missing()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut doc = json!({"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]});
        merge_patch(
            &mut doc,
            &json!({"a": "z", "c": {"f": null}, "l": [3], "n": {"x": 1}}),
        );
        assert_eq!(
            doc,
            json!({"a": "z", "c": {"d": "e"}, "l": [3], "n": {"x": 1}})
        );
    }

    #[test]
    fn a_strategic_merge_merges_conditions_by_type() {
        let mut doc = json!({"status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": "False"},
            {"type": "anneal.dev/gate", "status": "True"}], "l": [1]}});
        strategic_merge_patch(
            &mut doc,
            &json!({"status": {"conditions": [
                {"type": "Ready", "status": "True"},
                {"type": "ContainersReady", "status": "True"}], "l": [2]}}),
        );
        assert_eq!(
            doc,
            json!({"status": {"phase": "Running", "conditions": [
                {"type": "Ready", "status": "True"},
                {"type": "anneal.dev/gate", "status": "True"},
                {"type": "ContainersReady", "status": "True"}], "l": [2]}})
        );
    }

    #[test]
    fn json_patch_operations() {
        let doc = json!({"metadata": {"finalizers": ["a"]}, "spec": {"n": 1}});
        let ops = json!([
            {"op": "test", "path": "/metadata/finalizers/0", "value": "a"},
            {"op": "add", "path": "/metadata/finalizers/-", "value": "b"},
            {"op": "replace", "path": "/spec/n", "value": 2},
            {"op": "copy", "from": "/spec/n", "path": "/spec/m"},
            {"op": "move", "from": "/spec/m", "path": "/spec/k~1x"},
            {"op": "remove", "path": "/metadata/finalizers/0"},
            {"op": "test", "path": "/metadata/labels", "value": null},
        ]);
        let out = json_patch(&doc, &ops).unwrap();
        assert_eq!(
            out,
            json!({"metadata": {"finalizers": ["b"]}, "spec": {"n": 2, "k/x": 2}})
        );
    }

    #[test]
    fn json_patch_failures() {
        let doc = json!({"spec": {"n": 1}});
        assert!(
            json_patch(
                &doc,
                &json!([{"op": "test", "path": "/spec/n", "value": 2}])
            )
            .is_err()
        );
        assert!(json_patch(&doc, &json!([{"op": "remove", "path": "/spec/x"}])).is_err());
        assert!(
            json_patch(
                &doc,
                &json!([{"op": "replace", "path": "/a/b", "value": 1}])
            )
            .is_err()
        );
        assert!(json_patch(&doc, &json!({"op": "add"})).is_err());
    }
}
