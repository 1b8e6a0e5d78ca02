//! The report endpoint end to end over its router, with a fake cluster: auth,
//! idempotence, coalesced status writes, milestones, logs and job re-creation. The
//! hostile posts an attacker in the cluster would make are in `hostile_posts`.

use std::time::Duration;

use anneal_crds::events::{EventBody, LogLevel, TrainerEvent};
use anneal_crds::finetunejob::{CheckpointStatus, JobPhase, JobResult, Metrics};
use axum::Router;
use axum::body::Body;
use futures_util::StreamExt;
use http::{Request, StatusCode};
use serde_json::{Value, json};
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tower::ServiceExt;

use super::fake_cluster::FakeCluster;
use super::{Milestone, ReportSettings, ReportState, ReportTarget, ReportedStatus, report_router};
use crate::metrics::Metrics as OperatorMetrics;

const EVENTS: &str = "/v1/jobs/ns/job/events";
const LOGS: &str = "/v1/jobs/ns/job/logs";

pub(super) fn setup_with(
    settings: ReportSettings,
) -> (FakeCluster, ReportState<FakeCluster>, Router) {
    let cluster = FakeCluster::default();
    let state = ReportState::with_settings(cluster.clone(), OperatorMetrics::new(), settings);
    admit(&state, "uid-1", "token-1");
    let router = report_router(state.clone());
    (cluster, state, router)
}

fn setup(flush_interval: Duration) -> (FakeCluster, ReportState<FakeCluster>, Router) {
    setup_with(ReportSettings {
        flush_interval,
        ..ReportSettings::default()
    })
}

/// What the controller does when it starts job ns/job's trainer.
pub(super) fn admit(state: &ReportState<FakeCluster>, uid: &str, token: &str) {
    let target = ReportTarget {
        uid: uid.into(),
        token: token.into(),
        run_prefix: "s3://b".into(),
        reported: ReportedStatus::default(),
    };
    state.admit_job("ns", "job", target);
}

pub(super) fn event(seq: u64, body: EventBody) -> Value {
    serde_json::to_value(TrainerEvent {
        seq,
        time: "2026-11-23T06:00:00Z".into(),
        body,
    })
    .unwrap()
}

fn log(seq: u64, level: LogLevel, message: &str) -> Value {
    event(
        seq,
        EventBody::Log {
            level,
            message: message.into(),
        },
    )
}

pub(super) fn train_loss(seq: u64, loss: f64) -> Value {
    event(
        seq,
        EventBody::Metrics {
            step: seq,
            epoch: seq as f64 / 10.0,
            metrics: Metrics {
                train_loss: Some(loss),
                ..Metrics::default()
            },
        },
    )
}

pub(super) fn phase(seq: u64, phase: JobPhase, result: Option<JobResult>) -> Value {
    event(
        seq,
        EventBody::Phase {
            phase,
            message: None,
            result,
        },
    )
}

fn checkpoint(seq: u64, name: &str) -> Value {
    event(
        seq,
        EventBody::Checkpoint(CheckpointStatus {
            name: name.into(),
            step: seq,
            epoch: 1.0,
            uri: format!("s3://b/{name}"),
            valid_loss: Some(1.25),
            evaluation: Vec::new(),
            samples: vec![],
        }),
    )
}

pub(super) async fn post_raw(
    router: &Router,
    authorization: Option<&str>,
    body: String,
) -> (StatusCode, Value) {
    let mut request = Request::post(EVENTS).header("content-type", "application/json");
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, serde_json::from_slice(&bytes).unwrap())
}

pub(super) async fn post(router: &Router, token: &str, body: Value) -> (StatusCode, Value) {
    post_raw(router, Some(&format!("Bearer {token}")), body.to_string()).await
}

/// A GET with job ns/job's first token.
async fn get_text(router: &Router, uri: &str) -> (StatusCode, String) {
    get_text_with(router, uri, Some("token-1")).await
}

