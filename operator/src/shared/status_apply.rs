//! Writing the status fields a controller owns with server-side apply, as field manager
//! `anneal-operator`; both controllers write their status this way.

use std::fmt::Debug;

use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// The field manager of everything the operator applies.
pub const FIELD_MANAGER: &str = "anneal-operator";

/// Applies `object` (server-side, as [`FIELD_MANAGER`], taking over its fields): how
/// the operator writes the children it owns.
pub async fn apply_child<K>(api: &Api<K>, name: &str, object: &K) -> kube::Result<K>
where
    K: Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
}

/// A new secret token: 32 random bytes, as 64 hex digits.
pub fn random_token() -> String {
    rand::random::<[u8; 32]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Applies `fields` (a JSON object) as the status of `K` object `name`. Unset fields
/// are left out rather than applied as null, which the schema refuses.
pub async fn apply_status<K>(api: &Api<K>, name: &str, fields: Value) -> kube::Result<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    apply_status_at(api, name, fields, None).await
}

/// What became of a status write decided from an observed copy of the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusWrite {
    Written,
    /// The object had moved on since it was observed, most often by the previous
    /// reconcile's own status write not yet in the cache: nothing was written, and the
    /// watch event of that change brings a reconcile that decides again.
    MovedOn,
}

/// [`apply_status_at`] at the resourceVersion of `observed`, the copy the status was
/// decided from, with a `409 Conflict` answered as [`StatusWrite::MovedOn`]. Without
/// the precondition a reconcile running on a cache that has not seen the last write
/// writes the same status again and announces the same phase twice.
pub async fn apply_observed_status<K>(
    api: &Api<K>,
    observed: &K,
    fields: Value,
) -> kube::Result<StatusWrite>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let name = observed.meta().name.clone().unwrap_or_default();
    let version = observed.meta().resource_version.as_deref();
    match apply_status_at(api, &name, fields, version).await {
        Ok(()) => Ok(StatusWrite::Written),
        Err(kube::Error::Api(response)) if response.code == 409 => Ok(StatusWrite::MovedOn),
        Err(error) => Err(error),
    }
}

/// [`apply_status`], applied only while the object is still at `resource_version`
/// (`409 Conflict` otherwise): for a write decided from what the object was, which
/// must not land once it has moved on (a write delayed in flight from an operator
/// that was stopped, or one from a stale copy).
pub async fn apply_status_at<K>(
    api: &Api<K>,
    name: &str,
    mut fields: Value,
    resource_version: Option<&str>,
) -> kube::Result<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    if let Some(fields) = fields.as_object_mut() {
        fields.retain(|_, value| !value.is_null());
    }
    let mut patch = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": fields,
    });
    if let Some(version) = resource_version {
        patch["metadata"] = json!({ "resourceVersion": version });
    }
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}
