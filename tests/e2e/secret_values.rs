//! No Secret value ever leaves the Secret: after a job that succeeds and one that
//! fails, both on a credentials Secret with distinctive values, the values and the
//! jobs' report tokens are searched for in everything a user or another tenant can
//! read: the jobs' status, the namespace's Events, the operator's metrics, the logs
//! endpoint, the console's pages, the trainer pods' output and the operator's own log.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anneal_crds::finetunejob::JobPhase;
use anneal_e2e::operator_harness::{
    BUCKET, NAMESPACE, World, events_once, job_yaml, quickstart_lines,
};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};

const TRAINING: Duration = Duration::from_secs(240);
const ACCESS_KEY: &str = "AKIADISTINCTIVE7Q2X";
const SECRET_KEY: &str = "sEcReT-dIsTiNcTiVe-9f3a1c77";

/// Everything the operator logs in this process, at debug level.
fn operator_log() -> Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        tracing_subscriber::fmt()
            .with_env_filter("debug")
            .with_ansi(false)
            .with_writer(move || Sink(sink.clone()))
            .init();
        log
    })
    .clone()
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_secret_value_appears_where_users_read() {
    let log = operator_log();
    let world = World::start(&quickstart_lines(24)).await;
    let operator = world.start_operator(None).await;

    // The team's own credentials Secret: the test server's endpoint, distinctive keys.
    let endpoint = world
        .moto
        .settings()
        .into_iter()
        .find(|(key, _)| *key == "AWS_ENDPOINT_URL")
        .unwrap()
        .1;
    let secrets: Api<Secret> = Api::namespaced(world.client(), NAMESPACE);
    let team = Secret {
        metadata: ObjectMeta {
            name: Some("team-creds".to_owned()),
            ..ObjectMeta::default()
        },
        data: Some(
            [
                ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
                ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
                ("AWS_REGION", "us-east-1"),
                ("AWS_ENDPOINT_URL", endpoint.as_str()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), ByteString(v.as_bytes().to_vec())))
            .collect(),
        ),
        ..Secret::default()
    };
    secrets.create(&PostParams::default(), &team).await.unwrap();

    let output =
        format!("  output: {{uri: \"s3://{BUCKET}/runs\", credentialsSecret: team-creds}}\n");
    world
        .apply(&format!("{}{output}", job_yaml("fine", 1, 2, "")))
        .await;
    // A model that is not there: the trainer fails, in its own words.
    let broken = job_yaml("broken", 1, 2, "").replace(
        &format!("s3://{BUCKET}/models/anneal-tiny"),
        &format!("s3://{BUCKET}/models/not-there"),
    );
    assert!(broken.contains("not-there"));
    world.apply(&format!("{broken}{output}")).await;

    let mut tokens = Vec::new();
    for (name, phase) in [("fine", JobPhase::Succeeded), ("broken", JobPhase::Failed)] {
        world
            .wait_for(name, TRAINING, "finished", |s| s.phase == Some(phase))
            .await;
        tokens.push(world.report_token(name).await);
    }

    // Everything readable, by where it was read.
    let mut places: Vec<(String, String)> = Vec::new();
    for name in ["fine", "broken"] {
        let job = world.job(name).await;
        places.push((
            format!("FineTuneJob {name}"),
            serde_json::to_string(&job).unwrap(),
        ));
    }
    for (name, last) in [("fine", "Succeeded"), ("broken", "Failed")] {
        let events = events_once(&world.client(), NAMESPACE, name, |events| {
            events.iter().any(|e| e.reason.as_deref() == Some(last))
        })
        .await;
        assert!(events.len() >= 2, "{name}: {} events", events.len());
        places.push((
            format!("Events of {name}"),
            serde_json::to_string(&events).unwrap(),
        ));
    }
    let metrics = reqwest::get(format!("{}/metrics", operator.health_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    places.push(("/metrics".to_owned(), metrics));
    for (name, token) in ["fine", "broken"].into_iter().zip(&tokens) {
        let logs = reqwest::Client::new()
            .get(format!(
                "{}/v1/jobs/{NAMESPACE}/{name}/logs",
                operator.report_url
            ))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        // The broken trainer fails before its first report; the pod's output has it.
        assert!(
            name == "broken" || !logs.is_empty(),
            "{name} logged nothing"
        );
        places.push((format!("logs of {name}"), logs));
        let pod = std::fs::read_to_string(
            world
                .pod_dir(&format!("{name}-trainer-0"))
                .join("output.log"),
        )
        .unwrap();
        places.push((format!("pod output of {name}"), pod));
    }
    // The console's pages: the list, and each job's (its run's history read from
    // storage with the team's Secret).
    let console = |path: String| {
        let url = format!("{}{path}", operator.console_url);
        async move { reqwest::get(url).await.unwrap().text().await.unwrap() }
    };
    let list = console("/".to_owned()).await;
    assert!(list.contains(&format!("/jobs/{NAMESPACE}/fine")), "{list}");
    places.push(("the console's jobs list".to_owned(), list));
    for name in ["fine", "broken"] {
        let page = console(format!("/jobs/{NAMESPACE}/{name}")).await;
        assert!(page.contains("credentialsSecret: team-creds"), "{page}");
        assert!(
            name == "broken" || page.contains("train-point"),
            "the fine job's loss history: {page}"
        );
        places.push((format!("the console's page of {name}"), page));
    }
    operator.stop().await;
    let operator_log = String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
    assert!(
        operator_log.contains("fine"),
        "the operator's log was captured"
    );
    places.push(("the operator's log".to_owned(), operator_log));

    let broken_status = serde_json::to_string(&world.job("broken").await.status).unwrap();
    assert!(
        broken_status.contains("not-there"),
        "the failure is explained: {broken_status}"
    );
    for (place, text) in &places {
        for (what, value) in [("access key", ACCESS_KEY), ("secret key", SECRET_KEY)]
            .into_iter()
            .chain(tokens.iter().map(|t| ("report token", t.as_str())))
        {
            assert!(!text.contains(value), "the {what} appears in {place}");
        }
    }
}
