//! The writing verbs but delete: create (POST), replace (PUT) and patch (PATCH),
//! on the main resource or its `status` subresource.

use serde_json::Value;

use crate::errors::{ApiError, ApiResult};
use crate::meta::{self, meta_mut};
use crate::patch::{PatchKind, json_patch, merge_patch, strategic_merge_patch};
use crate::resources::ResourceType;
use crate::store::{ObjectKey, Propagation, Store};

/// Characters of generated name suffixes (the real server's: no vowels, no
/// look-alikes, so no words or ambiguous names).
const NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Query parameters of a PATCH.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PatchOptions {
    pub field_manager: Option<String>,
    /// Accepted; there are no field-ownership conflicts to force through.
    pub force: bool,
}

/// Which part of an object a write may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The main resource: everything but `status` when the type has a status subresource.
    Main,
    /// The `status` subresource: only `status`.
    Status,
}

/// A request body as a JSON object.
pub fn parse_object(body: &[u8]) -> ApiResult<Value> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))?;
    if value.is_object() {
        Ok(value)
    } else {
        Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ))
    }
}

/// Rejects a body that names another type, namespace or object than the URL.
fn check_identity(
    resource: &ResourceType,
    namespace: Option<&str>,
    name: Option<&str>,
    body: &Value,
) -> ApiResult<()> {
    let field = |f: &str| body.get(f).and_then(Value::as_str);
    if field("apiVersion").is_some_and(|v| v != resource.api_version())
        || field("kind").is_some_and(|k| k != resource.kind)
    {
        return Err(ApiError::bad_request(format!(
            "the body is a {}/{}, not a {} {}",
            field("apiVersion").unwrap_or(""),
            field("kind").unwrap_or(""),
            resource.api_version(),
            resource.kind
        )));
    }
    if let (Some(ns), Some(body_ns)) = (namespace, meta::meta_str(body, "namespace"))
        && ns != body_ns
    {
        return Err(ApiError::bad_request(format!(
            "the namespace of the provided object ({body_ns}) does not match the namespace sent on the request ({ns})"
        )));
    }
    if let (Some(name), Some(body_name)) = (name, meta::meta_str(body, "name"))
        && name != body_name
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    Ok(())
}

impl Store {
    /// POST: a new object with uid, resourceVersion, creationTimestamp and
    /// generation 1; a given `status` is dropped for types with a status subresource.
    pub fn create(
        &mut self,
        resource: &ResourceType,
        namespace: Option<&str>,
        mut body: Value,
    ) -> ApiResult<Value> {
        check_identity(resource, namespace, None, &body)?;
        let name = match (
            meta::meta_str(&body, "name"),
            meta::meta_str(&body, "generateName"),
        ) {
            (Some(name), _) if !name.is_empty() => name.to_owned(),
            (_, Some(prefix)) if !prefix.is_empty() => {
                self.generate_name(resource, namespace, prefix)
            }
            _ => {
                let message = "metadata.name: Required value: name or generateName is required";
                return Err(ApiError::invalid(resource, "", message));
            }
        };
        let key = ObjectKey::new(resource, namespace, &name);
        if self.objects.contains_key(&key) {
            return Err(ApiError::already_exists(resource, &name));
        }
        let serial = self.next_serial();
        let map = body
            .as_object_mut()
            .expect("parse_object made it an object");
        map.insert("apiVersion".to_owned(), Value::from(resource.api_version()));
        map.insert("kind".to_owned(), Value::from(resource.kind.clone()));
        if resource.status_subresource {
            map.remove("status");
        }
        let fields = meta_mut(&mut body);
        fields.insert("name".to_owned(), Value::from(name));
        match namespace {
            Some(ns) => fields.insert("namespace".to_owned(), Value::from(ns)),
            None => fields.remove("namespace"),
        };
        fields.insert(
            "uid".to_owned(),
            Value::from(format!("00000000-0000-4000-8000-{serial:012x}")),
        );
        fields.insert("creationTimestamp".to_owned(), meta::now());
        fields.insert("generation".to_owned(), Value::from(1));
        for server_only in [
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "resourceVersion",
        ] {
            fields.remove(server_only);
        }
        meta::normalize(&mut body);
        let owners = meta::owner_uids(&body);
        let created = self.insert(key.clone(), body);
        // A dependent created after all its owners are gone (a controller acting on a
        // stale cache) is the garbage collector's at once: the real one deletes it
        // shortly after; here, as with deletions, synchronously.
        if !owners.is_empty() && !owners.iter().any(|uid| self.uid_exists(uid)) {
            self.remove(&key, created.clone(), Propagation::Background);
        }
        Ok(created)
    }

