//! `spec.notify`: FineTuneJobs tell receivers of their progress as CloudEvents. The
//! leader watches FineTuneJobs, tells what changed since it last saw each job
//! ([`cloud_event::what_happened`]: started, each checkpoint, succeeded, failed; a job
//! deleted before it ended is cancelled), and hands each event to the delivery
//! queue ([`delivery`]) for every receiver that wants it, if the install allows the
//! receiver's host.
//!
//! A job without `spec.notify` takes its namespace's receivers: the `receivers` key
//! of a ConfigMap named [`NAMESPACE_CONFIG`] there, the same list as `spec.notify`
//! (read when there is something to tell, so a change applies to the next event;
//! one that does not parse is logged and tells no one).
//!
//! What a job did before the leader started watching is not told again (a new
//! leader starts from what it lists); a watch that is re-listed tells what changed
//! meanwhile. Delivery is at least once per event while a leader runs: an event's
//! CloudEvent `id` stays the same, so a receiver can drop a repeat.

pub mod cloud_event;
pub mod delivery;

use std::collections::HashMap;

use anneal_crds::FineTuneJob;
use anneal_crds::finetunejob::{JobPhase, NotifyEvent, NotifySpec};
use anneal_crds::validation::namespace_receivers;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::Value;
use tracing::warn;

use cloud_event::{Happened, Seen, cancelled_event, cloud_event, what_happened};
use delivery::{Delivery, Notifications};

use crate::metrics::Metrics;

/// The ConfigMap whose `receivers` key gives a namespace's default receivers.
pub const NAMESPACE_CONFIG: &str = "anneal-notify";
/// Its key.
pub const NAMESPACE_CONFIG_KEY: &str = "receivers";

/// Whether `url`'s host is one of `allowed` (`host`, any port, or `host:port`).
pub fn host_allowed(url: &str, allowed: &[String]) -> bool {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return false;
    };
    let Some(host) = parsed.host_str() else {
        return false;
    };
    let port = parsed.port_or_known_default();
    allowed.iter().any(|entry| {
        let entry = entry.trim();
        entry.eq_ignore_ascii_case(host)
            || port.is_some_and(|port| entry.eq_ignore_ascii_case(&format!("{host}:{port}")))
    })
}

/// Watches FineTuneJobs (in `namespace`, else all) and tells their receivers, until
/// `stop` resolves.
pub async fn run_notifier(
    client: Client,
    metrics: Metrics,
    allowed_hosts: Vec<String>,
    namespace: Option<String>,
    stop: impl std::future::Future<Output = ()>,
) {
    anneal_crds::storage::install_crypto_provider();
    let api: Api<FineTuneJob> = match &namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    };
    let notifier = Notifier {
        notifications: Notifications::start(client.clone(), metrics),
        allowed_hosts,
        client,
    };
    let mut seen: HashMap<String, Seen> = HashMap::new();
    let mut listing: Option<Vec<FineTuneJob>> = None;
    let events = watcher(api, watcher::Config::default()).default_backoff();
    let mut events = std::pin::pin!(events);
    let mut stop = std::pin::pin!(stop);
    loop {
        let event = tokio::select! {
            () = &mut stop => return,
            event = events.next() => event,
        };
        let event = match event {
            Some(Ok(event)) => event,
            Some(Err(error)) => {
                warn!(%error, "notifier: watching FineTuneJobs");
                continue;
            }
            None => return,
        };
        match event {
            Event::Init => listing = Some(Vec::new()),
            Event::InitApply(job) => listing.get_or_insert_with(Vec::new).push(job),
            Event::InitDone => {
                let jobs = listing.take().unwrap_or_default();
                // The first listing is where this leader starts; a later one (the
                // watch was re-listed) tells what changed meanwhile.
                let first = seen.is_empty();
                let mut now = HashMap::new();
                for job in jobs {
                    let uid = job.uid().unwrap_or_default();
                    if !first && let Some(before) = seen.get(&uid) {
                        notifier.tell(&job, what_happened(before, &job)).await;
                    }
                    now.insert(uid, Seen::of(&job));
                }
                seen = now;
            }
            Event::Apply(job) => {
                let uid = job.uid().unwrap_or_default();
                let before = seen.get(&uid).cloned().unwrap_or_default();
                notifier.tell(&job, what_happened(&before, &job)).await;
                seen.insert(uid, Seen::of(&job));
            }
            Event::Delete(job) => {
                let uid = job.uid().unwrap_or_default();
                seen.remove(&uid);
                let phase = job.status.as_ref().and_then(|s| s.phase);
                if !matches!(phase, Some(JobPhase::Succeeded | JobPhase::Failed)) {
                    let receivers = notifier.receivers(&job).await;
                    let event = cancelled_event(&job, &now());
                    notifier.tell_value(&job, &receivers, NotifyEvent::Cancelled, event);
                }
            }
        }
    }
}

