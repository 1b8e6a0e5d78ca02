//! End-to-end: a ModelEvaluation applied beside the FineTuneJob it compares, the
//! operator in-process, pods run as real `trainer` processes by the fake kubelet, and
//! the data, runs and report in a real S3-compatible server (moto). The evaluation
//! waits for the job to succeed, then its pod compares the job's final adapter with
//! the base model on held-out questions, and the scores reach the status.

use std::time::{Duration, Instant};

use anneal_crds::modelevaluation::{EvaluationPhase, ModelEvaluation, ModelEvaluationStatus};
use anneal_e2e::operator_harness::{
    BUCKET, NAMESPACE, World, events_once, job_yaml, page_text, quickstart_lines, repo,
};
use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::api::PostParams;

const TRAINING: Duration = Duration::from_secs(240);

fn evaluation_yaml() -> String {
    format!(
        r#"apiVersion: anneal.dev/v1alpha1
kind: ModelEvaluation
metadata: {{name: house-style, namespace: {NAMESPACE}}}
spec:
  models:
    - {{name: base, baseModel: {{name: anneal-tiny, source: "s3://{BUCKET}/models/anneal-tiny"}}}}
    - {{name: tuned, fineTuneJob: {{name: story}}}}
  dataset: {{uri: "s3://{BUCKET}/data/held-out.jsonl"}}
  metrics:
    - regex: {{pattern: "^Good question!"}}
    - rougeL: {{}}
    - referenceLoss: {{}}
  generation: {{temperature: 0, maxTokens: 48}}
  resources: {{gpus: 0}}
"#
    )
}

async fn evaluation(world: &World) -> ModelEvaluation {
    let api: Api<ModelEvaluation> = Api::namespaced(world.client(), NAMESPACE);
    api.get("house-style").await.unwrap()
}

