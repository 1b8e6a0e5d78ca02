//! Leader election through the fake API server: of two operator replicas only one
//! leads (and is ready), and the other takes over when the leader steps down.

use std::time::{Duration, Instant};

use anneal_e2e::fake_apiserver::FakeApiServer;
use anneal_operator::config::OperatorConfig;
use anneal_operator::leader_election::{LeaderElector, LeaseSettings};
use anneal_operator::operator_run::{OperatorSettings, run_operator};
use anneal_operator::report::ReportSettings;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
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
    };
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(run_operator(
        api.client(),
        settings,
        report,
        health,
        stopped,
    ));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_replica_takes_over_when_the_leader_stops() {
    let api = FakeApiServer::start().await;
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
    second.stop.send(true).unwrap();
    second.task.await.unwrap().unwrap();
}
