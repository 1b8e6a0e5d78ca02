//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several operator
//! replicas exactly one reconciles and serves reports. The holder renews the lease
//! well within its duration; another replica takes it only after it expired. Writes
//! are conditional on the lease's resourceVersion, so two replicas racing for an
//! expired lease cannot both win.
//!
//! The leader also labels its own pod (named by its identity, in the lease's
//! namespace) `anneal.dev/leader=true`, and takes the label off when it stops
//! leading or starts up: the report Service selects that label, so trainers reach
//! the leader while every replica stays Ready (rolling updates and the
//! PodDisruptionBudget count followers as available).

use std::time::Duration;

use std::sync::atomic::{AtomicBool, Ordering};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};

use anneal_crds::jiff::{SignedDuration, Timestamp};

/// Who competes for which lease, and how fast.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    pub namespace: String,
    pub name: String,
    /// This replica, e.g. its pod name.
    pub identity: String,
    /// How long a lease holds without renewal.
    pub lease_duration: Duration,
    /// How often the holder renews and the others retry.
    pub retry_every: Duration,
    /// Label this replica's pod with [`LEADER_LABEL`] while it leads (a pod of that
    /// name missing from the namespace, as outside a cluster, is not an error).
    pub label_pod: bool,
}

/// The label the leader's pod carries (`"true"`), which the report Service selects.
pub const LEADER_LABEL: &str = "anneal.dev/leader";

impl LeaseSettings {
    pub fn new(namespace: &str, name: &str, identity: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            identity: identity.to_owned(),
            lease_duration: Duration::from_secs(15),
            retry_every: Duration::from_secs(4),
            label_pod: true,
        }
    }
}

/// Whether `identity` may take or renew `spec` at `now`: it holds it already, nobody
/// does, or the holder let it expire.
pub fn may_hold(spec: &LeaseSpec, identity: &str, now: Timestamp) -> bool {
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder.is_empty() || holder == identity {
        return true;
    }
    let Some(renewed) = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) else {
        return true;
    };
    let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(15)));
    renewed.0 + duration < now
}

/// One replica's side of the election.
pub struct LeaderElector {
    api: Api<Lease>,
    pods: Api<Pod>,
    settings: LeaseSettings,
    /// Whether the pod carries the leader label as this replica last wrote it.
    labelled: AtomicBool,
}

impl LeaderElector {
    pub fn new(client: Client, settings: LeaseSettings) -> Self {
        Self {
            api: Api::namespaced(client.clone(), &settings.namespace),
            pods: Api::namespaced(client, &settings.namespace),
            settings,
            labelled: AtomicBool::new(false),
        }
    }

    /// Puts the leader label on this replica's pod, or takes it off; `Ok(false)` when
    /// there is no such pod (or labelling is off).
    async fn label_pod(&self, leading: bool) -> Result<bool, kube::Error> {
        if !self.settings.label_pod {
            return Ok(false);
        }
        let value = leading.then_some("true");
        let patch = serde_json::json!({"metadata": {"labels": {LEADER_LABEL: value}}});
        match self
            .pods
            .patch(
                &self.settings.identity,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => {
                self.labelled.store(leading, Ordering::SeqCst);
                Ok(true)
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {
                // No such pod (not in a cluster): nothing to label, nothing to retry.
                self.labelled.store(leading, Ordering::SeqCst);
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// `label_pod`, logging instead of failing: a missing label only keeps trainers
    /// from reaching this replica (they buffer and retry), and the next renewal tries again.
    async fn try_label_pod(&self, leading: bool) {
        if let Err(error) = self.label_pod(leading).await {
            tracing::warn!(%error, leading, "leader election: cannot label this replica's pod");
        }
    }

    pub fn settings(&self) -> &LeaseSettings {
        &self.settings
    }

    /// Takes or renews the lease; `Ok(true)` when this replica holds it afterwards.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let identity = &self.settings.identity;
        let duration = i32::try_from(self.settings.lease_duration.as_secs()).unwrap_or(i32::MAX);
        let Some(mut lease) = self.api.get_opt(&self.settings.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.settings.name.clone()),
                    namespace: Some(self.settings.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(identity.clone()),
                    lease_duration_seconds: Some(duration),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let mut spec = lease.spec.clone().unwrap_or_default();
        if !may_hold(&spec, identity, now) {
            return Ok(false);
        }
        if spec.holder_identity.as_deref() != Some(identity.as_str()) {
            spec.holder_identity = Some(identity.clone());
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.renew_time = Some(MicroTime(now));
        spec.lease_duration_seconds = Some(duration);
        lease.spec = Some(spec);
        // `replace` carries the resourceVersion read above: a replica that wrote in
        // between makes this one fail with 409 instead of both holding the lease.
        match self
            .api
            .replace(&self.settings.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Waits until this replica holds the lease, then labels its pod as the leader's.
    /// First it takes the label off, which a previous run of this pod may have left.
    pub async fn acquire(&self) {
        self.try_label_pod(false).await;
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    self.try_label_pod(true).await;
                    return;
                }
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(%error, "leader election: cannot read or write the lease")
                }
            }
            tokio::time::sleep(self.settings.retry_every).await;
        }
    }

    /// Renews the lease until renewal fails for longer than the lease lasts (another
    /// replica may hold it by then), and returns: the caller must stop acting.
    pub async fn keep_renewing(&self) {
        let mut last_renewal = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.settings.retry_every).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    last_renewal = tokio::time::Instant::now();
                    if self.settings.label_pod && !self.labelled.load(Ordering::SeqCst) {
                        self.try_label_pod(true).await;
                    }
                }
                Ok(false) => {
                    tracing::error!("leader election: another replica holds the lease");
                    self.try_label_pod(false).await;
                    return;
                }
                Err(error) => tracing::warn!(%error, "leader election: cannot renew the lease"),
            }
            // Give up before the lease can expire under us (renewals every retry_every).
            if last_renewal.elapsed() + self.settings.retry_every >= self.settings.lease_duration {
                tracing::error!("leader election: lease not renewed in time");
                self.try_label_pod(false).await;
                return;
            }
        }
    }

    /// Gives the lease up (on shutdown), so that another replica need not wait for it to
    /// expire, after taking the leader label off this replica's pod.
    pub async fn release(&self) -> Result<(), kube::Error> {
        self.try_label_pod(false).await;
        let Some(mut lease) = self.api.get_opt(&self.settings.name).await? else {
            return Ok(());
        };
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.settings.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        lease.spec = Some(spec);
        self.api
            .replace(&self.settings.name, &PostParams::default(), &lease)
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: Option<&str>, renewed_at: i64, seconds: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_owned),
            renew_time: Some(MicroTime(Timestamp::from_second(renewed_at).unwrap())),
            lease_duration_seconds: Some(seconds),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn a_lease_is_taken_only_when_free_ours_or_expired() {
        let at = |s| Timestamp::from_second(s).unwrap();
        assert!(may_hold(&spec(None, 100, 15), "b", at(101)));
        assert!(may_hold(&spec(Some("b"), 100, 15), "b", at(101)));
        assert!(!may_hold(&spec(Some("a"), 100, 15), "b", at(114)));
        assert!(!may_hold(&spec(Some("a"), 100, 15), "b", at(115)));
        assert!(may_hold(&spec(Some("a"), 100, 15), "b", at(116)));
    }
}