pub(super) async fn get_text_with(
    router: &Router,
    uri: &str,
    token: Option<&str>,
) -> (StatusCode, String) {
    let mut request = Request::get(uri);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

pub(super) fn counter(state: &ReportState<FakeCluster>, name: &str, label: &str) -> bool {
    state
        .metrics()
        .render()
        .lines()
        .any(|line| line.starts_with(name) && line.contains(label))
}

#[tokio::test]
async fn posts_without_the_right_token_touch_nothing() {
    let (cluster, state, router) = setup(Duration::from_millis(50));
    let body = json!([phase(1, JobPhase::Running, None), train_loss(2, 1.0)]).to_string();
    for authorization in [
        None,
        Some("Bearer wrong"),
        Some("Basic token-1"),
        Some("Bearer "),
    ] {
        let (status, answer) = post_raw(&router, authorization, body.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{authorization:?}");
        assert!(answer["error"].is_string(), "{answer}");
    }
    assert_eq!(state.flush_all().await.unwrap(), 0);
    assert!(cluster.patches().is_empty());
    assert!(cluster.milestones().is_empty());
    assert_eq!(
        state.reported_status("ns", "job"),
        Some(ReportedStatus::default())
    );
    assert!(counter(
        &state,
        "anneal_report_rejected_total",
        r#"reason="unauthorized"} 4"#
    ));
    assert!(
        !state
            .metrics()
            .render()
            .contains("anneal_report_events_total{")
    );
}

#[tokio::test]
async fn unknown_jobs_and_wrong_tokens_get_one_answer_and_malformed_bodies_are_400() {
    let (_cluster, state, router) = setup(Duration::from_millis(50));
    let mut answers = Vec::new();
    for (path, token) in [
        ("/v1/jobs/ns/nope/events", "token-1"),
        ("/v1/jobs/other/job/events", "token-1"),
        (EVENTS, "token-2"),
    ] {
        let response = router
            .clone()
            .oneshot(
                Request::post(path)
                    .header("authorization", format!("Bearer {token}"))
                    .body(Body::from(log(1, LogLevel::Info, "x").to_string()))
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        answers.push((status, body));
    }
    assert_eq!(answers[0].0, StatusCode::UNAUTHORIZED);
    assert!(
        answers.iter().all(|answer| *answer == answers[0]),
        "an unknown job must look like a wrong token: {answers:?}"
    );

    let (status, answer) = post_raw(&router, Some("Bearer token-1"), "{not json".into()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let problem = answer["error"].as_str().unwrap();
    assert!(
        problem.starts_with("body is not an event: ") && problem.contains("line 1 column 2"),
        "{problem}"
    );

    let batch = json!([
        log(1, LogLevel::Info, "fine"),
        {"seq": 2, "time": "t", "type": "bogus"}
    ]);
    let (status, answer) = post(&router, "token-1", batch).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let problem = answer["error"].as_str().unwrap();
    assert!(
        problem.starts_with("body is not a batch of events: ") && problem.contains("bogus"),
        "{problem}"
    );
    // A batch is taken whole or not at all.
    assert_eq!(
        state.reported_status("ns", "job").unwrap().last_event_seq,
        None
    );
    assert!(counter(
        &state,
        "anneal_report_rejected_total",
        r#"reason="malformed"} 2"#
    ));
    assert!(counter(
        &state,
        "anneal_report_rejected_total",
        r#"reason="unauthorized"} 3"#
    ));
}

#[tokio::test]
async fn repeated_posts_are_accepted_once() {
    let (cluster, state, router) = setup(Duration::from_millis(50));
    let batch = json!([
        phase(1, JobPhase::Running, None),
        train_loss(2, 2.0),
        checkpoint(3, "ckpt-3")
    ]);
    let (status, answer) = post(&router, "token-1", batch.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer, json!({"accepted": 3, "refused": 0, "lastSeq": 3}));

    let (status, answer) = post(&router, "token-1", batch).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer, json!({"accepted": 0, "refused": 0, "lastSeq": 3}));
    let (_, answer) = post(&router, "token-1", train_loss(2, 9.0)).await;
    assert_eq!(answer, json!({"accepted": 0, "refused": 0, "lastSeq": 3}));

    assert_eq!(cluster.milestones().len(), 2, "{:?}", cluster.milestones());
    let reported = state.reported_status("ns", "job").unwrap();
    assert_eq!(reported.metrics.unwrap().train_loss, Some(2.0));
    assert_eq!(reported.checkpoints.len(), 1);
    assert!(counter(
        &state,
        "anneal_report_events_total",
        r#"type="metrics"} 1"#
    ));
    // Answered once written: nothing is left to write, and the patch has it all.
    assert_eq!(state.flush_all().await.unwrap(), 0);
    let patches = cluster.patches();
    assert_eq!(patches.last().unwrap().2["status"]["lastEventSeq"], 3);
}

#[tokio::test]
async fn forty_events_in_a_second_and_a_half_make_at_most_two_patches() {
    let (cluster, state, router) = setup(Duration::from_secs(1));
    let flusher = state.spawn_flusher();
    let start = Instant::now();
    // Each post is answered once its events are written, so they overlap as a
    // trainer's would not; the writes stay one a second all the same.
    let mut posts = Vec::new();
    for seq in 1..=40u64 {
        sleep_until(start + Duration::from_millis(37) * (seq as u32 - 1)).await;
        let router = router.clone();
        posts.push(tokio::spawn(async move {
            post(&router, "token-1", train_loss(seq, 3.0 - seq as f64 / 20.0)).await
        }));
    }
    for posted in posts {
        assert_eq!(posted.await.unwrap().0, StatusCode::OK);
    }
    // The newest values land within an interval and a flusher tick of the last post.
    let deadline = Instant::now() + Duration::from_secs(3);
    while cluster
        .patches()
        .last()
        .is_none_or(|(_, _, patch)| patch["status"]["lastEventSeq"] != 40)
    {
        assert!(Instant::now() < deadline, "no patch with the newest event");
        sleep(Duration::from_millis(20)).await;
    }
    // And nothing more follows.
    sleep(Duration::from_millis(1300)).await;
    flusher.abort();

    let patches = cluster.patches();
    assert!(patches.len() <= 2, "{} patches: {patches:?}", patches.len());
    for pair in patches.windows(2) {
        assert!(
            pair[1].0 - pair[0].0 >= Duration::from_secs(1),
            "patches too close"
        );
    }
    let (_, job, last) = patches.last().unwrap();
    assert_eq!(job, "ns/job");
    assert_eq!(last["metadata"]["uid"], "uid-1");
    assert_eq!(last["status"]["metrics"]["trainLoss"], json!(1.0));
    assert!(last["status"].get("phase").is_none() && last["status"].get("conditions").is_none());
    assert!(counter(
        &state,
        "anneal_status_patches_total",
        r#"result="ok"}"#
    ));
    assert!(counter(
        &state,
        "anneal_job_train_loss",
        r#"namespace="ns"} 1"#
    ));
}

#[tokio::test]
async fn a_failed_patch_is_retried_with_the_newest_values() {
    let (cluster, state, router) = setup(Duration::from_millis(100));
    let flusher = state.spawn_flusher();
    cluster.fail_patches(true);
    // Not written, so not acknowledged: the trainer is told to post it again.
    let (status, _) = post(&router, "token-1", train_loss(1, 2.0)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(counter(
        &state,
        "anneal_status_patches_total",
        r#"result="error"}"#
    ));
    assert!(counter(
        &state,
        "anneal_report_rejected_total",
        r#"reason="not_recorded"} 1"#
    ));
    cluster.fail_patches(false);
    let (status, answer) = post(
        &router,
        "token-1",
        json!([train_loss(1, 2.0), train_loss(2, 1.5)]),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer, json!({"accepted": 1, "refused": 0, "lastSeq": 2}));
    flusher.abort();
    let patches = cluster.patches();
    assert_eq!(patches.len(), 1, "{patches:?}");
    assert_eq!(patches[0].2["status"]["lastEventSeq"], 2);
}

#[tokio::test]
async fn milestones_become_events_at_once_and_flush_now_writes_at_once() {
    let (cluster, state, router) = setup(Duration::from_millis(10));
    let result = JobResult {
        model_id: "ft:tiny:job:ckpt-3".into(),
        uri: "s3://b/final".into(),
        stopped_early: None,
    };
    let batch = json!([
        phase(1, JobPhase::Running, None),
        train_loss(2, 2.0),
        checkpoint(3, "ckpt-3"),
        log(4, LogLevel::Warn, "dropped 2 samples"),
        phase(5, JobPhase::Succeeded, Some(result)),
    ]);
    post(&router, "token-1", batch).await;
    let milestones: Vec<Milestone> = cluster.milestones().into_iter().map(|(_, m)| m).collect();
    let reasons: Vec<&str> = milestones.iter().map(|m| m.reason.as_str()).collect();
    assert_eq!(
        reasons,
        [
            Milestone::TRAINING_STARTED,
            Milestone::CHECKPOINT_SAVED,
            Milestone::TRAINER_WARNING,
            Milestone::TRAINING_SUCCEEDED
        ]
    );
    assert!(milestones[3].message.contains("ft:tiny:job:ckpt-3"));
    assert!(milestones[2].warning && !milestones[3].warning);

    // No flusher runs: the post wrote the status before it was answered.
    assert!(!state.flush_now("ns", "job").await.unwrap(), "nothing new");
    let patches = cluster.patches();
    assert_eq!(patches.len(), 1);
    let status = &patches[0].2["status"];
    assert_eq!(status["result"]["modelId"], "ft:tiny:job:ckpt-3");
    assert_eq!(status["checkpoints"][0]["name"], "ckpt-3");
}

#[tokio::test]
async fn logs_are_served_and_followed_until_the_run_ends() {
    let (_cluster, _state, router) = setup(Duration::from_millis(10));
    for (path, token) in [
        ("/v1/jobs/ns/nope/logs", Some("token-1")),
        (LOGS, None),
        (LOGS, Some("token-2")),
    ] {
        let (status, _) = get_text_with(&router, path, token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} {token:?}");
    }

    post(
        &router,
        "token-1",
        json!([
            log(1, LogLevel::Info, "first"),
            log(2, LogLevel::Warn, "second")
        ]),
    )
    .await;
    let (status, text) = get_text(&router, LOGS).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        text,
        "2026-11-23T06:00:00Z INFO first\n2026-11-23T06:00:00Z WARN second\n"
    );
    let (_, text) = get_text(&router, &format!("{LOGS}?tail=1")).await;
    assert_eq!(text, "2026-11-23T06:00:00Z WARN second\n");

    let response = router
        .clone()
        .oneshot(
            Request::get(format!("{LOGS}?follow=true&tail=1"))
                .header("authorization", "Bearer token-1")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; charset=utf-8"
    );
    let mut chunks = response.into_body().into_data_stream();
    let mut next = async || {
        let chunk = timeout(Duration::from_secs(5), chunks.next())
            .await
            .expect("a chunk or the end in time");
        chunk.map(|bytes| String::from_utf8(bytes.unwrap().to_vec()).unwrap())
    };
    assert_eq!(next().await.unwrap(), "2026-11-23T06:00:00Z WARN second\n");
    post(&router, "token-1", log(3, LogLevel::Info, "third")).await;
    assert_eq!(next().await.unwrap(), "2026-11-23T06:00:00Z INFO third\n");
    post(&router, "token-1", phase(4, JobPhase::Failed, None)).await;
    assert_eq!(
        next().await.unwrap(),
        "2026-11-23T06:00:00Z ERROR phase Failed\n"
    );
    assert_eq!(next().await, None, "the follow ends with the run");

    // Following a finished run returns what there is and ends.
    let (_, text) = get_text(&router, &format!("{LOGS}?follow=true&tail=2")).await;
    assert_eq!(
        text,
        "2026-11-23T06:00:00Z INFO third\n2026-11-23T06:00:00Z ERROR phase Failed\n"
    );
}

#[tokio::test]
async fn a_follow_started_before_the_first_post_waits_for_it() {
    let (_cluster, _state, router) = setup(Duration::from_millis(10));
    let response = router
        .clone()
        .oneshot(
            Request::get(format!("{LOGS}?follow=true"))
                .header("authorization", "Bearer token-1")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let reader = tokio::spawn(axum::body::to_bytes(response.into_body(), usize::MAX));
    post(
        &router,
        "token-1",
        json!([
            log(1, LogLevel::Info, "hello"),
            phase(2, JobPhase::Succeeded, None)
        ]),
    )
    .await;
    let text = timeout(Duration::from_secs(5), reader)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        String::from_utf8(text.to_vec()).unwrap(),
        "2026-11-23T06:00:00Z INFO hello\n2026-11-23T06:00:00Z INFO phase Succeeded\n"
    );
}

#[tokio::test]
async fn a_new_trainer_token_replaces_the_old_and_a_recreated_job_starts_over() {
    let (cluster, state, router) = setup(Duration::from_millis(10));
    let batch = json!([
        phase(1, JobPhase::Running, None),
        checkpoint(2, "ckpt-2"),
        train_loss(3, 2.0)
    ]);
    post(&router, "token-1", batch).await;

    // A new trainer Job of the same job: a new token, the folded state kept.
    admit(&state, "uid-1", "token-2");
    let (status, answer) = post(&router, "token-2", train_loss(4, 1.8)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer, json!({"accepted": 1, "refused": 0, "lastSeq": 4}));
    let (status, _) = post(&router, "token-1", train_loss(5, 1.7)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the old token is refused");

    // The job deleted and created again: a new uid, nothing of the old run kept.
    admit(&state, "uid-2", "token-3");
    let (status, answer) = post(&router, "token-3", phase(1, JobPhase::Running, None)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer, json!({"accepted": 1, "refused": 0, "lastSeq": 1}));
    let reported = state.reported_status("ns", "job").unwrap();
    assert!(reported.checkpoints.is_empty() && reported.metrics.is_none());
    let (_, logs) = get_text_with(&router, LOGS, Some("token-3")).await;
    assert_eq!(logs, "2026-11-23T06:00:00Z INFO phase Running\n");

    let patches = cluster.patches();
    let (_, _, patch) = patches.last().unwrap();
    assert_eq!(patch["metadata"]["uid"], "uid-2");
    assert_eq!(patch["status"], json!({"lastEventSeq": 1}));

    // The job ended: its token posts no more, and still reads the logs.
    state.close_job("ns", "job");
    let (status, _) = post(&router, "token-3", train_loss(2, 1.0)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, logs) = get_text_with(&router, LOGS, Some("token-3")).await;
    assert_eq!((status, logs.lines().count()), (StatusCode::OK, 1));

    // A deleted job's trainer is told so, and what was held for it is dropped.
    state.forget_job("ns", "job");
    assert_eq!(state.reported_status("ns", "job"), None);
}
