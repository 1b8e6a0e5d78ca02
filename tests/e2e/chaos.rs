//! Chaos: 200 FineTuneJobs and 20 ModelDeployments against an API server that fails a
//! seeded share of the operator's requests (500s, 409s on writes, latency, 410s at
//! watch start, watch streams cut off), with the operator process killed (SIGKILL)
//! and started again at seeded random points. The pods run `anneal-sim-trainer`,
//! which reports like `trainer train` without a model, so the run takes minutes.
//!
//! Every job must end in the phase its trainer gives (every tenth fails with a
//! dataset error), with every event its trainer reported in its status; no status
//! may move backwards; no FineTuneJob or ModelDeployment may ever have had two
//! trainer Jobs or Deployments; every deployment must end `Ready` on its job's model.
//!
//! `ANNEAL_CHAOS_SEED=N` repeats it with other faults and kill times.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anneal_crds::finetunejob::{FineTuneJobStatus, JobPhase};
use anneal_crds::modeldeployment::DeploymentPhase;
use anneal_crds::{FineTuneJob, ModelDeployment};
use anneal_e2e::operator_harness::{NAMESPACE, World, job_yaml, quickstart_lines};
use anneal_e2e::operator_process::OperatorProcess;
use anneal_fake_apiserver::FaultSchedule;
use futures_util::{StreamExt, stream};
use kube::Api;
use kube::api::{ListParams, PostParams};

const JOBS: usize = 200;
const DEPLOYMENTS: usize = 20;
/// Events `anneal-sim-trainer` reports for a job that succeeds: Running, 4 x
/// (progress, metrics), 2 checkpoints, Succeeded.
const EVENTS_OF_A_RUN: u64 = 12;
const DEADLINE: Duration = Duration::from_secs(900);

fn job_name(index: usize) -> String {
    // Every tenth job's trainer fails with a dataset error.
    if index % 10 == 9 {
        format!("fail-{index:03}")
    } else {
        format!("ok-{index:03}")
    }
}

