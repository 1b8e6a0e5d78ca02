//! End-to-end: a FineTuneJob applied to the fake API server, the operator in-process,
//! trainer pods run as real `trainer` processes by the fake kubelet, and all data in
//! a real S3-compatible server (moto). Each test is one user story.

use std::time::Duration;

use anneal_crds::finetunejob::JobPhase;
use anneal_e2e::operator_harness::{
    NAMESPACE, World, events_once, job_yaml, quickstart_lines, repo, trainer_binary,
};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Api;
use kube::api::ListParams;

const TRAINING: Duration = Duration::from_secs(240);

/// The (reason, note) of the Events about `name`, once one has reason `last` (the
/// Event a controller publishes after the status the test has just seen).
async fn events_for(world: &World, name: &str, last: &str) -> Vec<(String, String)> {
    events_once(&world.client(), NAMESPACE, name, |events| {
        events.iter().any(|e| e.reason.as_deref() == Some(last))
    })
    .await
    .into_iter()
    .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_trains_to_succeeded_with_progress_metrics_checkpoints_and_a_model_id() {
    let world = World::start(&quickstart_lines(24)).await;
    let operator = world.start_operator(None).await;
    let applied = world.apply(&job_yaml("story", 2, 2, "")).await;
    let uid = applied.metadata.uid.clone().unwrap();

    let running = world
        .wait_for("story", TRAINING, "running with progress", |s| {
            s.phase == Some(JobPhase::Running) && s.progress.is_some()
        })
        .await;
    assert!(running.status.unwrap().start_time.is_some());
    // The trainer's log lines are readable through the operator while it trains, with
    // the job's report token, as whoever may read the job's Secret reads it.
    let logs_url = format!("{}/v1/jobs/{NAMESPACE}/story/logs", operator.report_url);
    let anonymous = reqwest::get(&logs_url).await.unwrap();
    assert_eq!(anonymous.status(), reqwest::StatusCode::UNAUTHORIZED);
    let token = world.report_token("story").await;
    let logs = reqwest::Client::new()
        .get(&logs_url)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(logs.contains("step"), "{logs}");

    let done = world
        .wait_for("story", TRAINING, "Succeeded", |s| {
            s.phase == Some(JobPhase::Succeeded) && s.result.is_some()
        })
        .await;
    let status = done.status.unwrap();
    let progress = status.progress.unwrap();
    assert_eq!(progress.step, progress.total_steps);
    assert_eq!(progress.percent, 100);
    let metrics = status.metrics.unwrap();
    assert!(metrics.train_loss.unwrap() > 0.0);
    assert!(metrics.valid_loss.is_some());
    assert!(status.checkpoints.len() >= 2, "{:?}", status.checkpoints);
    let last = status.checkpoints.last().unwrap();
    assert_eq!(last.step, progress.total_steps);
    let result = status.result.unwrap();
    assert_eq!(
        result.model_id,
        format!("ft:anneal-tiny:story:{}", last.name)
    );
    let run = format!("s3://anneal-e2e/runs/{NAMESPACE}/story/{uid}");
    assert_eq!(result.uri, format!("{run}/final"));
    assert!(
        world
            .read_object(&format!("{run}/final"), "adapter_model.safetensors")
            .await
            .is_some()
    );
    assert!(status.completion_time.is_some());
    assert!(status.last_event_seq.unwrap() > 5);
    let conditions: Vec<(String, String)> = status
        .conditions
        .iter()
        .map(|c| (c.type_.clone(), c.status.clone()))
        .collect();
    for (type_, expected) in [
        ("Validated", "True"),
        ("Admitted", "True"),
        ("Running", "False"),
        ("Complete", "True"),
        ("Failed", "False"),
    ] {
        assert!(
            conditions.contains(&(type_.to_owned(), expected.to_owned())),
            "{type_}: {conditions:?}"
        );
    }
    // The trainer Job and the report Secret belong to the FineTuneJob.
    let trainer: Job = Api::namespaced(world.client(), NAMESPACE)
        .get("story-trainer")
        .await
        .unwrap();
    assert_eq!(trainer.metadata.owner_references.unwrap()[0].uid, uid);
    let secret: Secret = Api::namespaced(world.client(), NAMESPACE)
        .get("story-trainer")
        .await
        .unwrap();
    assert_eq!(secret.metadata.owner_references.unwrap()[0].uid, uid);

    // The operator's metrics carry the job's loss and the reconciles it ran.
    let metrics = reqwest::get(format!("{}/metrics", operator.health_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let train_loss = format!(
        "anneal_job_train_loss{{name=\"story\",namespace=\"{NAMESPACE}\"}} {}",
        metrics_value(status_train_loss(&world, "story").await)
    );
    assert!(
        metrics.contains(&train_loss),
        "{train_loss} not in\n{metrics}"
    );
    assert!(
        metrics.contains("anneal_reconciles_total{kind=\"FineTuneJob\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("anneal_report_events_total{type=\"checkpoint\"}"),
        "{metrics}"
    );

    let reasons: Vec<String> = events_for(&world, "story", "Succeeded")
        .await
        .into_iter()
        .map(|(r, _)| r)
        .collect();
    for reason in ["Validating", "Running", "CheckpointSaved", "Succeeded"] {
        assert!(
            reasons.iter().any(|r| r == reason),
            "{reason} not in {reasons:?}"
        );
    }
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bad_dataset_fails_validation_naming_the_line_before_any_pod() {
    let mut data = quickstart_lines(4);
    data.push_str("{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"user\", \"content\": \"again\"}]}\n");
    let world = World::start(&data).await;
    let operator = world.start_operator(None).await;
    world.apply(&job_yaml("bad-data", 1, 2, "")).await;
    let failed = world
        .wait_for("bad-data", Duration::from_secs(30), "Failed", |s| {
            s.phase == Some(JobPhase::Failed)
        })
        .await;
    let status = failed.status.unwrap();
    let message = status.message.unwrap();
    assert!(message.contains("line 5"), "{message}");
    let validated = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Validated")
        .unwrap();
    assert_eq!(
        (validated.status.as_str(), validated.reason.as_str()),
        ("False", "InvalidDataset")
    );
    let jobs: Api<Job> = Api::namespaced(world.client(), NAMESPACE);
    assert!(jobs.get_opt("bad-data-trainer").await.unwrap().is_none());
    let pods: Api<Pod> = Api::namespaced(world.client(), NAMESPACE);
    assert!(
        pods.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let events = events_for(&world, "bad-data", "Failed").await;
    assert!(
        events
            .iter()
            .any(|(reason, note)| reason == "Failed" && note.contains("line 5")),
        "{events:?}"
    );
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_image_folder_that_breaks_a_rule_fails_validation_naming_the_file_before_any_pod() {
    use anneal_e2e::operator_harness::{BUCKET, image_job_yaml, repo};
    let world = World::start(&quickstart_lines(4)).await;
    let operator = world.start_operator(None).await;
    let folder = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(repo().join("examples/quickstart/sks-ball")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, folder.path().join(path.file_name().unwrap())).unwrap();
    }
    std::fs::write(folder.path().join("ball-6.jpg"), b"not a picture").unwrap();
    std::fs::remove_file(folder.path().join("ball-2.txt")).unwrap();
    let images = format!("s3://{BUCKET}/data/bad-balls/");
    world
        .upload(folder.path().to_path_buf(), images.clone())
        .await;
    // No trigger word: the picture without a caption has nothing to be trained on.
    let job = image_job_yaml("bad-balls", &images, 1, 1).replace("    triggerWord: sks\n", "");
    world.apply(&job).await;
    let failed = world
        .wait_for("bad-balls", Duration::from_secs(60), "Failed", |s| {
            s.phase == Some(JobPhase::Failed)
        })
        .await;
    let status = failed.status.unwrap();
    let validated = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Validated")
        .unwrap();
    assert_eq!(
        (validated.status.as_str(), validated.reason.as_str()),
        ("False", "InvalidDataset")
    );
    assert_eq!(
        status.message.unwrap(),
        format!(
            "invalid dataset spec.dataset.images {images}: ball-6.jpg: is not a JPEG, PNG or WebP image; \
             ball-2.png: has no caption (a .txt file of the same name) and the job sets no \
             hyperparameters.triggerWord to train it on"
        )
    );
    let jobs: Api<Job> = Api::namespaced(world.client(), NAMESPACE);
    assert!(jobs.get_opt("bad-balls-trainer").await.unwrap().is_none());
    operator.stop().await;
}

async fn status_train_loss(world: &World, name: &str) -> f64 {
    let status = world.job(name).await.status.unwrap();
    status.metrics.unwrap().train_loss.unwrap()
}

/// A value as Prometheus' text format writes it.
fn metrics_value(value: f64) -> String {
    format!("{value}")
}

/// Waits for the first checkpoint of a longer job, so a test can interrupt it mid-run.
async fn first_checkpoint(world: &World, name: &str) {
    world
        .wait_for(name, TRAINING, "past its first checkpoint", |s| {
            s.phase == Some(JobPhase::Running) && !s.checkpoints.is_empty()
        })
        .await;
}

async fn succeeded(world: &World, name: &str) -> anneal_crds::finetunejob::FineTuneJobStatus {
    let status = world
        .wait_for(name, TRAINING, "Succeeded", |s| {
            (s.phase == Some(JobPhase::Succeeded) && s.result.is_some())
                || s.phase == Some(JobPhase::Failed)
        })
        .await
        .status
        .unwrap();
    assert_eq!(
        status.phase,
        Some(JobPhase::Succeeded),
        "{name}: {}",
        serde_json::to_string_pretty(&status).unwrap()
    );
    status
}

/// The status of job `name` once it has failed.
async fn failed(world: &World, name: &str) -> anneal_crds::finetunejob::FineTuneJobStatus {
    world
        .wait_for(name, TRAINING, "Failed", |s| {
            s.phase == Some(JobPhase::Failed)
        })
        .await
        .status
        .unwrap()
}

/// The reason of a failed job's `Failed` condition.
fn failed_reason(status: &anneal_crds::finetunejob::FineTuneJobStatus) -> &str {
    let failed = status.conditions.iter().find(|c| c.type_ == "Failed");
    &failed.expect("a Failed condition").reason
}

fn pod_output(world: &World, pod: &str) -> String {
    std::fs::read_to_string(world.pod_dir(pod).join("output.log")).unwrap_or_default()
}

async fn trainer_job(world: &World, name: &str) -> Option<Job> {
    let jobs: Api<Job> = Api::namespaced(world.client(), NAMESPACE);
    jobs.get_opt(&format!("{name}-trainer")).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_evicted_trainer_resumes_from_its_last_checkpoint_without_using_a_retry() {
    let world = World::start(&quickstart_lines(96)).await;
    let operator = world.start_operator(None).await;
    world.apply(&job_yaml("evict", 2, 2, "")).await;
    first_checkpoint(&world, "evict").await;
    world.kubelet.evict("evict-trainer-0").await;
    let status = succeeded(&world, "evict").await;
    assert!(
        pod_output(&world, "evict-trainer-1").contains("resumed from ckpt-"),
        "{}",
        pod_output(&world, "evict-trainer-1")
    );
    let job_status = trainer_job(&world, "evict").await.unwrap().status.unwrap();
    assert_eq!(job_status.failed, Some(0), "an eviction is not a failure");
    let progress = status.progress.unwrap();
    assert_eq!(progress.step, progress.total_steps);
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crashed_trainer_is_retried_and_resumes() {
    let world = World::start(&quickstart_lines(96)).await;
    let operator = world.start_operator(None).await;
    world.apply(&job_yaml("crash", 2, 2, "")).await;
    first_checkpoint(&world, "crash").await;
    world.kubelet.kill("crash-trainer-0");
    let status = succeeded(&world, "crash").await;
    assert!(pod_output(&world, "crash-trainer-1").contains("resumed from ckpt-"));
    let job_status = trainer_job(&world, "crash").await.unwrap().status.unwrap();
    assert_eq!(job_status.failed, Some(1));
    assert_eq!(
        status.checkpoints.last().unwrap().step,
        status.progress.unwrap().total_steps
    );
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_oom_killed_trainer_fails_with_reason_out_of_memory_without_a_retry() {
    let world = World::start(&quickstart_lines(96)).await;
    let operator = world.start_operator(None).await;
    world.apply(&job_yaml("oom", 2, 2, "")).await;
    first_checkpoint(&world, "oom").await;
    assert!(
        world
            .kubelet
            .running_pods()
            .iter()
            .any(|pod| pod == "oom-trainer-0"),
        "the trainer finished before it could be killed: {:?}",
        world.kubelet.running_pods()
    );
    // The job as a watch that lags behind may still hold it after the kill.
    let stale = world.job("oom").await;
    world.kubelet.oom_kill("oom-trainer-0");
    let status = failed(&world, "oom").await;
    assert_eq!(failed_reason(&status), "OutOfMemory");
    let message = status.message.unwrap();
    // The last step the operator knew of when it saw the kill: events the trainer
    // posted just before may land in the status after it.
    let progress = status.progress.as_ref().unwrap().step;
    let (step, rest) = message
        .strip_prefix("the trainer was killed for going over its memory limit (8Gi) after step ")
        .and_then(|rest| rest.split_once(", "))
        .unwrap_or_else(|| panic!("{message}"));
    let step: u64 = step.parse().unwrap();
    assert!(
        (1..=progress).contains(&step),
        "{message} (progress {progress})"
    );
    // What the plan predicted for a CPU trainer at that limit (anneal-tiny's shape from
    // its config.json in the test's bucket; the whole batch of 4 fits).
    assert!(
        rest.starts_with("where the memory plan predicted ")
            && rest.contains(" at micro-batch 4; ")
            && rest.ends_with(
                "; set spec.resources.memory larger or lower hyperparameters.batchSize or maxTokens"
            ),
        "{message}"
    );
    // The same plan is not tried again: the trainer Job is gone, and no trainer of the
    // job runs on (a retry the Job may have started meanwhile is stopped with it).
    let gone = tokio::time::Instant::now() + Duration::from_secs(10);
    while trainer_job(&world, "oom").await.is_some()
        || world
            .kubelet
            .running_pods()
            .iter()
            .any(|pod| pod.starts_with("oom-trainer-"))
    {
        assert!(
            tokio::time::Instant::now() < gone,
            "the trainer Job or a trainer of it is still there: {:?}",
            world.kubelet.running_pods()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // What was saved stays saved.
    assert!(!status.checkpoints.is_empty());
    operator.stop().await;

    // A reconcile of the job's stale copy (phase Running, its trainer Job gone, as a
    // lagging watch delivers it) must not start the run again.
    assert_eq!(
        stale.status.as_ref().and_then(|s| s.phase),
        Some(JobPhase::Running)
    );
    reconcile_once(&world, stale).await;
    assert!(
        trainer_job(&world, "oom").await.is_none(),
        "a trainer Job was made for a job that had failed"
    );
    assert_eq!(
        world.job("oom").await.status.unwrap().phase,
        Some(JobPhase::Failed)
    );
}

/// One reconcile of `job` as the operator's controller runs it, with a context of
/// its own.
async fn reconcile_once(world: &World, job: anneal_crds::FineTuneJob) {
    use anneal_operator::finetunejob::controller::{Context, reconcile};
    use anneal_operator::finetunejob::kube_report::KubeReportCluster;
    use anneal_operator::metrics::Metrics;
    use anneal_operator::report::ReportState;
    use kube::runtime::events::{Recorder, Reporter};
    let client = world.client();
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "anneal-operator".to_owned(),
            instance: Some("test".to_owned()),
        },
    );
    let metrics = Metrics::new();
    let context = Context {
        client: client.clone(),
        recorder: recorder.clone(),
        metrics: metrics.clone(),
        config: world.config.clone(),
        reports: ReportState::new(KubeReportCluster::new(client, recorder), metrics),
    };
    reconcile(std::sync::Arc::new(job), std::sync::Arc::new(context))
        .await
        .expect("the reconcile runs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_trainer_error_fails_the_job_at_once_with_the_trainers_words() {
    let world = World::start(&quickstart_lines(24)).await;
    let operator = world.start_operator(None).await;
    let yaml = job_yaml("no-model", 1, 2, "").replace("models/anneal-tiny", "models/missing");
    world.apply(&yaml).await;
    let failed = world
        .wait_for("no-model", TRAINING, "Failed", |s| {
            s.phase == Some(JobPhase::Failed)
        })
        .await;
    let message = failed.status.unwrap().message.unwrap();
    assert!(
        message.starts_with("the trainer stopped on an error a retry cannot fix: exit code 2: "),
        "{message}"
    );
    assert!(message.contains("models/missing"), "{message}");
    let pods: Api<Pod> = Api::namespaced(world.client(), NAMESPACE);
    assert_eq!(
        pods.list(&ListParams::default()).await.unwrap().items.len(),
        1,
        "no retry of a trainer error"
    );
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_diverged_run_fails_with_reason_diverged_and_keeps_its_last_good_checkpoint() {
    let world = World::start(&quickstart_lines(24)).await;
    // The trainer's own fault injection: step 3 reports a NaN loss.
    world.kubelet.add_env("ANNEAL_FAULT_NAN_LOSS_AT_STEP", "3");
    let operator = world.start_operator(None).await;
    world.apply(&job_yaml("nan", 2, 2, "")).await;
    let status = failed(&world, "nan").await;
    assert_eq!(failed_reason(&status), "Diverged");
    let message = status.message.unwrap();
    assert!(
        message.starts_with(
            "the trainer stopped on an error a retry cannot fix: exit code 2: training diverged at \
             step 3: the training loss is NaN; the last good checkpoint is ckpt-2 (kept)"
        ),
        "{message}"
    );
    // The checkpoint before the divergence is in the status; nothing after it, no result.
    let steps: Vec<u64> = status.checkpoints.iter().map(|c| c.step).collect();
    assert_eq!(steps, [2]);
    assert!(status.result.is_none());
    let pods: Api<Pod> = Api::namespaced(world.client(), NAMESPACE);
    assert_eq!(
        pods.list(&ListParams::default()).await.unwrap().items.len(),
        1,
        "a divergence is not retried"
    );
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn suspend_removes_the_pod_and_resume_continues_from_the_checkpoint() {
    let world = World::start(&quickstart_lines(96)).await;
    let operator = world.start_operator(None).await;
    world.apply(&job_yaml("pause", 2, 2, "")).await;
    first_checkpoint(&world, "pause").await;
    let first_token = world.report_token("pause").await;
    let api: Api<anneal_crds::FineTuneJob> = Api::namespaced(world.client(), NAMESPACE);
    let suspend = |on: bool| serde_json::json!({"spec": {"suspend": on}});
    api.patch(
        "pause",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&suspend(true)),
    )
    .await
    .unwrap();
    let suspended = world
        .wait_for("pause", TRAINING, "Suspended with no pod", |s| {
            s.phase == Some(JobPhase::Suspended)
        })
        .await;
    assert!(
        suspended
            .status
            .unwrap()
            .message
            .unwrap()
            .starts_with("suspended")
    );
    // The pod is gone and its trainer stopped after writing a checkpoint.
    let started = std::time::Instant::now();
    while !world.kubelet.running_pods().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the trainer did not stop"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(trainer_job(&world, "pause").await.is_none());
    let stopped_at = world
        .job("pause")
        .await
        .status
        .unwrap()
        .checkpoints
        .last()
        .unwrap()
        .step;
    api.patch(
        "pause",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&suspend(false)),
    )
    .await
    .unwrap();
    let status = succeeded(&world, "pause").await;
    // The resumed trainer Job had a token of its own; neither token posts any more.
    let last_token = world.report_token("pause").await;
    assert_ne!(
        first_token, last_token,
        "a new trainer Job gets a new token"
    );
    for token in [&first_token, &last_token] {
        let answer = reqwest::Client::new()
            .post(format!(
                "{}/v1/jobs/{NAMESPACE}/pause/events",
                operator.report_url
            ))
            .bearer_auth(token)
            .body("[]")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), reqwest::StatusCode::UNAUTHORIZED);
    }
    let resumed = pod_output(&world, "pause-trainer-1");
    // The stopping trainer may have saved one more checkpoint than status showed then.
    let from: u64 = resumed
        .split("resumed from ckpt-")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|step| step.parse().ok())
        .unwrap_or_else(|| panic!("no resume in {resumed}"));
    assert!(
        from >= stopped_at,
        "resumed from {from}, status had {stopped_at}"
    );
    assert_eq!(
        status.checkpoints.last().unwrap().step,
        status.progress.unwrap().total_steps
    );
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operator_restart_mid_run_changes_nothing_recorded() {
    let world = World::start(&quickstart_lines(96)).await;
    let operator = world.start_operator(None).await;
    world.apply(&job_yaml("restart", 2, 2, "")).await;
    first_checkpoint(&world, "restart").await;
    let port: u16 = operator
        .report_url
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let before = world.job("restart").await.status.unwrap();
    operator.stop().await;
    // While no operator runs, the trainer keeps training and buffers its reports.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = world.job("restart").await.status.unwrap();
    assert_eq!(during.phase, before.phase);
    assert_eq!(during.conditions, before.conditions);
    let operator = world.start_operator(Some(port)).await;
    let status = succeeded(&world, "restart").await;
    // Conditions set before the restart keep their transition times.
    let validated = |s: &anneal_crds::finetunejob::FineTuneJobStatus| {
        s.conditions
            .iter()
            .find(|c| c.type_ == "Validated")
            .cloned()
            .unwrap()
    };
    assert_eq!(
        validated(&status).last_transition_time,
        validated(&before).last_transition_time
    );
    assert_eq!(status.start_time, before.start_time);
    let pods: Api<Pod> = Api::namespaced(world.client(), NAMESPACE);
    assert_eq!(
        pods.list(&ListParams::default()).await.unwrap().items.len(),
        1,
        "the restart did not touch the pod"
    );
    assert_eq!(
        status.checkpoints.last().unwrap().step,
        status.progress.unwrap().total_steps
    );
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleting_a_running_job_stops_its_trainer_and_removes_what_the_operator_made() {
    let world = World::start(&quickstart_lines(96)).await;
    let operator = world.start_operator(None).await;
    let applied = world.apply(&job_yaml("gone", 2, 2, "")).await;
    first_checkpoint(&world, "gone").await;
    let api: Api<anneal_crds::FineTuneJob> = Api::namespaced(world.client(), NAMESPACE);
    api.delete("gone", &Default::default()).await.unwrap();
    let started = std::time::Instant::now();
    while api.get_opt("gone").await.unwrap().is_some() || !world.kubelet.running_pods().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "job or trainer still there"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(trainer_job(&world, "gone").await.is_none());
    let secrets: Api<Secret> = Api::namespaced(world.client(), NAMESPACE);
    assert!(secrets.get_opt("gone-trainer").await.unwrap().is_none());
    // What was saved stays saved.
    let run = format!(
        "s3://anneal-e2e/runs/{NAMESPACE}/gone/{}",
        applied.metadata.uid.unwrap()
    );
    assert!(world.read_object(&run, "events.jsonl").await.is_some());
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_queued_job_waits_for_kueue_to_admit_its_trainer() {
    let world = World::start(&quickstart_lines(24)).await;
    let operator = world.start_operator(None).await;
    world
        .apply(&job_yaml("queued", 1, 2, "  queueName: team-a-gpus\n"))
        .await;
    let queued = world
        .wait_for("queued", Duration::from_secs(30), "Queued", |s| {
            s.phase == Some(JobPhase::Queued)
                && s.conditions
                    .iter()
                    .any(|c| c.type_ == "Admitted" && c.status == "False")
        })
        .await;
    assert_eq!(
        queued.status.unwrap().message.as_deref(),
        Some("waiting for Kueue to admit the trainer Job")
    );
    let job = trainer_job(&world, "queued").await.unwrap();
    assert_eq!(
        job.metadata.labels.unwrap()["kueue.x-k8s.io/queue-name"],
        "team-a-gpus"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        world.kubelet.running_pods().is_empty(),
        "no pod before admission"
    );
    // Kueue admits the Job by unsuspending it.
    let jobs: Api<Job> = Api::namespaced(world.client(), NAMESPACE);
    let admit = serde_json::json!({"spec": {"suspend": false}});
    jobs.patch(
        "queued-trainer",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&admit),
    )
    .await
    .unwrap();
    succeeded(&world, "queued").await;
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_configmap_dataset_is_validated_by_the_operator_and_mounted_for_the_trainer() {
    let world = World::start(&quickstart_lines(4)).await;
    let operator = world.start_operator(None).await;
    create_config_map(&world, "chats", "train.jsonl", quickstart_lines(24)).await;
    let yaml = job_yaml("inline", 1, 2, "").replace(
        r#"dataset: {train: "s3://anneal-e2e/data/train.jsonl", validationSplit: 0.2}"#,
        "dataset: {configMap: {name: chats}, validationSplit: 0.2}",
    );
    assert!(yaml.contains("configMap"));
    world.apply(&yaml).await;
    let status = succeeded(&world, "inline").await;
    let validated = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Validated")
        .unwrap();
    assert_eq!(
        validated.message,
        "spec.dataset.configMap chats/train.jsonl: 24 samples"
    );
    let output = pod_output(&world, "inline-trainer-0");
    assert!(
        output.contains("training on 19 samples (5 held out"),
        "{output}"
    );
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_held_out_configmap_scores_every_checkpoint_and_best_follows_its_first_metric() {
    let world = World::start(&quickstart_lines(24)).await;
    let operator = world.start_operator(None).await;
    // The last 6 of the quick start's chats: the job trains on the first 24.
    let data = quickstart_lines(240);
    let held_out: Vec<&str> = data.lines().skip(234).collect();
    create_config_map(&world, "held-out", "eval.jsonl", held_out.join("\n") + "\n").await;
    let yaml = job_yaml("scored", 1, 2, "").replace(
        "checkpoints: {everyEpoch: true, everySteps: 2}",
        r#"checkpoints: {everyEpoch: true, everySteps: 2, evaluation: {dataset: {configMap: {name: held-out, key: eval.jsonl}}, metrics: [{contains: {text: "Good question!"}}, referenceLoss: {}], generation: {maxTokens: 16}}}"#,
    );
    assert!(yaml.contains("evaluation"));
    world.apply(&yaml).await;
    let status = succeeded(&world, "scored").await;
    let validated = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Validated")
        .unwrap();
    assert!(
        validated.message.contains(
            "spec.checkpoints.evaluation.dataset.configMap held-out/eval.jsonl: 6 samples"
        ),
        "{}",
        validated.message
    );
    // Every checkpoint the pod wrote was scored on the 6 chats it read from the mount.
    assert!(status.checkpoints.len() >= 3, "{:?}", status.checkpoints);
    for checkpoint in &status.checkpoints {
        let metrics: Vec<&str> = (checkpoint.evaluation.iter())
            .map(|s| s.metric.as_str())
            .collect();
        assert_eq!(
            metrics,
            ["contains \"Good question!\"", "referenceLoss", "perplexity"],
            "{}",
            checkpoint.name
        );
    }
    let output = pod_output(&world, "scored-trainer-0");
    assert!(
        output.contains(": evaluated on 6 held-out chats in "),
        "{output}"
    );
    // `checkpoint: best` (of a ModelDeployment, publish, a ModelEvaluation) is the
    // checkpoint with the top first score.
    let best = anneal_crds::best_checkpoint::best_checkpoint_name(&status.checkpoints).unwrap();
    let top = (status.checkpoints.iter())
        .map(|c| c.evaluation[0].score)
        .fold(f64::NEG_INFINITY, f64::max);
    let chosen = status.checkpoints.iter().find(|c| c.name == best).unwrap();
    assert_eq!(chosen.evaluation[0].score, top);
    operator.stop().await;
}

/// A ConfigMap in the test namespace holding `text` under `key`.
async fn create_config_map(world: &World, name: &str, key: &str, text: String) {
    let config_map = k8s_openapi::api::core::v1::ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some([(key.to_owned(), text)].into()),
        ..Default::default()
    };
    let config_maps: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(world.client(), NAMESPACE);
    config_maps
        .create(&Default::default(), &config_map)
        .await
        .unwrap();
}

/// The `Validated` condition of a job, once it has one.
async fn validated_condition(
    world: &World,
    name: &str,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    let job = world
        .wait_for(name, Duration::from_secs(30), "validated", |s| {
            s.conditions.iter().any(|c| c.type_ == "Validated")
        })
        .await;
    job.status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Validated")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_memory_plan_refuses_what_cannot_fit_its_gpus_before_any_pod() {
    let world = World::start(&quickstart_lines(4)).await;
    let operator = world.start_operator(None).await;
    let on_one_gpu = |name: &str| job_yaml(name, 1, 2, "").replace("gpus: 0", "gpus: 1");
    // 72B in bf16 is 135 GiB of weights: no GPU of the operator's default 80 GiB holds
    // it. No config.json at its source, so the built-in shape of its name is used.
    let too_big = on_one_gpu("too-big").replace(
        r#"name: anneal-tiny, source: "s3://anneal-e2e/models/anneal-tiny""#,
        r#"name: Qwen/Qwen2.5-72B-Instruct, source: "s3://anneal-e2e/models/qwen2.5-72b""#,
    );
    assert!(too_big.contains("Qwen2.5-72B"));
    world.apply(&too_big).await;
    // The same model on two GPUs of 80 GiB: its layers placed across them, it fits
    // (suspended: validated, no pod).
    world
        .apply(&format!(
            "{}  suspend: true\n",
            too_big
                .replace("too-big", "two-gpus")
                .replace("gpus: 1", "gpus: 2")
        ))
        .await;
    // The tiny model on one GPU fits; its shape comes from its config.json in storage.
    // Suspended, so it is validated but never starts a pod.
    world
        .apply(&format!("{}  suspend: true\n", on_one_gpu("tiny-on-gpu")))
        .await;

    let refused = validated_condition(&world, "too-big").await;
    assert_eq!(
        (refused.status.as_str(), refused.reason.as_str()),
        ("False", "InsufficientGpuMemory")
    );
    let message = &refused.message;
    assert!(
        message.starts_with("does not fit one GPU: Qwen/Qwen2.5-72B-Instruct needs ")
            && message.contains(" per GPU at micro-batch 1 with maxTokens 256 (base weights 135.4 GiB), more than the 80 GiB of a GPU; no maxTokens fits on 1 x 80 GiB GPU, or on 2 GPUs of 80 GiB with its layers placed across them (spec.resources.gpus: 2)"),
        "{message}"
    );
    let failed = world.job("too-big").await.status.unwrap();
    assert_eq!(failed.phase, Some(JobPhase::Failed));
    assert_eq!(failed.message.as_ref(), Some(message));

    let two = validated_condition(&world, "two-gpus").await;
    assert_eq!(two.status, "True", "{}", two.message);
    assert!(
        two.message
            .contains(" of 80 GiB per GPU, its 80 layers placed across 2 GPUs (40 on the busiest) at micro-batch "),
        "{}",
        two.message
    );

    let tiny = validated_condition(&world, "tiny-on-gpu").await;
    assert_eq!(tiny.status, "True", "{}", tiny.message);
    assert!(
        tiny.message
            .contains("; memory plan (anneal-tiny, from its config.json): "),
        "{}",
        tiny.message
    );

    let jobs: Api<Job> = Api::namespaced(world.client(), NAMESPACE);
    assert!(
        jobs.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let pods: Api<Pod> = Api::namespaced(world.client(), NAMESPACE);
    assert!(
        pods.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let events = events_for(&world, "too-big", "Failed").await;
    assert!(
        events
            .iter()
            .any(|(reason, note)| reason == "Failed" && note.starts_with("does not fit one GPU")),
        "{events:?}"
    );
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_secret_in_the_way_ends_the_job_and_is_left_as_it_was() {
    let world = World::start(&quickstart_lines(24)).await;
    let operator = world.start_operator(None).await;
    // Someone else's Secret under the name the job's report Secret would have.
    let secrets: Api<Secret> = Api::namespaced(world.client(), NAMESPACE);
    let theirs: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "clash-trainer"},
        "data": {"password": "bm90IHRoZSBvcGVyYXRvcidz"},
    }))
    .unwrap();
    secrets
        .create(&kube::api::PostParams::default(), &theirs)
        .await
        .unwrap();
    let before = secrets.get("clash-trainer").await.unwrap();

    world.apply(&job_yaml("clash", 1, 2, "")).await;
    let status = failed(&world, "clash").await;
    assert_eq!(failed_reason(&status), "NameConflict");
    let message = status.message.unwrap_or_default();
    assert!(message.contains("Secret named clash-trainer"), "{message}");
    let after = secrets.get("clash-trainer").await.unwrap();
    assert_eq!(after.data, before.data, "the Secret was not touched");
    assert!(after.metadata.owner_references.is_none());
    assert!(
        trainer_job(&world, "clash").await.is_none(),
        "no trainer started"
    );
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_image_the_install_does_not_allow_fails_validation_before_any_pod() {
    let world = World::start(&quickstart_lines(4)).await;
    let operator = world.start_operator(None).await;
    let yaml = job_yaml("foreign", 1, 2, "").replace(
        "resources: {gpus: 0}",
        r#"resources: {gpus: 0, image: "docker.io/someone/reads-secrets:1"}"#,
    );
    assert!(yaml.contains("reads-secrets"));
    world.apply(&yaml).await;
    let validated = validated_condition(&world, "foreign").await;
    assert_eq!(validated.status, "False");
    assert!(
        validated
            .message
            .contains("spec.resources.image: docker.io/someone/reads-secrets:1 is not an image this operator runs"),
        "{}",
        validated.message
    );
    assert!(trainer_job(&world, "foreign").await.is_none());
    let secrets: Api<Secret> = Api::namespaced(world.client(), NAMESPACE);
    assert!(
        secrets.get_opt("foreign-trainer").await.unwrap().is_none(),
        "no token was issued"
    );
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_operator_never_connects_to_a_storage_endpoint_the_install_does_not_allow() {
    let world = World::start(&quickstart_lines(4)).await;
    let operator = world.start_operator(None).await;
    // A tenant's Secret pointing the operator at something it can reach: here a
    // listener that counts the connections it gets.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = format!("http://{}", listener.local_addr().unwrap());
    let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = connections.clone();
    let accepting = tokio::spawn(async move {
        while listener.accept().await.is_ok() {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let secrets: Api<Secret> = Api::namespaced(world.client(), NAMESPACE);
    let pointed = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("pointed".to_owned()),
            ..kube::api::ObjectMeta::default()
        },
        data: Some(
            [
                ("AWS_ACCESS_KEY_ID", "testing"),
                ("AWS_SECRET_ACCESS_KEY", "testing"),
                ("AWS_ENDPOINT_URL", target.as_str()),
            ]
            .into_iter()
            .map(|(key, value)| {
                (
                    key.to_owned(),
                    k8s_openapi::ByteString(value.as_bytes().to_vec()),
                )
            })
            .collect(),
        ),
        ..Secret::default()
    };
    secrets
        .create(&kube::api::PostParams::default(), &pointed)
        .await
        .unwrap();

    // Suspended: validated, but no trainer pod (which would connect from the
    // tenant's own place, as it may).
    let yaml = format!(
        "{}  output: {{uri: \"s3://anneal-e2e/runs\", credentialsSecret: pointed}}\n  suspend: true\n",
        job_yaml("pointed", 1, 2, "")
    );
    world.apply(&yaml).await;
    let validated = validated_condition(&world, "pointed").await;
    assert_eq!(validated.status, "True", "{}", validated.message);
    assert!(
        validated.message.contains(&format!(
            "spec.dataset.train is checked by the trainer as it loads it: the operator does not connect to storage endpoint {target}"
        )),
        "{}",
        validated.message
    );
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 0);
    accepting.abort();
    operator.stop().await;
}

/// The figure after `label` in `trainer plan`'s estimate lines (`label` included).
fn figure_after<'a>(plan: &'a str, label: &str) -> &'a str {
    let start = plan
        .find(label)
        .unwrap_or_else(|| panic!("no {label:?} in:\n{plan}"))
        + label.len();
    plan[start..].split_whitespace().next().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn validating_estimates_tokens_steps_time_and_cost_as_trainer_plan_does() {
    let lines = quickstart_lines(40);
    let mut world = World::start(&lines).await;
    // A GPU slow enough for the tiny model's steps to take minutes and cost cents.
    world.config.price_per_gpu_hour = Some(2.5);
    world.config.gpu_tflops = 0.001;
    let operator = world.start_operator(None).await;
    let on_gpu = job_yaml("costed", 3, 2, "").replace("gpus: 0", "gpus: 1");
    world.apply(&format!("{on_gpu}  suspend: true\n")).await;
    world.apply(&job_yaml("on-cpu", 2, 2, "")).await;
    let estimated = |s: &anneal_crds::finetunejob::FineTuneJobStatus| s.estimate.is_some();
    let costed = world
        .wait_for("costed", Duration::from_secs(30), "an estimate", estimated)
        .await
        .status
        .unwrap()
        .estimate
        .unwrap();

    // `trainer plan` on the same data, model and GPU speed.
    let local = tempfile::TempDir::new().unwrap();
    std::fs::write(local.path().join("train.jsonl"), &lines).unwrap();
    let model = repo().join("examples/models/anneal-tiny");
    let manifest = on_gpu
        .replace(
            r#"source: "s3://anneal-e2e/models/anneal-tiny""#,
            &format!(r#"source: "file://{}""#, model.display()),
        )
        .replace(
            r#""s3://anneal-e2e/data/train.jsonl""#,
            "file://train.jsonl",
        );
    assert!(!manifest.contains("s3://"), "{manifest}");
    std::fs::write(local.path().join("job.yaml"), manifest).unwrap();
    let output = std::process::Command::new(trainer_binary())
        .arg("plan")
        .arg(local.path().join("job.yaml"))
        .args([
            "--tflops",
            "0.001",
            "--utilization",
            "0.4",
            "--price-per-gpu-hour",
            "2.5",
        ])
        .output()
        .unwrap();
    let plan = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{plan}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        (
            costed.samples_per_epoch.to_string(),
            costed.tokens_per_epoch.to_string(),
            costed.steps.to_string()
        ),
        (
            figure_after(&plan, "estimate: ").to_owned(),
            figure_after(&plan, "samples and ").to_owned(),
            figure_after(&plan, "(after the chat template), ").to_owned()
        ),
        "{plan}"
    );
    assert!(
        costed.samples_per_epoch > 25,
        "40 lines less the held-out 20%: {costed:?}"
    );
    assert_eq!(costed.steps, costed.samples_per_epoch.div_ceil(4) * 3);
    let duration = costed.duration.clone().unwrap();
    assert!(
        plan.contains(&format!("duration: {duration} of training steps on 1 GPU")),
        "{plan}"
    );
    assert!(costed.duration_seconds.unwrap() > 60, "{costed:?}");
    let cost = costed.cost.unwrap();
    assert!(
        cost > 0.0 && plan.contains(&format!("cost: {cost:.2} for ")),
        "{plan}"
    );
    assert!(
        costed.basis.starts_with(
            "tokens counted on the whole data; 1 GPU(s) of 0.001 TFLOPS at 40% utilization"
        ),
        "{}",
        costed.basis
    );

    // A CPU job gets tokens and steps, and no time: the CPU's speed is not known.
    let cpu = world
        .wait_for("on-cpu", Duration::from_secs(30), "an estimate", estimated)
        .await
        .status
        .unwrap()
        .estimate
        .unwrap();
    assert_eq!(cpu.tokens_per_epoch, costed.tokens_per_epoch);
    assert_eq!(cpu.steps, costed.steps / 3 * 2);
    assert_eq!((cpu.duration, cpu.cost, cpu.gpu_hours), (None, None, None));
    operator.stop().await;
}
