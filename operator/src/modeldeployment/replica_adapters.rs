//! Keeping every `builtin` serving pod's adapters equal to the spec's while the pods
//! run. For each pod whose server answers: read what it serves (`GET /v1/models`,
//! where an adapter's `root` is the source it was loaded from), unload what the spec
//! dropped or moved elsewhere, load what it added (`POST /v1/load_lora_adapter`, with
//! the deployment's token), read it again for the status, and open the pod's
//! readiness gate once it serves them all. The server answers an unload only after
//! the requests running on that adapter have finished, so none is cut. The plan of
//! changes is pure (`plan_adapter_changes`); this module's IO is the pods' HTTP and
//! their status.
//!
//! The gate is only ever opened: a pod that serves traffic keeps serving the base and
//! its other adapters while one is added, rather than every pod leaving the Service
//! at once. Until the added adapter is loaded, a request naming it gets 404 from a pod
//! that does not have it yet; `status.replicas` says which pods do.

use std::sync::OnceLock;
use std::time::Duration;

use anneal_crds::modeldeployment::ReplicaStatus;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde::Deserialize;
use serde_json::json;
use tracing::{info, warn};

use crate::error::Result;
use crate::modeldeployment::serving_deployment::{
    ADAPTERS_GATE, DEPLOYMENT_LABEL, HTTP_PORT, RuntimeAdapter,
};

/// How long one load may take: it downloads the adapter (hundreds of MB for a 72B
/// model's rank-64 adapter) before the engine attaches it.
const LOAD_TIMEOUT: Duration = Duration::from_secs(300);
/// How long an unload may wait for the requests in flight on the adapter.
const UNLOAD_TIMEOUT: Duration = Duration::from_secs(600);
/// Reading a pod's model list.
const LIST_TIMEOUT: Duration = Duration::from_secs(10);

/// A model as a pod's `GET /v1/models` lists it.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct ListedModel {
    pub id: String,
    /// The base model's name, for adapters.
    #[serde(default)]
    pub parent: Option<String>,
    /// Where an adapter was loaded from.
    #[serde(default)]
    pub root: Option<String>,
}

/// One change to a pod's adapters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdapterChange<'a> {
    Unload(String),
    Load(&'a RuntimeAdapter),
}

/// What a pod must do to serve exactly `wanted`: unloads first (of adapters the spec
/// no longer names, or names with another source), so that loads find room under
/// `--max-loras`, then loads, both in a stable order.
pub fn plan_adapter_changes<'a>(
    wanted: &'a [RuntimeAdapter],
    served: &[ListedModel],
) -> Vec<AdapterChange<'a>> {
    let adapters: Vec<&ListedModel> = served.iter().filter(|m| m.parent.is_some()).collect();
    let keeps = |listed: &ListedModel| {
        wanted
            .iter()
            .any(|w| w.name == listed.id && Some(&w.path) == listed.root.as_ref())
    };
    let mut changes: Vec<AdapterChange> = adapters
        .iter()
        .filter(|listed| !keeps(listed))
        .map(|listed| AdapterChange::Unload(listed.id.clone()))
        .collect();
    changes.extend(
        wanted
            .iter()
            .filter(|w| {
                !adapters
                    .iter()
                    .any(|l| l.id == w.name && l.root.as_ref() == Some(&w.path))
            })
            .map(AdapterChange::Load),
    );
    changes
}

/// The adapters' names a pod serves, sorted.
fn adapter_names(served: &[ListedModel]) -> Vec<String> {
    let mut names: Vec<String> = (served.iter())
        .filter(|m| m.parent.is_some())
        .map(|m| m.id.clone())
        .collect();
    names.sort();
    names
}

fn http() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .expect("an HTTP client without TLS settings builds")
    })
}

/// Whether the pod's server can be asked: running, not going away, its container
/// ready (its `Ready` may still wait for the gate) and with an IP.
fn reachable(pod: &Pod) -> Option<String> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let status = pod.status.as_ref()?;
    let containers_ready = (status.conditions.iter().flatten())
        .any(|c| c.type_ == "ContainersReady" && c.status == "True");
    containers_ready.then(|| status.pod_ip.clone()).flatten()
}