/// The current time, RFC 3339.
fn now() -> String {
    anneal_crds::jiff::Timestamp::now().to_string()
}

struct Notifier {
    notifications: Notifications,
    allowed_hosts: Vec<String>,
    client: Client,
}

impl Notifier {
    async fn tell(&self, job: &FineTuneJob, happened: Vec<Happened>) {
        if happened.is_empty() {
            return;
        }
        let receivers = self.receivers(job).await;
        let time = now();
        for happened in happened {
            let event = cloud_event(job, &happened, &time);
            self.tell_value(job, &receivers, happened.event, event);
        }
    }

    /// The job's own receivers, else its namespace's ([`NAMESPACE_CONFIG`]).
    async fn receivers(&self, job: &FineTuneJob) -> Vec<NotifySpec> {
        if !job.spec.notify.is_empty() {
            return job.spec.notify.clone();
        }
        let namespace = job.namespace().unwrap_or_default();
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &namespace);
        let config = match api.get_opt(NAMESPACE_CONFIG).await {
            Ok(config) => config,
            Err(error) => {
                warn!(%error, %namespace, "notifier: reading the {NAMESPACE_CONFIG} ConfigMap");
                return Vec::new();
            }
        };
        let Some(yaml) = config
            .and_then(|c| c.data)
            .and_then(|mut data| data.remove(NAMESPACE_CONFIG_KEY))
        else {
            return Vec::new();
        };
        namespace_receivers(NAMESPACE_CONFIG_KEY, &yaml).unwrap_or_else(|problem| {
            warn!(%namespace, %problem, "notifier: the {NAMESPACE_CONFIG} ConfigMap is not a list of receivers; telling no one");
            Vec::new()
        })
    }

    /// Queues `event` (`what`) for each of `receivers` that wants it.
    fn tell_value(
        &self,
        job: &FineTuneJob,
        receivers: &[NotifySpec],
        what: NotifyEvent,
        event: Value,
    ) {
        let namespace = job.namespace().unwrap_or_default();
        let body = serde_json::to_vec(&event).unwrap_or_default();
        for receiver in receivers {
            if !receiver.events.is_empty() && !receiver.events.contains(&what) {
                continue;
            }
            let described = format!("{namespace}/{} {}", job.name_any(), what.name());
            if !host_allowed(&receiver.url, &self.allowed_hosts) {
                self.notifications.count("refused");
                warn!(what = %described, url = %receiver.url, "notification not sent: the host is not in --notify-allowed-hosts");
                continue;
            }
            self.notifications.send(Delivery {
                url: receiver.url.clone(),
                body: body.clone(),
                signing: (receiver.signing_secret.clone()).map(|key| (namespace.clone(), key)),
                what: described,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_hosts_the_install_allows_are_told() {
        let allowed = ["hooks.example".to_owned(), "127.0.0.1:9000".to_owned()];
        assert!(host_allowed("https://hooks.example/anneal", &allowed));
        assert!(host_allowed("http://HOOKS.example:8080/x", &allowed));
        assert!(host_allowed("http://127.0.0.1:9000/hook", &allowed));
        for refused in [
            "http://127.0.0.1:9001/hook",
            "http://kubernetes.default.svc/api",
            "https://hooks.example.evil.test/",
            "not a url",
        ] {
            assert!(!host_allowed(refused, &allowed), "{refused}");
        }
        assert!(
            !host_allowed("https://hooks.example/", &[]),
            "none allowed by default"
        );
    }

    #[test]
    fn a_namespaces_receivers_are_checked_as_spec_notify_is() {
        let yaml = "- url: https://hooks.example/anneal\n  events: [succeeded, failed]\n  signingSecret: {name: hooks, key: hmac}\n";
        let receivers = namespace_receivers(NAMESPACE_CONFIG_KEY, yaml).unwrap();
        assert_eq!(receivers.len(), 1);
        assert_eq!(
            receivers[0].events,
            [NotifyEvent::Succeeded, NotifyEvent::Failed]
        );
        let bad = "- url: ftp://hooks.example/x\n- url: https://ok.example\n  signingSecret: {name: Not_A_Name, key: k}\n";
        let problem = namespace_receivers(NAMESPACE_CONFIG_KEY, bad).unwrap_err();
        assert!(problem.contains("receivers[0].url: "), "{problem}");
        assert!(
            problem.contains("receivers[1].signingSecret.name: "),
            "{problem}"
        );
        let problem = namespace_receivers(NAMESPACE_CONFIG_KEY, "url: https://x").unwrap_err();
        assert!(problem.starts_with("receivers: "), "not a list: {problem}");
    }
}
