//! The report endpoint under the posts an attacker in the cluster would make: wrong
//! tokens with huge bodies, oversized and endless bodies with the right token, floods,
//! seqs that would freeze the status, URIs outside the job's run, and unbounded
//! checkpoint lists. Memory is measured as the bytes the endpoint reserved for bodies
//! and the bytes pulled from each body stream.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anneal_crds::events::EventBody;
use anneal_crds::finetunejob::{CheckpointStatus, JobPhase, JobResult};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use futures_util::stream;
use http::{Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;

use super::ReportSettings;
use super::post_limits::PostLimitSettings;
use super::tests::{counter, event, phase, post, setup_with, train_loss};

const EVENTS: &str = "/v1/jobs/ns/job/events";
const MIB: usize = 1024 * 1024;

fn settings(posts: PostLimitSettings) -> ReportSettings {
    ReportSettings {
        // Short: a post is answered once its events are written.
        flush_interval: Duration::from_millis(10),
        posts,
        ..ReportSettings::default()
    }
}

/// A body of `bytes` in 64 KiB chunks, made only as the server pulls them; `pulled`
/// counts what it pulled.
fn counted_body(bytes: usize, pulled: Arc<AtomicUsize>) -> Body {
    const CHUNK: usize = 64 * 1024;
    let chunks = stream::unfold(0usize, move |sent| {
        let pulled = pulled.clone();
        async move {
            (sent < bytes).then(|| {
                let size = CHUNK.min(bytes - sent);
                pulled.fetch_add(size, Ordering::SeqCst);
                (
                    Ok::<_, std::io::Error>(Bytes::from(vec![b' '; size])),
                    sent + size,
                )
            })
        }
    });
    Body::from_stream(chunks)
}

async fn send(router: &Router, request: Request<Body>) -> (StatusCode, http::HeaderMap) {
    let response = router.clone().oneshot(request).await.unwrap();
    (response.status(), response.headers().clone())
}

#[tokio::test]
async fn wrong_tokens_are_answered_before_a_byte_of_their_body_is_read() {
    let (cluster, state, router) = setup_with(settings(PostLimitSettings::default()));
    let pulled = Arc::new(AtomicUsize::new(0));
    // The probe that took the operator from 15 to 433 MB: 48 posts of 8 MiB.
    for index in 0..48 {
        let (path, token) = match index % 3 {
            0 => (EVENTS, "Bearer wrong"),
            1 => ("/v1/jobs/ns/other/events", "Bearer token-1"),
            _ => (EVENTS, "Basic token-1"),
        };
        let request = Request::post(path)
            .header("authorization", token)
            .header("content-length", 8 * MIB)
            .body(counted_body(8 * MIB, pulled.clone()))
            .unwrap();
        let (status, _) = send(&router, request).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "post {index}");
    }
    assert_eq!(pulled.load(Ordering::SeqCst), 0, "no body was read");
    assert_eq!(state.buffered_bytes_peak(), 0, "nothing was reserved");
    assert!(cluster.patches().is_empty() && cluster.milestones().is_empty());
    assert!(counter(
        &state,
        "anneal_report_rejected_total",
        r#"reason="unauthorized"} 48"#
    ));
}