fn gate_open(pod: &Pod) -> bool {
    (pod.status.iter())
        .flat_map(|s| s.conditions.iter().flatten())
        .any(|c| c.type_ == ADAPTERS_GATE && c.status == "True")
}

/// Syncs every reachable pod of the deployment `name` to `wanted` (side by side) and
/// returns what each serves, by pod name.
pub async fn sync_replicas(
    client: &Client,
    namespace: &str,
    name: &str,
    token: &str,
    wanted: &[RuntimeAdapter],
) -> Result<Vec<ReplicaStatus>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let listed = pods
        .list(&ListParams::default().labels(&format!("{DEPLOYMENT_LABEL}={name}")))
        .await?;
    let syncs = listed.items.iter().filter_map(|pod| {
        let ip = reachable(pod)?;
        Some(sync_pod(&pods, pod, ip, token, wanted))
    });
    let mut replicas = futures_util::future::join_all(syncs)
        .await
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
    replicas.sort_by(|a, b| a.pod.cmp(&b.pod));
    Ok(replicas)
}

/// One pod: its changes, then what it serves, and its gate opened when that is all
/// of `wanted`.
async fn sync_pod(
    pods: &Api<Pod>,
    pod: &Pod,
    ip: String,
    token: &str,
    wanted: &[RuntimeAdapter],
) -> Result<ReplicaStatus> {
    let pod_name = pod.name_any();
    let base = format!("http://{ip}:{HTTP_PORT}/v1");
    let served = match list_models(&base).await {
        Ok(served) => served,
        Err(message) => {
            return Ok(ReplicaStatus {
                pod: pod_name,
                adapters: Vec::new(),
                in_sync: false,
                message: Some(message),
            });
        }
    };
    let mut failures = Vec::new();
    for change in plan_adapter_changes(wanted, &served) {
        if let Err(message) = apply_change(&base, token, &change).await {
            warn!(pod = %pod_name, %message, "changing a serving pod's adapters");
            failures.push(message);
        }
    }
    let served = match list_models(&base).await {
        Ok(served) => served,
        Err(message) => {
            failures.push(message);
            served
        }
    };
    let in_sync = failures.is_empty() && plan_adapter_changes(wanted, &served).is_empty();
    if in_sync && !gate_open(pod) {
        open_gate(pods, &pod_name).await?;
        info!(pod = %pod_name, "the serving pod has its adapters: it joins the Service");
    }
    Ok(ReplicaStatus {
        pod: pod_name,
        adapters: adapter_names(&served),
        in_sync,
        message: (!failures.is_empty()).then(|| failures.join("; ")),
    })
}

async fn list_models(base: &str) -> std::result::Result<Vec<ListedModel>, String> {
    #[derive(Deserialize)]
    struct ModelList {
        data: Vec<ListedModel>,
    }
    let answer = http()
        .get(format!("{base}/models"))
        .timeout(LIST_TIMEOUT)
        .send()
        .await
        .map_err(|e| format!("listing its models: {e}"))?;
    let status = answer.status();
    if !status.is_success() {
        return Err(format!("listing its models: HTTP {status}"));
    }
    let text = answer
        .text()
        .await
        .map_err(|e| format!("listing its models: {e}"))?;
    let list: ModelList =
        serde_json::from_str(&text).map_err(|e| format!("listing its models: {e}"))?;
    Ok(list.data)
}

/// One load or unload; the error says which adapter and what the server answered.
async fn apply_change(
    base: &str,
    token: &str,
    change: &AdapterChange<'_>,
) -> std::result::Result<(), String> {
    let (endpoint, body, timeout, what) = match change {
        AdapterChange::Load(adapter) => (
            "load_lora_adapter",
            json!({"lora_name": adapter.name, "lora_path": adapter.path}),
            LOAD_TIMEOUT,
            format!("loading adapter {} ({})", adapter.name, adapter.field),
        ),
        AdapterChange::Unload(name) => (
            "unload_lora_adapter",
            json!({"lora_name": name}),
            UNLOAD_TIMEOUT,
            format!("unloading adapter {name}"),
        ),
    };
    let answer = http()
        .post(format!("{base}/{endpoint}"))
        .bearer_auth(token)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_string())
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| format!("{what}: {e}"))?;
    let status = answer.status();
    if status.is_success() {
        return Ok(());
    }
    let text = answer.text().await.unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or(text);
    Err(format!("{what}: HTTP {}: {message}", status.as_u16()))
}