    /// `prefix` and five characters, unused in the namespace.
    fn generate_name(
        &mut self,
        resource: &ResourceType,
        namespace: Option<&str>,
        prefix: &str,
    ) -> String {
        loop {
            // splitmix64 of a counter: names look random, yet runs are reproducible.
            let mut x = self.next_serial().wrapping_mul(0x9E37_79B9_7F4A_7C15);
            x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            x ^= x >> 31;
            let suffix: String = (0..5)
                .map(|i| {
                    NAME_ALPHABET[((x >> (i * 8)) % NAME_ALPHABET.len() as u64) as usize] as char
                })
                .collect();
            let name = format!("{prefix}{suffix}");
            if !self
                .objects
                .contains_key(&ObjectKey::new(resource, namespace, &name))
            {
                return name;
            }
        }
    }

    /// PUT: the body replaces the object (or, for `Part::Status`, its status).
    pub fn replace(
        &mut self,
        resource: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        part: Part,
        body: Value,
    ) -> ApiResult<Value> {
        check_identity(resource, namespace, Some(name), &body)?;
        let old = self.get(resource, namespace, name)?;
        self.write_part(
            resource,
            &ObjectKey::new(resource, namespace, name),
            &old,
            body,
            part,
        )
    }

    /// PATCH; a server-side apply of a missing object creates it. Returns the
    /// object and whether it was created.
    #[allow(clippy::too_many_arguments)] // one per part of the request
    pub fn patch(
        &mut self,
        resource: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        part: Part,
        kind: PatchKind,
        body: &[u8],
        options: &PatchOptions,
    ) -> ApiResult<(Value, bool)> {
        let patch: Value = serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!(
                "the patch is not valid JSON (YAML apply bodies are not supported): {e}"
            ))
        })?;
        if kind == PatchKind::Apply {
            if options.field_manager.as_deref().is_none_or(str::is_empty) {
                return Err(ApiError::bad_request(
                    "fieldManager is required for apply patch",
                ));
            }
            if !patch.is_object()
                || patch.get("apiVersion").is_none()
                || patch.get("kind").is_none()
            {
                return Err(ApiError::bad_request(
                    "an apply patch must be an object with apiVersion and kind",
                ));
            }
            check_identity(resource, namespace, Some(name), &patch)?;
        }
        let key = ObjectKey::new(resource, namespace, name);
        let Some(old) = self.objects.get(&key).cloned() else {
            if kind == PatchKind::Apply && part == Part::Main {
                let mut body = patch;
                meta_mut(&mut body).insert("name".to_owned(), Value::from(name));
                return Ok((self.create(resource, namespace, body)?, true));
            }
            return Err(ApiError::not_found(resource, name));
        };
        let patched = match kind {
            PatchKind::Json => {
                json_patch(&old, &patch).map_err(|e| ApiError::invalid(resource, name, e))?
            }
            PatchKind::Merge | PatchKind::Apply => {
                let mut doc = old.clone();
                merge_patch(&mut doc, &patch);
                doc
            }
            PatchKind::StrategicMerge => {
                let mut doc = old.clone();
                strategic_merge_patch(&mut doc, &patch);
                doc
            }
        };
        if !patched.is_object() {
            return Err(ApiError::invalid(
                resource,
                name,
                "the patch does not leave an object",
            ));
        }
        check_identity(resource, namespace, Some(name), &patched)?;
        // metadata.uid is immutable: a patch naming another uid (written for an object
        // since deleted and re-created under the same name) is refused, as by a real
        // API server.
        if meta::meta_str(&patched, "uid") != meta::meta_str(&old, "uid") {
            return Err(ApiError::conflict(resource, name));
        }
        Ok((self.write_part(resource, &key, &old, patched, part)?, false))
    }

    /// Checks the resourceVersion precondition, keeps what `part` may not change,
    /// and stores.
    fn write_part(
        &mut self,
        resource: &ResourceType,
        key: &ObjectKey,
        old: &Value,
        new: Value,
        part: Part,
    ) -> ApiResult<Value> {
        if let Some(rv) = meta::meta_str(&new, "resourceVersion")
            && !rv.is_empty()
            && Some(rv) != meta::meta_str(old, "resourceVersion")
        {
            return Err(ApiError::conflict(resource, &key.name));
        }
        let candidate = match part {
            Part::Status => {
                let mut candidate = old.clone();
                let map = candidate
                    .as_object_mut()
                    .expect("stored objects are objects");
                match new.get("status") {
                    Some(status) => map.insert("status".to_owned(), status.clone()),
                    None => map.remove("status"),
                };
                candidate
            }
            Part::Main if resource.status_subresource => {
                let mut candidate = new;
                let map = candidate.as_object_mut().expect("checked to be an object");
                match old.get("status") {
                    Some(status) => map.insert("status".to_owned(), status.clone()),
                    None => map.remove("status"),
                };
                candidate
            }
            Part::Main => new,
        };
        self.update(key, old, candidate)
    }
}
