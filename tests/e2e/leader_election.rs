//! Leader election through the fake API server: of two operator replicas only one
//! leads (and is ready), and the other takes over when the leader steps down.

use std::time::{Duration, Instant};

use anneal_fake_apiserver::FakeApiServer;
use anneal_operator::config::OperatorConfig;
use anneal_operator::console::ConsoleSettings;
use anneal_operator::leader_election::{LEADER_LABEL, LeaderElector, LeaseSettings};
use anneal_operator::operator_run::{Listeners, OperatorSettings, run_operator};
use anneal_operator::report::ReportSettings;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::PostParams;
use tokio::net::TcpListener;
use tokio::sync::watch;

fn lease(identity: &str) -> LeaseSettings {
    LeaseSettings {
        lease_duration: Duration::from_secs(3),
        retry_every: Duration::from_millis(300),
        ..LeaseSettings::new("anneal-system", "anneal-operator", identity)
    }
}

#[tokio::test]
async fn only_one_elector_holds_an_unexpired_lease() {
    let api = FakeApiServer::start().await;
    let a = LeaderElector::new(api.client(), lease("a"));
    let b = LeaderElector::new(api.client(), lease("b"));
    assert!(a.try_acquire_or_renew().await.unwrap());
    assert!(!b.try_acquire_or_renew().await.unwrap());
    assert!(a.try_acquire_or_renew().await.unwrap(), "the holder renews");
    a.release().await.unwrap();
    assert!(
        b.try_acquire_or_renew().await.unwrap(),
        "a released lease is free"
    );
    let leases: Api<Lease> = Api::namespaced(api.client(), "anneal-system");
    let spec = leases.get("anneal-operator").await.unwrap().spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("b"));
    assert_eq!(spec.lease_transitions, Some(1));
}

struct Replica {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    ready_url: String,
}

async fn replica(api: &FakeApiServer, identity: &str) -> Replica {
    let report = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let health = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ready_url = format!("http://{}/readyz", health.local_addr().unwrap());
    let settings = OperatorSettings {
        config: OperatorConfig::default(),
        namespace: None,
        lease: Some(lease(identity)),
        report: ReportSettings::default(),
        instance: identity.to_owned(),
        webhook: None,
        console: ConsoleSettings::default(),
    };
    let (stop, stopped) = watch::channel(false);
    let listeners = Listeners {
        report,
        health,
        console: None,
    };
    let task = tokio::spawn(run_operator(api.client(), settings, listeners, stopped));
    Replica {
        stop,
        task,
        ready_url,
    }
}

async fn ready(replica: &Replica) -> bool {
    reqwest::get(&replica.ready_url)
        .await
        .unwrap()
        .status()
        .is_success()
}

/// The replicas' pods, with the leader label (`None`: absent) as the report Service sees it.
async fn leader_labels(api: &FakeApiServer) -> Vec<(String, Option<String>)> {
    let pods: Api<Pod> = Api::namespaced(api.client(), "anneal-system");
    let mut labels = Vec::new();
    for name in ["first", "second"] {
        let pod = pods.get(name).await.unwrap();
        let label = pod.metadata.labels.unwrap_or_default().remove(LEADER_LABEL);
        labels.push((name.to_owned(), label));
    }
    labels
}

fn expected(first: bool, second: bool) -> Vec<(String, Option<String>)> {
    let label = |on: bool| on.then(|| "true".to_owned());
    vec![
        ("first".to_owned(), label(first)),
        ("second".to_owned(), label(second)),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_replica_takes_over_when_the_leader_stops() {
    let api = FakeApiServer::start().await;
    // The replicas' pods; "second" still carries the leader label from an earlier
    // run of its container, which it must take off before standing by.
    let pods: Api<Pod> = Api::namespaced(api.client(), "anneal-system");
    for (name, stale) in [("first", false), ("second", true)] {
        let mut pod = Pod::default();
        pod.metadata.name = Some(name.to_owned());
        if stale {
            pod.metadata.labels = Some([(LEADER_LABEL.to_owned(), "true".to_owned())].into());
        }
        pods.create(&PostParams::default(), &pod).await.unwrap();
    }
    let first = replica(&api, "first").await;
    let started = Instant::now();
    while !ready(&first).await {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "first never led"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let second = replica(&api, "second").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!ready(&second).await, "two leaders at once");
    assert!(ready(&first).await);
    assert_eq!(
        leader_labels(&api).await,
        expected(true, false),
        "only the leader's pod is in the report Service"
    );

    first.stop.send(true).unwrap();
    first.task.await.unwrap().unwrap();
    let started = Instant::now();
    while !ready(&second).await {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "second never took over"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(leader_labels(&api).await, expected(false, true));
    second.stop.send(true).unwrap();
    second.task.await.unwrap().unwrap();
    assert_eq!(leader_labels(&api).await, expected(false, false));
}