#[tokio::test]
async fn oversized_bodies_are_refused_by_their_length_or_cut_off_at_the_limit() {
    let (_cluster, state, router) = setup_with(settings(PostLimitSettings::default()));
    let limit = PostLimitSettings::default().body_bytes_max;

    let pulled = Arc::new(AtomicUsize::new(0));
    let declared = Request::post(EVENTS)
        .header("authorization", "Bearer token-1")
        .header("content-length", 64 * MIB)
        .body(counted_body(64 * MIB, pulled.clone()))
        .unwrap();
    assert_eq!(
        send(&router, declared).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(
        pulled.load(Ordering::SeqCst),
        0,
        "refused by its declared length"
    );

    // No declared length (chunked): read up to the limit, then refused.
    let endless = Request::post(EVENTS)
        .header("authorization", "Bearer token-1")
        .body(counted_body(64 * MIB, pulled.clone()))
        .unwrap();
    assert_eq!(
        send(&router, endless).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    let read = pulled.load(Ordering::SeqCst);
    assert!(
        read <= limit + 64 * 1024,
        "read {read} bytes of a {limit}-byte limit"
    );
    assert!(state.buffered_bytes_peak() <= limit);
    assert!(counter(
        &state,
        "anneal_report_rejected_total",
        r#"reason="too_large"} 2"#
    ));
}

#[tokio::test]
async fn bodies_read_at_once_share_one_byte_budget() {
    let posts = PostLimitSettings {
        body_bytes_max: MIB,
        buffered_bytes_max: MIB,
        ..PostLimitSettings::default()
    };
    let (_cluster, state, router) = setup_with(settings(posts));
    // A post whose body stalls after its first chunk holds the whole budget.
    let (release, stalled) = tokio::sync::oneshot::channel::<()>();
    let first_chunk = stream::once(async { Ok::<_, std::io::Error>(Bytes::from_static(b"[")) });
    let rest = stream::once(async move {
        let _ = stalled.await;
        Ok::<_, std::io::Error>(Bytes::from_static(b"]"))
    });
    let slow = Request::post(EVENTS)
        .header("authorization", "Bearer token-1")
        .header("content-length", MIB)
        .body(Body::from_stream(futures_util::StreamExt::chain(
            first_chunk,
            rest,
        )))
        .unwrap();
    let holder = tokio::spawn(router.clone().oneshot(slow));
    tokio::time::sleep(Duration::from_millis(100)).await;

    let (status, headers) = send(
        &router,
        Request::post(EVENTS)
            .header("authorization", "Bearer token-1")
            .body(Body::from(train_loss(1, 1.0).to_string()))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(state.buffered_bytes_peak(), MIB);

    drop(release);
    holder.await.unwrap().unwrap();
    let (status, _) = post(&router, "token-1", train_loss(1, 1.0)).await;
    assert_eq!(status, StatusCode::OK, "the budget came back");
}

#[tokio::test]
async fn a_flood_is_told_to_wait_per_job_and_per_source() {
    let posts = PostLimitSettings {
        job_posts_per_second: 1,
        job_burst: 3,
        refused_per_second: 1,
        refused_burst: 2,
        ..PostLimitSettings::default()
    };
    let (_cluster, state, router) = setup_with(settings(posts));
    let mut statuses = Vec::new();
    for seq in 1..=5 {
        statuses.push(post(&router, "token-1", train_loss(seq, 1.0)).await.0);
    }
    assert_eq!(&statuses[..3], [StatusCode::OK; 3]);
    assert_eq!(&statuses[3..], [StatusCode::TOO_MANY_REQUESTS; 2]);

    let source: SocketAddr = "10.1.2.3:40000".parse().unwrap();
    let mut refused = Vec::new();
    for _ in 0..4 {
        let mut request = Request::post(EVENTS)
            .header("authorization", "Bearer guess")
            .body(Body::from("[]"))
            .unwrap();
        request.extensions_mut().insert(ConnectInfo(source));
        refused.push(send(&router, request).await.0);
    }
    assert_eq!(
        refused,
        [
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    assert!(counter(
        &state,
        "anneal_report_rejected_total",
        r#"reason="rate_limited"} 2"#
    ));
    assert!(counter(
        &state,
        "anneal_report_rejected_total",
        r#"reason="too_many_refusals"} 2"#
    ));
}

#[tokio::test]
async fn events_breaking_the_rules_are_refused_and_the_status_stays_live() {
    let (_cluster, state, router) = setup_with(settings(PostLimitSettings::default()));
    let elsewhere = JobResult {
        model_id: "ft:m:job:ckpt-1".into(),
        uri: "s3://someone-else/their-model".into(),
        stopped_early: None,
    };
    let batch = json!([
        event(
            u64::MAX,
            EventBody::Log {
                level: anneal_crds::events::LogLevel::Info,
                message: "freeze".into()
            }
        ),
        phase(1, JobPhase::Succeeded, Some(elsewhere)),
        train_loss(2, 1.5),
    ]);
    let (status, answer) = post(&router, "token-1", batch).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer, json!({"accepted": 1, "refused": 2, "lastSeq": 2}));
    let (_, answer) = post(&router, "token-1", train_loss(3, 1.25)).await;
    assert_eq!(
        answer,
        json!({"accepted": 1, "refused": 0, "lastSeq": 3}),
        "not frozen"
    );

    let reported = state.reported_status("ns", "job").unwrap();
    assert_eq!(
        reported.result, None,
        "a result outside the run is never taken"
    );
    assert_eq!(reported.metrics.unwrap().train_loss, Some(1.25));
    assert!(counter(
        &state,
        "anneal_report_events_refused_total",
        r#"reason="seq_jump"} 1"#
    ));
    assert!(counter(
        &state,
        "anneal_report_events_refused_total",
        r#"reason="uri_outside_run"} 1"#
    ));
}

#[tokio::test]
async fn unique_checkpoints_keep_the_status_and_its_patch_bounded() {
    let posts = PostLimitSettings {
        job_posts_per_second: 1000,
        job_burst: 1000,
        ..PostLimitSettings::default()
    };
    let (cluster, state, router) = setup_with(settings(posts));
    // The probe that grew each patch to 240 MB: 120 uniquely named checkpoints, here
    // each with ten 64 KiB samples (75 MiB posted in all).
    let sample = "x".repeat(64 * 1024);
    for step in 1..=120u64 {
        let checkpoint = CheckpointStatus {
            name: format!("ckpt-{step}"),
            step,
            epoch: 1.0,
            uri: format!("s3://b/checkpoints/ckpt-{step}"),
            valid_loss: Some(if step == 7 {
                0.5
            } else {
                1.0 + step as f64 / 100.0
            }),
            evaluation: Vec::new(),
            samples: vec![sample.clone(); 10],
        };
        let (status, answer) = post(
            &router,
            "token-1",
            event(step, EventBody::Checkpoint(checkpoint)),
        )
        .await;
        assert_eq!((status, &answer["accepted"]), (StatusCode::OK, &json!(1)));
    }
    let reported = state.reported_status("ns", "job").unwrap();
    let names: Vec<&str> = reported
        .checkpoints
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    let mut expected = vec!["ckpt-7".to_owned()];
    expected.extend((101..=120).map(|step| format!("ckpt-{step}")));
    assert_eq!(names, expected, "the newest 20 and the best");
    for checkpoint in &reported.checkpoints {
        assert_eq!(checkpoint.samples.len(), 8);
        assert!(checkpoint.samples.iter().all(|s| s.len() <= 2048));
    }

    // Every post was answered once written: the last patch holds them all.
    let patches = cluster.patches();
    let patch_bytes = serde_json::to_vec::<Value>(&patches.last().unwrap().2)
        .unwrap()
        .len();
    // 21 checkpoints x 8 samples x 2 KiB is 336 KiB; the API server takes 1.5 MiB.
    assert!(patch_bytes < 400 * 1024, "a patch of {patch_bytes} bytes");
    assert!(state.buffered_bytes_peak() <= PostLimitSettings::default().buffered_bytes_max);
}