/// Polls the evaluation until `done` holds for its status.
async fn wait_for(
    world: &World,
    what: &str,
    done: impl Fn(&ModelEvaluationStatus) -> bool,
) -> ModelEvaluationStatus {
    let started = Instant::now();
    loop {
        let status = evaluation(world).await.status.unwrap_or_default();
        if done(&status) {
            return status;
        }
        assert!(
            started.elapsed() < 2 * TRAINING,
            "not {what}; status:\n{}\nevaluation pod:\n{}",
            serde_json::to_string_pretty(&status).unwrap(),
            world.kubelet.logs("house-style-evaluate-0")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_evaluation_waits_for_its_job_then_scores_the_adapter_against_the_base() {
    let world = World::start(&quickstart_lines(24)).await;
    let held_out: String =
        std::fs::read_to_string(repo().join("examples/quickstart/house-style-heldout.jsonl"))
            .unwrap()
            .lines()
            .take(6)
            .map(|line| format!("{line}\n"))
            .collect();
    let (settings, uri) = (world.storage_settings(), format!("s3://{BUCKET}/data"));
    tokio::task::spawn_blocking(move || {
        anneal_crds::storage::Storage::open_with(&uri, settings)
            .unwrap()
            .put("held-out.jsonl", held_out.into_bytes())
            .unwrap();
    })
    .await
    .unwrap();
    let operator = world.start_operator(None).await;

    // Applied before the job it names: it waits, and says for what.
    let created: ModelEvaluation = serde_yaml_ng::from_str(&evaluation_yaml()).unwrap();
    let api: Api<ModelEvaluation> = Api::namespaced(world.client(), NAMESPACE);
    let created = api.create(&PostParams::default(), &created).await.unwrap();
    let uid = created.metadata.uid.clone().unwrap();
    let waiting = wait_for(&world, "Pending", |s| {
        s.phase == Some(EvaluationPhase::Pending)
    })
    .await;
    assert_eq!(
        waiting.message.as_deref(),
        Some("waiting for FineTuneJob story, which does not exist")
    );
    let job = world.apply(&job_yaml("story", 1, 2, "")).await;
    let job_uid = job.metadata.uid.clone().unwrap();

    let done = wait_for(&world, "Succeeded or Failed", |s| {
        matches!(
            s.phase,
            Some(EvaluationPhase::Succeeded | EvaluationPhase::Failed)
        )
    })
    .await;
    assert_eq!(
        done.phase,
        Some(EvaluationPhase::Succeeded),
        "{}\n{}",
        serde_json::to_string_pretty(&done).unwrap(),
        world.kubelet.logs("house-style-evaluate-0")
    );
    // The pod evaluated the job's own run, named by the operator.
    let jobs: Api<Job> = Api::namespaced(world.client(), NAMESPACE);
    let pod_job = jobs.get("house-style-evaluate").await.unwrap();
    let args = pod_job.spec.unwrap().template.spec.unwrap().containers[0]
        .args
        .clone()
        .unwrap();
    let run = format!("s3://{BUCKET}/runs/{NAMESPACE}/story/{job_uid}");
    assert!(args.contains(&format!("story={run}")), "{args:?}");

    // Both models' 6 answers, counted from the pod's progress file.
    let progress = done.progress.clone().unwrap();
    assert_eq!((progress.answered, progress.total), (12, 12));
    // Every model's scores, with intervals, and the best, in the status.
    let models: Vec<&str> = done.results.iter().map(|r| r.model.as_str()).collect();
    assert_eq!(models, ["base", "tuned"]);
    for result in &done.results {
        let names: Vec<&str> = result.metrics.iter().map(|m| m.metric.as_str()).collect();
        assert_eq!(
            names,
            [
                "regex /^Good question!/",
                "rougeL",
                "referenceLoss",
                "perplexity"
            ]
        );
        for metric in &result.metrics {
            assert!(
                metric.low <= metric.score && metric.score <= metric.high,
                "{metric:?}"
            );
        }
    }
    // A job that trained on the house style finds its references likelier.
    let loss = |m: usize| done.results[m].metrics[2].score;
    assert!(loss(1) < loss(0), "tuned {} vs base {}", loss(1), loss(0));
    let best = done.best.clone().unwrap();
    assert_eq!(best.metric, "regex /^Good question!/");
    let report = format!("s3://{BUCKET}/runs/{NAMESPACE}/house-style/{uid}");
    assert_eq!(done.report_uri.as_deref(), Some(report.as_str()));
    let page = world.read_object(&report, "report.html").await.unwrap();
    assert!(String::from_utf8_lossy(&page).contains("<td class=\"ref\">"));
    assert!(
        world
            .read_object(&report, "answers/tuned.json")
            .await
            .is_some()
    );

    let events = events_once(&world.client(), NAMESPACE, "house-style", |events| {
        events
            .iter()
            .any(|e| e.reason.as_deref() == Some("Succeeded"))
    })
    .await;
    let reasons: Vec<&str> = events.iter().filter_map(|e| e.reason.as_deref()).collect();
    assert!(
        reasons.contains(&"Pending") && reasons.contains(&"Running"),
        "{reasons:?}"
    );

    // The console compares the models, and shows the answers side by side.
    let console = &operator.console_url;
    let list = page_text(format!("{console}/evaluations")).await;
    assert!(
        list.contains(&format!(r#"href="/evaluations/{NAMESPACE}/house-style""#)),
        "{list}"
    );
    assert!(list.contains("Succeeded"), "{list}");
    let page = page_text(format!("{console}/evaluations/{NAMESPACE}/house-style")).await;
    for result in &done.results {
        let cell = format!(
            "{:.4} <span class=\"muted\">[{:.4}, {:.4}]</span>",
            result.metrics[0].score, result.metrics[0].low, result.metrics[0].high
        );
        assert!(page.contains(&cell), "{} {cell} in {page}", result.model);
    }
    assert!(
        page.contains(&format!("<tr class=\"best\"><th>{}</th>", best.model)),
        "{page}"
    );
    // Six held-out prompts, each with both models' answers.
    assert_eq!(
        page.matches("<td class=\"answer\">").count(),
        6 * 4,
        "{page}"
    );
    assert!(!page.contains("Not read:"), "{page}");

    // Done for this spec: a later reconcile changes nothing.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(evaluation(&world).await.status.unwrap(), done);
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_evaluation_that_cannot_run_fails_with_the_pods_reason() {
    let world = World::start(&quickstart_lines(4)).await;
    let operator = world.start_operator(None).await;
    let yaml = evaluation_yaml()
        .replace("- {name: tuned, fineTuneJob: {name: story}}", "- {name: again, baseModel: {name: anneal-tiny, source: \"s3://anneal-e2e/models/anneal-tiny\"}}")
        .replace("data/held-out.jsonl", "data/missing.jsonl");
    assert!(yaml.contains("missing.jsonl") && !yaml.contains("fineTuneJob"));
    // A Job of that name that is someone else's is never taken over: the evaluation
    // waits until it goes.
    let jobs: Api<Job> = Api::namespaced(world.client(), NAMESPACE);
    let stranger: Job = serde_json::from_value(serde_json::json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "house-style-evaluate"},
        "spec": {"suspend": true, "template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "other", "image": "busybox"}]}}}
    }))
    .unwrap();
    jobs.create(&PostParams::default(), &stranger)
        .await
        .unwrap();
    let created: ModelEvaluation = serde_yaml_ng::from_str(&yaml).unwrap();
    let api: Api<ModelEvaluation> = Api::namespaced(world.client(), NAMESPACE);
    api.create(&PostParams::default(), &created).await.unwrap();
    let waiting = wait_for(&world, "Pending", |s| {
        s.phase == Some(EvaluationPhase::Pending)
    })
    .await;
    assert_eq!(
        waiting.message.as_deref(),
        Some(
            "waiting for the Job house-style-evaluate, which does not belong to this ModelEvaluation, to go"
        )
    );
    jobs.delete("house-style-evaluate", &Default::default())
        .await
        .unwrap();

    let failed = wait_for(&world, "Failed", |s| {
        s.phase == Some(EvaluationPhase::Failed)
    })
    .await;
    let message = failed.message.unwrap();
    // The trainer's own words (exit 2: not retried), then the Job's rule.
    assert!(
        message.starts_with("exit code 2: trainer evaluate: spec.dataset.uri")
            && message.contains("missing.jsonl")
            && message.ends_with("matching FailJob rule"),
        "{message}"
    );
    let condition = failed
        .conditions
        .iter()
        .find(|c| c.type_ == "Failed")
        .unwrap();
    assert_eq!(condition.reason, "EvaluationFailed");
    operator.stop().await;
}
