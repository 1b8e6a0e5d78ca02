//! Benchmark (not a test): N FineTuneJobs applied at once against the fake API server,
//! with the real `anneal-operator` binary as a separate process. It measures how long
//! the operator takes until every job has its trainer Job and is `Queued` (no kubelet
//! runs, so none starts), its reconciles per second and its peak memory (VmHWM).
//! The reference run is the same with N/10 jobs, in the same process: the ratio of
//! per-job settle times says whether the operator scales linearly.
//!
//! `cargo build --release -p anneal-operator && cargo bench -p anneal-e2e --bench operator_scale -- [--jobs 1000] [--write]`

#[path = "../../benches/results_section.rs"]
mod results_section;

use std::time::{Duration, Instant};

use anneal_crds::FineTuneJob;
use anneal_crds::finetunejob::JobPhase;
use anneal_e2e::bench_operator::{BenchOperator, bench_args, results_path};
use anneal_fake_apiserver::FakeApiServer;
use futures_util::{StreamExt, stream};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{ListParams, PostParams};

const NAMESPACE: &str = "bench";

struct Measurement {
    jobs: usize,
    settle: Duration,
    reconciles: f64,
    peak_rss_mib: f64,
}

/// A GPU job whose model and data the operator does not read: the model is on a claim
/// (an `s3://` model would have the operator read its config.json for the memory plan,
/// from a bucket that does not exist here), the data in a ConfigMap.
fn job(index: usize) -> FineTuneJob {
    let yaml = format!(
        r#"apiVersion: anneal.dev/v1alpha1
kind: FineTuneJob
metadata: {{name: job-{index:04}, namespace: {NAMESPACE}}}
spec:
  baseModel: {{name: anneal-tiny, source: "pvc://models/anneal-tiny"}}
  dataset: {{configMap: {{name: chats}}}}
"#
    );
    anneal_crds::manifest::parse_finetunejob(&yaml).unwrap()
}

async fn reconciles(health: &str) -> f64 {
    let text = reqwest::get(format!("{health}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("anneal_reconciles_total{kind=\"FineTuneJob\"}"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn measure(jobs: usize) -> Measurement {
    let api = FakeApiServer::start().await;
    let client = api.client();
    let dir = tempfile::TempDir::new().unwrap();
    let data = "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"hello\"}]}\n".repeat(50);
    let config_map = ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some("chats".into()),
            ..Default::default()
        },
        data: Some([("train.jsonl".to_owned(), data)].into()),
        ..Default::default()
    };
    Api::<ConfigMap>::namespaced(client.clone(), NAMESPACE)
        .create(&PostParams::default(), &config_map)
        .await
        .unwrap();

    let operator = BenchOperator::start(&api.url(), dir.path(), &[]).await;

    let started = Instant::now();
    let ftjs: Api<FineTuneJob> = Api::namespaced(client.clone(), NAMESPACE);
    stream::iter(0..jobs)
        .for_each_concurrent(64, |index| {
            let ftjs = ftjs.clone();
            async move {
                ftjs.create(&PostParams::default(), &job(index))
                    .await
                    .unwrap();
            }
        })
        .await;
    let trainers: Api<Job> = Api::namespaced(client.clone(), NAMESPACE);
    loop {
        let created = trainers
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len();
        let queued = ftjs
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .filter(|j| j.status.as_ref().and_then(|s| s.phase) == Some(JobPhase::Queued))
            .count();
        if created == jobs && queued == jobs {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "{created} Jobs, {queued} queued after 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let settle = started.elapsed();
    let measurement = Measurement {
        jobs,
        settle,
        reconciles: reconciles(&operator.health).await,
        peak_rss_mib: operator.peak_rss_mib(),
    };
    operator.stop();
    measurement
}

fn section(reference: &Measurement, main: &Measurement) -> String {
    let row = |m: &Measurement| {
        format!(
            "| {} | {:.2} | {:.1} | {:.0} | {:.0} | {:.0} |",
            m.jobs,
            m.settle.as_secs_f64(),
            m.settle.as_secs_f64() * 1000.0 / m.jobs as f64,
            m.reconciles,
            m.reconciles / m.settle.as_secs_f64(),
            m.peak_rss_mib
        )
    };
    let per_job = |m: &Measurement| m.settle.as_secs_f64() / m.jobs as f64;
    format!(
        "## operator scale (fake API server)\n\n\
         Command: `cargo build --release -p anneal-operator && cargo bench -p anneal-e2e --bench operator_scale -- --jobs {} --write` ({}, 2 cores).\n\
         FineTuneJobs created at once (64 in flight) against the in-process fake API server; the release `anneal-operator` binary\n\
         runs as its own process. Settled = every job has its trainer Job and is `Queued` (no kubelet runs, so no pod starts).\n\
         Each job's dataset is a 50-line ConfigMap the operator reads and validates. Reconciles are `anneal_reconciles_total`\n\
         at the end; peak RSS is the operator process's VmHWM.\n\n\
         | jobs | time to settle (s) | ms per job | reconciles | reconciles/s | operator peak RSS (MiB) |\n|---|---|---|---|---|---|\n{}\n{}\n\n\
         Ratio of time per job, {} jobs / {} jobs: **{:.2}x** (1.0 = linear).\n",
        main.jobs,
        anneal_crds::jiff::Zoned::now().date(),
        row(reference),
        row(main),
        main.jobs,
        reference.jobs,
        per_job(main) / per_job(reference),
    )
}

#[tokio::main]
async fn main() {
    let (jobs, reference_jobs, write) = bench_args(1000);
    let reference = measure(reference_jobs).await;
    let main = measure(jobs).await;
    let text = section(&reference, &main);
    println!("{text}");
    if write {
        results_section::write_section(&results_path(), &text);
    }
}
