//! `spec.notify`: FineTuneJobs tell receivers of their progress as CloudEvents. The
//! leader watches FineTuneJobs, tells what changed since it last saw each job
//! ([`cloud_event::what_happened`]: started, each checkpoint, succeeded, failed; a job
//! deleted before it ended is cancelled), and hands each event to the delivery
//! queue ([`delivery`]) for every receiver that wants it, if the install allows the
//! receiver's host.
//!
//! What a job did before the leader started watching is not told again (a new
//! leader starts from what it lists); a watch that is re-listed tells what changed
//! meanwhile. Delivery is at least once per event while a leader runs: an event's
//! CloudEvent `id` stays the same, so a receiver can drop a repeat.

pub mod cloud_event;
pub mod delivery;

use std::collections::HashMap;

use anneal_crds::FineTuneJob;
use anneal_crds::finetunejob::{JobPhase, NotifyEvent};
use futures_util::StreamExt;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::Value;
use tracing::warn;

use cloud_event::{Happened, Seen, cancelled_event, cloud_event, what_happened};
use delivery::{Delivery, Notifications};

use crate::metrics::Metrics;

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
        notifications: Notifications::start(client, metrics),
        allowed_hosts,
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
                        notifier.tell(&job, what_happened(before, &job));
                    }
                    now.insert(uid, Seen::of(&job));
                }
                seen = now;
            }
            Event::Apply(job) => {
                let uid = job.uid().unwrap_or_default();
                let before = seen.get(&uid).cloned().unwrap_or_default();
                notifier.tell(&job, what_happened(&before, &job));
                seen.insert(uid, Seen::of(&job));
            }
            Event::Delete(job) => {
                let uid = job.uid().unwrap_or_default();
                seen.remove(&uid);
                let phase = job.status.as_ref().and_then(|s| s.phase);
                if !matches!(phase, Some(JobPhase::Succeeded | JobPhase::Failed)) {
                    notifier.tell_value(
                        &job,
                        NotifyEvent::Cancelled,
                        cancelled_event(&job, &now()),
                    );
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
}

impl Notifier {
    fn tell(&self, job: &FineTuneJob, happened: Vec<Happened>) {
        if job.spec.notify.is_empty() {
            return;
        }
        let time = now();
        for happened in happened {
            let event = cloud_event(job, &happened, &time);
            self.tell_value(job, happened.event, event);
        }
    }

    /// Queues `event` (`what`) for each of the job's receivers that wants it.
    fn tell_value(&self, job: &FineTuneJob, what: NotifyEvent, event: Value) {
        let namespace = job.namespace().unwrap_or_default();
        let body = serde_json::to_vec(&event).unwrap_or_default();
        for receiver in &job.spec.notify {
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
}