/// Sets the pod's readiness gate condition (a strategic merge keeps the kubelet's
/// conditions beside it).
async fn open_gate(pods: &Api<Pod>, pod_name: &str) -> Result<()> {
    let now = anneal_crds::jiff::Timestamp::now().to_string();
    let patch = json!({"status": {"conditions": [{
        "type": ADAPTERS_GATE,
        "status": "True",
        "reason": "AdaptersLoaded",
        "message": "the pod serves the ModelDeployment's adapters",
        "lastTransitionTime": now,
    }]}});
    match pods
        .patch_status(pod_name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
    {
        Ok(_) => Ok(()),
        // Gone since it was listed.
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(error) => Err(error.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted(name: &str, path: &str) -> RuntimeAdapter {
        RuntimeAdapter {
            name: name.to_owned(),
            path: path.to_owned(),
            field: format!("spec.model.adapters[{name}].uri"),
        }
    }

    fn listed(id: &str, root: Option<&str>) -> ListedModel {
        ListedModel {
            id: id.to_owned(),
            parent: root.map(|_| "base".to_owned()),
            root: root.map(str::to_owned),
        }
    }

    #[test]
    fn a_pod_unloads_what_went_or_moved_then_loads_what_it_lacks() {
        let want = [
            wanted("a", "s3://b/a"),
            wanted("b", "s3://b/b2"),
            wanted("c", "s3://b/c"),
        ];
        let served = [
            listed("base", None),
            listed("a", Some("s3://b/a")),
            listed("b", Some("s3://b/b1")),
            listed("old", Some("s3://b/old")),
        ];
        assert_eq!(
            plan_adapter_changes(&want, &served),
            [
                AdapterChange::Unload("b".to_owned()),
                AdapterChange::Unload("old".to_owned()),
                AdapterChange::Load(&want[1]),
                AdapterChange::Load(&want[2]),
            ]
        );
        // In sync: nothing to do, and the base is never touched.
        let served = [
            listed("base", None),
            listed("c", Some("s3://b/c")),
            listed("a", Some("s3://b/a")),
            listed("b", Some("s3://b/b2")),
        ];
        assert_eq!(plan_adapter_changes(&want, &served), []);
        assert_eq!(adapter_names(&served), ["a", "b", "c"]);
        assert_eq!(
            plan_adapter_changes(&[], &served),
            ["c", "a", "b"].map(|n| AdapterChange::Unload(n.to_owned()))
        );
    }

    #[test]
    fn only_running_pods_with_ready_containers_and_an_ip_are_asked() {
        let pod = |conditions: serde_json::Value, ip: Option<&str>, deleting: bool| -> Pod {
            serde_json::from_value(json!({
                "metadata": {"name": "p", "deletionTimestamp":
                    deleting.then_some("2026-12-06T00:00:00Z")},
                "status": {"podIP": ip, "conditions": conditions}
            }))
            .unwrap()
        };
        let ready = json!([{"type": "ContainersReady", "status": "True"},
                           {"type": "Ready", "status": "False"}]);
        assert_eq!(
            reachable(&pod(ready.clone(), Some("10.0.0.7"), false)).as_deref(),
            Some("10.0.0.7")
        );
        assert_eq!(reachable(&pod(ready.clone(), None, false)), None);
        assert_eq!(reachable(&pod(ready, Some("10.0.0.7"), true)), None);
        let loading = json!([{"type": "ContainersReady", "status": "False"}]);
        assert_eq!(reachable(&pod(loading, Some("10.0.0.7"), false)), None);
        let gated = json!([{"type": ADAPTERS_GATE, "status": "True"}]);
        assert!(gate_open(&pod(gated, None, false)));
        assert!(!gate_open(&pod(json!([]), None, false)));
    }
}