/// A number from the seed and `n`, for kill times.
fn draw(seed: u64, n: u64) -> u64 {
    let mut z = seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Where a job's status stands, in an order it may only move forward in.
fn rank(status: &FineTuneJobStatus) -> (u8, u64, usize, u64) {
    let phase = match status.phase {
        None | Some(JobPhase::Pending) => 0,
        Some(JobPhase::Validating) => 1,
        Some(JobPhase::Queued) => 2,
        Some(JobPhase::Running) => 3,
        Some(_) => 4,
    };
    (
        phase,
        status.progress.as_ref().map_or(0, |p| p.step),
        status.checkpoints.len(),
        status.last_event_seq.unwrap_or(0),
    )
}

/// Watches every FineTuneJob's status with the test's own (unfaulted) client and
/// records each move backwards.
fn record_regressions(client: kube::Client) -> Arc<Mutex<Vec<String>>> {
    let regressions = Arc::new(Mutex::new(Vec::new()));
    let seen = regressions.clone();
    tokio::spawn(async move {
        let api: Api<FineTuneJob> = Api::namespaced(client, NAMESPACE);
        let mut last: BTreeMap<String, (u8, u64, usize, u64)> = BTreeMap::new();
        loop {
            if let Ok(list) = api.list(&ListParams::default()).await {
                for job in list.items {
                    let name = job.metadata.name.clone().unwrap_or_default();
                    let now = rank(&job.status.clone().unwrap_or_default());
                    let before = last.insert(name.clone(), now);
                    // Each part on its own: a later phase may still show an older step
                    // only if it never showed a newer one.
                    if let Some(before) = before
                        && (now.0 < before.0
                            || now.1 < before.1
                            || now.2 < before.2
                            || now.3 < before.3)
                    {
                        seen.lock()
                            .unwrap()
                            .push(format!("{name}: {before:?} -> {now:?}"));
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    regressions
}

fn deployment_yaml(name: &str, job: &str) -> String {
    format!(
        r#"apiVersion: anneal.dev/v1alpha1
kind: ModelDeployment
metadata: {{name: {name}, namespace: {NAMESPACE}}}
spec:
  model:
    fineTuneJob: {{name: {job}, checkpoint: final}}
  replicas: 1
  resources: {{gpus: 0}}
"#
    )
}

fn sim_trainer() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_anneal-sim-trainer"))
}

fn finished(job: &FineTuneJob) -> bool {
    matches!(
        job.status.as_ref().and_then(|s| s.phase),
        Some(JobPhase::Succeeded | JobPhase::Failed)
    )
}

/// Creates the 200 jobs and the 20 deployments with the test's own client.
async fn apply_everything(jobs: &Api<FineTuneJob>, deployments: &Api<ModelDeployment>) {
    stream::iter(0..JOBS)
        .for_each_concurrent(16, |index| {
            let jobs = jobs.clone();
            async move {
                let yaml = job_yaml(&job_name(index), 1, 2, "");
                let job = anneal_crds::manifest::parse_finetunejob(&yaml).unwrap();
                jobs.create(&PostParams::default(), &job).await.unwrap();
            }
        })
        .await;
    for index in 0..DEPLOYMENTS {
        // Jobs whose trainer succeeds (index % 10 == 0).
        let yaml = deployment_yaml(&format!("serve-{index:02}"), &job_name(index * 10));
        let deployment = anneal_crds::manifest::parse_modeldeployment(&yaml).unwrap();
        deployments
            .create(&PostParams::default(), &deployment)
            .await
            .unwrap();
    }
}

/// Kills the operator every 2 to 6 seconds (seeded) until every job has ended and
/// every deployment is ready; how long that took.
async fn kill_until_everything_ended(
    jobs: &Api<FineTuneJob>,
    deployments: &Api<ModelDeployment>,
    operator: &mut OperatorProcess,
    seed: u64,
) -> Duration {
    let started = Instant::now();
    let mut kill = 0;
    loop {
        let all_jobs = jobs.list(&ListParams::default()).await.unwrap().items;
        let all_deployments = deployments
            .list(&ListParams::default())
            .await
            .unwrap()
            .items;
        let jobs_done = all_jobs.iter().filter(|j| finished(j)).count();
        let ready = all_deployments
            .iter()
            .filter(|d| d.status.as_ref().and_then(|s| s.phase) == Some(DeploymentPhase::Ready))
            .count();
        if jobs_done == JOBS && ready == DEPLOYMENTS {
            return started.elapsed();
        }
        eprintln!(
            "chaos: {:.0} s, {jobs_done} jobs ended, {ready} deployments ready, {} kills",
            started.elapsed().as_secs_f64(),
            operator.kills
        );
        assert!(
            started.elapsed() < DEADLINE,
            "{jobs_done} of {JOBS} jobs ended and {ready} of {DEPLOYMENTS} deployments are \
             ready after {DEADLINE:?}; the operator's log:\n{}",
            operator.log_tail()
        );
        let wait = Duration::from_millis(2000 + draw(seed, kill) % 4000);
        tokio::time::sleep(wait).await;
        let down = Duration::from_millis(100 + draw(seed, kill + 1000) % 900);
        operator.kill_and_restart(down).await;
        kill += 1;
    }
}

/// Each job that did not end in the phase its trainer gave, with everything it
/// reported, in words.
fn jobs_ended_wrong(all_jobs: &[FineTuneJob]) -> Vec<String> {
    let mut wrong = Vec::new();
    for job in all_jobs {
        let name = job.metadata.name.clone().unwrap();
        let status = job.status.clone().unwrap_or_default();
        let failed_reason = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Failed" && c.status == "True")
            .map(|c| c.reason.clone());
        if name.starts_with("fail-") {
            let message = status.message.clone().unwrap_or_default();
            if status.phase != Some(JobPhase::Failed)
                || failed_reason.as_deref() != Some("TrainerFailed")
                || !message.contains("line 3: messages is empty")
            {
                wrong.push(format!(
                    "{name}: {:?} {failed_reason:?} {message}",
                    status.phase
                ));
            }
            continue;
        }
        let checkpoints: Vec<&str> = status.checkpoints.iter().map(|c| c.name.as_str()).collect();
        let result = status.result.as_ref().map(|r| r.model_id.as_str());
        let expected_model = format!("ft:anneal-tiny:{name}:ckpt-4");
        if status.phase != Some(JobPhase::Succeeded)
            || checkpoints != ["ckpt-2", "ckpt-4"]
            || status.progress.as_ref().map(|p| p.step) != Some(4)
            || status.last_event_seq != Some(EVENTS_OF_A_RUN)
            || result != Some(expected_model.as_str())
        {
            wrong.push(format!(
                "{name}: {:?}, checkpoints {checkpoints:?}, progress {:?}, lastEventSeq {:?}, result {result:?}",
                status.phase, status.progress, status.last_event_seq
            ));
        }
    }
    wrong
}

/// Successful creates per (plural, name) over the whole run.
fn creates(world: &World) -> BTreeMap<(String, String), usize> {
    let mut created: BTreeMap<(String, String), usize> = BTreeMap::new();
    for write in world.api.writes() {
        if write.verb == "create" && write.code == 201 {
            *created.entry((write.plural, write.name)).or_default() += 1;
        }
    }
    created
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_jobs_end_right_under_api_faults_and_operator_kills() {
    let seed: u64 = std::env::var("ANNEAL_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(11);
    let world = World::start_with(&quickstart_lines(8), sim_trainer()).await;
    world.kubelet.run_deployments();
    let client = world.client();
    let logs = tempfile::TempDir::new().unwrap();
    world.api.set_faults(Some(FaultSchedule {
        seed,
        user: Some("operator".to_owned()),
        server_error_percent: 3,
        conflict_percent: 3,
        latency_percent: 5,
        latency: Duration::from_millis(200),
        watch_gone_percent: 10,
        watch_drop_percent: 20,
        watch_drop_within: Duration::from_secs(5),
    }));
    let mut operator = OperatorProcess::start(&world, "operator", logs.path()).await;
    let regressions = record_regressions(client.clone());
    let jobs: Api<FineTuneJob> = Api::namespaced(client.clone(), NAMESPACE);
    let deployments: Api<ModelDeployment> = Api::namespaced(client.clone(), NAMESPACE);
    apply_everything(&jobs, &deployments).await;
    let took = kill_until_everything_ended(&jobs, &deployments, &mut operator, seed).await;
    let faults = world.api.fault_counts();

    // Every job in the phase its trainer gave, with everything it reported.
    let all_jobs = jobs.list(&ListParams::default()).await.unwrap().items;
    let wrong = jobs_ended_wrong(&all_jobs);
    assert!(
        wrong.is_empty(),
        "{} jobs ended wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    let regressions = regressions.lock().unwrap().clone();
    assert!(
        regressions.is_empty(),
        "statuses moved backwards:\n{}",
        regressions.join("\n")
    );

    // One trainer Job per FineTuneJob and one Deployment per ModelDeployment, ever.
    let created = creates(&world);
    let twice: Vec<_> = created
        .iter()
        .filter(|((plural, _), count)| (plural == "jobs" || plural == "deployments") && **count > 1)
        .collect();
    assert!(twice.is_empty(), "created more than once: {twice:?}");
    let trainer_jobs = created
        .keys()
        .filter(|(plural, _)| plural == "jobs")
        .count();
    assert_eq!(trainer_jobs, JOBS);

    // Every deployment serves its job's final model.
    for deployment in deployments
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
    {
        let status = deployment.status.unwrap_or_default();
        let job = &deployment.spec.model.fine_tune_job.unwrap().name;
        assert_eq!(
            status.model_id,
            Some(format!("ft:anneal-tiny:{job}:ckpt-4")),
            "{:?}",
            deployment.metadata.name
        );
    }

    assert!(operator.kills >= 3, "only {} kills", operator.kills);
    assert!(
        faults.server_errors > 0
            && faults.conflicts > 0
            && faults.latencies > 0
            && faults.watches_gone > 0
            && faults.watches_dropped > 0,
        "{faults:?}"
    );
    eprintln!(
        "chaos (seed {seed}): {JOBS} jobs and {DEPLOYMENTS} deployments ended right in {:.0} s \
         with {} operator kills; faults on the operator's requests: {faults:?}",
        took.as_secs_f64(),
        operator.kills
    );
}
