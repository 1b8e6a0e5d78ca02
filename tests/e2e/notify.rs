//! `spec.notify` through the operator: a job that trains tells a receiver on loopback
//! it started, of each checkpoint and that it succeeded, as signed CloudEvents; the
//! receiver's first refusal is retried; a receiver on a host the install does not
//! allow is never posted to; every outcome is counted in the metrics.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anneal_crds::finetunejob::JobPhase;
use anneal_e2e::console_support::TRAINING;
use anneal_e2e::operator_harness::{NAMESPACE, World, job_yaml, quickstart_lines};
use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::PostParams;
use serde_json::Value;

const SIGNING_KEY: &[u8] = b"s3cret-signing-key";

/// What the receiver was sent: each request's signature header and body.
type Received = Arc<Mutex<Vec<(Option<String>, Vec<u8>)>>>;

/// A receiver on loopback that refuses its first request (500) and takes the rest.
async fn start_receiver() -> (String, Received) {
    let received: Received = Arc::default();
    let kept = received.clone();
    let app = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: Bytes| {
            let kept = kept.clone();
            async move {
                let signature =
                    (headers.get("x-anneal-signature")).map(|v| v.to_str().unwrap().to_owned());
                let mut kept = kept.lock().unwrap();
                kept.push((signature, body.to_vec()));
                if kept.len() == 1 {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::NO_CONTENT
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{address}/hook"), received)
}

fn hmac(body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SIGNING_KEY);
    let tag = ring::hmac::sign(&key, body);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

async fn create_signing_secret(world: &World) {
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("hooks".into()),
            namespace: Some(NAMESPACE.into()),
            ..Default::default()
        },
        data: Some([("hmac".to_owned(), ByteString(SIGNING_KEY.to_vec()))].into()),
        ..Default::default()
    };
    let secrets: Api<Secret> = Api::namespaced(world.client(), NAMESPACE);
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
}

fn metric(text: &str, outcome: &str) -> u64 {
    let prefix = format!("anneal_notifications_total{{outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map_or(0, |value| value.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_tells_its_receiver_it_started_of_each_checkpoint_and_that_it_succeeded() {
    let mut world = World::start(&quickstart_lines(24)).await;
    world.config.notify_allowed_hosts = vec!["127.0.0.1".to_owned()];
    let (url, received) = start_receiver().await;
    create_signing_secret(&world).await;
    let operator = world.start_operator(None).await;

    let notify = format!(
        "  notify:\n    - url: {url}\n      signingSecret: {{name: hooks, key: hmac}}\n    \
         - url: http://hooks.not-allowed.example/hook\n      events: [succeeded]\n"
    );
    let job = world.apply(&job_yaml("story", 1, 2, &notify)).await;
    let uid = job.metadata.uid.unwrap();
    let done = world
        .wait_for("story", TRAINING, "Succeeded", |s| {
            s.phase == Some(JobPhase::Succeeded) && s.result.is_some()
        })
        .await
        .status
        .unwrap();

    // Started, one event per checkpoint, succeeded: each told once (by its id).
    let mut expected: BTreeSet<String> = ["started", "succeeded"]
        .iter()
        .map(|e| format!("{uid}/{e}"))
        .collect();
    for checkpoint in &done.checkpoints {
        expected.insert(format!("{uid}/checkpoint/{}", checkpoint.name));
    }
    let started = Instant::now();
    let events: Vec<(Option<String>, Value)> = loop {
        let got: Vec<(Option<String>, Vec<u8>)> = received.lock().unwrap().clone();
        let ids: BTreeSet<String> = got
            .iter()
            .map(|(_, body)| {
                serde_json::from_slice::<Value>(body).unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        if ids == expected {
            break got
                .into_iter()
                .map(|(signature, body)| {
                    assert_eq!(signature.as_deref(), Some(hmac(&body).as_str()), "signed");
                    (signature, serde_json::from_slice(&body).unwrap())
                })
                .collect();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "told {ids:?}, expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // The first post was refused and tried again: one request more than events.
    assert_eq!(events.len(), expected.len() + 1, "{events:?}");
    let succeeded = events
        .iter()
        .map(|(_, event)| event)
        .find(|event| event["type"] == "dev.anneal.finetunejob.succeeded")
        .unwrap();
    assert_eq!(succeeded["specversion"], "1.0");
    assert_eq!(
        succeeded["source"],
        format!("/apis/anneal.dev/v1alpha1/namespaces/{NAMESPACE}/finetunejobs/story")
    );
    let result = done.result.unwrap();
    assert_eq!(succeeded["data"]["modelId"], result.model_id.as_str());
    assert_eq!(succeeded["data"]["resultUri"], result.uri.as_str());

    let metrics = reqwest::get(format!("{}/metrics", operator.health_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        metric(&metrics, "delivered"),
        expected.len() as u64,
        "{metrics}"
    );
    assert_eq!(metric(&metrics, "retried"), 1);
    assert_eq!(
        metric(&metrics, "refused"),
        1,
        "the host not allowed, once: succeeded only"
    );
    operator.stop().await;
}

/// A job without `spec.notify` tells its namespace's receivers: the `anneal-notify`
/// ConfigMap's list, here the start and the end only.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_without_receivers_tells_its_namespaces() {
    let mut world = World::start(&quickstart_lines(24)).await;
    world.config.notify_allowed_hosts = vec!["127.0.0.1".to_owned()];
    let (url, received) = start_receiver().await;
    let config = k8s_openapi::api::core::v1::ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some("anneal-notify".into()),
            namespace: Some(NAMESPACE.into()),
            ..Default::default()
        },
        data: Some(
            [(
                "receivers".to_owned(),
                format!("- url: {url}\n  events: [started, succeeded]\n"),
            )]
            .into(),
        ),
        ..Default::default()
    };
    let configs: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(world.client(), NAMESPACE);
    configs
        .create(&PostParams::default(), &config)
        .await
        .unwrap();
    let operator = world.start_operator(None).await;

    let job = world.apply(&job_yaml("quiet", 1, 2, "")).await;
    let uid = job.metadata.uid.unwrap();
    world
        .wait_for("quiet", TRAINING, "Succeeded", |s| {
            s.phase == Some(JobPhase::Succeeded)
        })
        .await;
    let expected: Vec<String> = ["started", "succeeded"]
        .iter()
        .map(|e| format!("{uid}/{e}"))
        .collect();
    let started = Instant::now();
    loop {
        let ids: Vec<String> = (received.lock().unwrap().iter())
            .map(|(signature, body)| {
                assert_eq!(signature, &None, "no signing secret: unsigned");
                let event: Value = serde_json::from_slice(body).unwrap();
                event["id"].as_str().unwrap().to_owned()
            })
            .collect();
        // The receiver refuses its first post, which is tried again.
        let mut told: Vec<String> = ids.clone();
        told.dedup();
        if told == expected {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "told {ids:?}, expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    operator.stop().await;
}
