//! Posting notifications: a bounded queue and a few workers, so that telling a slow
//! receiver never holds up a reconcile or the watch. Each delivery reads its signing
//! key, then posts, retried with backoff on a refusal or no answer; every outcome is
//! counted (`anneal_notifications_total`).

use std::sync::Arc;
use std::time::Duration;

use anneal_crds::finetunejob::SecretKeyRef;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use tokio::sync::{Mutex, mpsc};
use tracing::{info, warn};

use super::cloud_event::signature;
use crate::metrics::Metrics;

/// Deliveries waiting for a worker; more are dropped (and counted).
const QUEUE: usize = 1024;
/// Posts at once.
const WORKERS: usize = 4;
/// Tries per delivery, with pauses of 1, 2, 4 and 8 s between.
const ATTEMPTS: u32 = 5;
/// The longest one post may take.
const POST_TIMEOUT: Duration = Duration::from_secs(10);

/// One CloudEvent for one receiver.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub url: String,
    pub body: Vec<u8>,
    /// The job's namespace and the Secret key that signs the body, if any.
    pub signing: Option<(String, SecretKeyRef)>,
    /// `team-a/story succeeded`, for the log.
    pub what: String,
}

/// The queue deliveries are handed to.
#[derive(Clone)]
pub struct Notifications {
    sender: mpsc::Sender<Delivery>,
    metrics: Metrics,
}

impl Notifications {
    /// Starts the workers; they stop when every `Notifications` is dropped.
    pub fn start(client: Client, metrics: Metrics) -> Self {
        let (sender, receiver) = mpsc::channel(QUEUE);
        let receiver = Arc::new(Mutex::new(receiver));
        let http = reqwest::Client::builder()
            .timeout(POST_TIMEOUT)
            .build()
            .unwrap_or_default();
        for _ in 0..WORKERS {
            let (receiver, client, http, metrics) = (
                receiver.clone(),
                client.clone(),
                http.clone(),
                metrics.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let next = receiver.lock().await.recv().await;
                    let Some(delivery) = next else { return };
                    deliver(&client, &http, &metrics, delivery).await;
                }
            });
        }
        Self { sender, metrics }
    }

    /// Queues `delivery`; a full queue drops it.
    pub fn send(&self, delivery: Delivery) {
        if let Err(error) = self.sender.try_send(delivery) {
            self.count("dropped");
            warn!(%error, "notification queue full: dropped");
        }
    }

    pub fn count(&self, outcome: &str) {
        self.metrics
            .notifications
            .with_label_values(&[outcome])
            .inc();
    }
}

/// The value of the Secret key in `namespace`.
async fn signing_key(
    client: &Client,
    namespace: &str,
    key: &SecretKeyRef,
) -> Result<Vec<u8>, String> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = secrets
        .get_opt(&key.name)
        .await
        .map_err(|e| format!("reading Secret {}: {e}", key.name))?
        .ok_or_else(|| format!("Secret {} does not exist", key.name))?;
    (secret.data.unwrap_or_default().remove(&key.key))
        .map(|value| value.0)
        .ok_or_else(|| format!("Secret {} has no key {}", key.name, key.key))
}

async fn deliver(client: &Client, http: &reqwest::Client, metrics: &Metrics, delivery: Delivery) {
    let count = |outcome: &str| metrics.notifications.with_label_values(&[outcome]).inc();
    let signed = match &delivery.signing {
        Some((namespace, key)) => match signing_key(client, namespace, key).await {
            Ok(value) => Some(signature(&value, &delivery.body)),
            Err(why) => {
                count("refused");
                warn!(what = %delivery.what, url = %delivery.url, %why, "notification not sent: no signing key");
                return;
            }
        },
        None => None,
    };
    let mut pause = Duration::from_secs(1);
    for attempt in 1..=ATTEMPTS {
        let mut request = http
            .post(&delivery.url)
            .header("content-type", "application/cloudevents+json")
            .body(delivery.body.clone());
        if let Some(signed) = &signed {
            request = request.header("x-anneal-signature", signed);
        }
        let outcome = match request.send().await {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => Err(format!("answered {}", response.status())),
            Err(error) => Err(error.to_string()),
        };
        match outcome {
            Ok(()) => {
                count("delivered");
                info!(what = %delivery.what, url = %delivery.url, attempt, "notification delivered");
                return;
            }
            Err(why) if attempt < ATTEMPTS => {
                count("retried");
                warn!(what = %delivery.what, url = %delivery.url, attempt, %why, "notification not delivered; retrying");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            Err(why) => {
                count("failed");
                warn!(what = %delivery.what, url = %delivery.url, %why, "notification not delivered after {ATTEMPTS} tries");
            }
        }
    }
}
