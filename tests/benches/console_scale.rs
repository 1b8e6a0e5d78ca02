//! Benchmark (not a test): the operator's console over N FineTuneJobs in the fake API
//! server, the release `anneal-operator` binary as its own process (`--console-listen`,
//! no sign-in). Each job has the status of a run part-way through: progress, metrics
//! and five checkpoints with a 300-character sample answer each. It measures the time
//! to load the jobs list and one job's page (median of 10 loads, after one warm-up),
//! the list's size, and the operator's memory: resident before the loads and at its
//! peak after them. The reference is the same with N/10 jobs, in the same process:
//! the ratio of list time per job says whether the list scales linearly.
//!
//! `cargo build --release -p anneal-operator && cargo bench -p anneal-e2e --bench console_scale -- [--jobs 1000] [--write]`

#[path = "../../benches/results_section.rs"]
mod results_section;

use std::time::{Duration, Instant};

use anneal_crds::FineTuneJob;
use anneal_e2e::bench_operator::{BenchOperator, bench_args, results_path};
use anneal_e2e::fake_kubelet::free_port;
use anneal_fake_apiserver::FakeApiServer;
use futures_util::{StreamExt, stream};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

const NAMESPACE: &str = "bench";
const LOADS: usize = 10;

struct Measurement {
    jobs: usize,
    list: Duration,
    list_bytes: usize,
    job_page: Duration,
    rss_before_mib: f64,
    peak_rss_mib: f64,
}

/// A suspended job (the controller leaves it at that) whose run reads nothing: its
/// model and output are on claims the operator does not open.
fn job(index: usize) -> FineTuneJob {
    let yaml = format!(
        r#"apiVersion: anneal.dev/v1alpha1
kind: FineTuneJob
metadata: {{name: job-{index:04}, namespace: {NAMESPACE}}}
spec:
  baseModel: {{name: Qwen/Qwen2.5-7B-Instruct, source: "pvc://models/qwen2.5-7b"}}
  dataset: {{train: "pvc://data/train.jsonl"}}
  output: {{uri: "pvc://runs/anneal"}}
  suspend: true
  checkpoints:
    samplePrompts: [{{messages: [{{role: user, content: "How do I reset my password?"}}]}}]
"#
    );
    anneal_crds::manifest::parse_finetunejob(&yaml).unwrap()
}

/// The status of a run at step 500 of 1,000 with five checkpoints.
fn status(index: usize) -> serde_json::Value {
    let answer = format!(
        "Good question! {}",
        "To reset it, open Settings. ".repeat(10)
    );
    let checkpoints: Vec<_> = (1..=5)
        .map(|n| {
            json!({"name": format!("ckpt-{}", n * 100), "step": n * 100, "epoch": n as f64 * 0.2,
                "uri": format!("pvc://runs/anneal/{NAMESPACE}/job-{index:04}/u/checkpoints/ckpt-{}", n * 100),
                "validLoss": 2.0 - n as f64 * 0.1, "samples": [answer.clone()]})
        })
        .collect();
    json!({"status": {
        "progress": {"epoch": 1.0, "step": 500, "totalSteps": 1000, "percent": 50},
        "metrics": {"trainLoss": 1.4, "validLoss": 1.5, "tokensPerSecond": 3100.0, "learningRate": 0.0001},
        "checkpoints": checkpoints,
    }})
}

/// The median time of `LOADS` loads of `url` (after one), and the page's size.
async fn load(client: &reqwest::Client, url: &str) -> (Duration, usize) {
    let get = || async {
        let response = client.get(url).send().await.unwrap();
        assert_eq!(response.status(), 200, "{url}");
        response.bytes().await.unwrap().len()
    };
    let size = get().await;
    let mut times = Vec::new();
    for _ in 0..LOADS {
        let started = Instant::now();
        get().await;
        times.push(started.elapsed());
    }
    times.sort();
    (times[LOADS / 2], size)
}

async fn measure(jobs: usize) -> Measurement {
    let api = FakeApiServer::start().await;
    let client = api.client();
    let dir = tempfile::TempDir::new().unwrap();
    let console_port = free_port();
    let args = [format!("--console-listen=127.0.0.1:{console_port}")];
    let operator = BenchOperator::start(&api.url(), dir.path(), &args).await;
    let ftjs: Api<FineTuneJob> = Api::namespaced(client.clone(), NAMESPACE);
    stream::iter(0..jobs)
        .for_each_concurrent(64, |index| {
            let ftjs = ftjs.clone();
            async move {
                let created = ftjs
                    .create(&PostParams::default(), &job(index))
                    .await
                    .unwrap();
                let name = created.metadata.name.unwrap();
                ftjs.patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(&status(index)),
                )
                .await
                .unwrap();
            }
        })
        .await;
    // Let the controller settle them (suspended), so that the loads measure the console.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_before_mib = operator.rss_mib();
    let http = reqwest::Client::new();
    let console = format!("http://127.0.0.1:{console_port}");
    let (list, list_bytes) = load(&http, &format!("{console}/")).await;
    let (job_page, _) = load(&http, &format!("{console}/jobs/{NAMESPACE}/job-0000")).await;
    let measurement = Measurement {
        jobs,
        list,
        list_bytes,
        job_page,
        rss_before_mib,
        peak_rss_mib: operator.peak_rss_mib(),
    };
    operator.stop();
    measurement
}

fn section(reference: &Measurement, main: &Measurement) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let row = |m: &Measurement| {
        format!(
            "| {} | {:.1} | {:.0} | {:.1} | {:.0} | {:.0} |",
            m.jobs,
            ms(m.list),
            m.list_bytes as f64 / 1024.0,
            ms(m.job_page),
            m.rss_before_mib,
            m.peak_rss_mib
        )
    };
    let per_job = |m: &Measurement| ms(m.list) / m.jobs as f64;
    format!(
        "## console scale (fake API server)\n\n\
         Command: `cargo build --release -p anneal-operator && cargo bench -p anneal-e2e --bench console_scale -- --jobs {} --write` ({}, 2 cores).\n\
         The release `anneal-operator` binary serves its console (no sign-in) over FineTuneJobs in the in-process fake API\n\
         server, each with the status of a run part-way through (progress, metrics, five checkpoints with a 300-character\n\
         answer each). Load times are the median of {LOADS} loads after one warm-up, by a client on the same machine; the\n\
         job page's run history is not read (its output is on a claim), so it measures the API reads and the rendering.\n\
         RSS is the operator process's: resident before the loads, and its peak (VmHWM) after them.\n\n\
         | jobs | list load (ms) | list size (KiB) | job page load (ms) | RSS before (MiB) | peak RSS (MiB) |\n|---|---|---|---|---|---|\n{}\n{}\n\n\
         Ratio of list time per job, {} jobs / {} jobs: **{:.2}x** (1.0 = linear).\n",
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
