//! `trainer train` as it runs in a pod: base model, dataset and output all in
//! S3-compatible storage (moto on loopback), credentials from the environment.
//! The adapter that comes back from S3 is the one a local run writes, and a
//! resumed run picks its state up from S3.

use std::path::{Path, PathBuf};
use std::process::Command;

use anneal_crds::events::{EventBody, TrainerEvent};
use anneal_crds::finetunejob::JobPhase;
use anneal_crds::storage::Storage;
use anneal_moto::MotoServer;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn manifest(model: &str, train: &str) -> String {
    format!(
        r#"apiVersion: anneal.dev/v1alpha1
kind: FineTuneJob
metadata: {{name: s3job, namespace: ml}}
spec:
  baseModel: {{name: anneal-tiny, source: "{model}"}}
  dataset: {{train: "{train}", validationSplit: 0.2}}
  hyperparameters:
    learningRate: 0.003
    epochs: 1
    batchSize: 4
    gradientAccumulation: 2
    maxTokens: 256
    lora: {{rank: 4, alpha: 8, dropout: 0.1}}
  checkpoints: {{everyEpoch: true, everySteps: 2}}
"#
    )
}

/// Bucket `anneal` on `server` with the tiny model (COMPLETE marker and all) and
/// `data` as the training set, and a manifest naming both, in the returned folder.
fn job_in_s3(server: &MotoServer, data: Vec<u8>) -> (Storage, tempfile::TempDir, PathBuf) {
    server.create_bucket("anneal");
    let bucket = Storage::open_with("s3://anneal", server.settings()).unwrap();
    bucket
        .upload_dir_complete(
            &repo().join("examples/models/anneal-tiny"),
            "models/anneal-tiny",
        )
        .unwrap();
    bucket.put("data/train.jsonl", data).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let in_s3 = dir.path().join("s3.yaml");
    std::fs::write(
        &in_s3,
        manifest(
            "s3://anneal/models/anneal-tiny",
            "s3://anneal/data/train.jsonl",
        ),
    )
    .unwrap();
    (bucket, dir, in_s3)
}

fn train(
    server: Option<&MotoServer>,
    manifest: &Path,
    output: &str,
    extra: &[&str],
) -> Vec<TrainerEvent> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_trainer"));
    command
        .arg("train")
        .arg(manifest)
        .args([
            "--output", output, "--run-id", "uid-1", "--json", "--device", "cpu",
        ])
        .args(extra);
    for (key, value) in server.map(MotoServer::settings).unwrap_or_default() {
        command.env(key, value);
    }
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| TrainerEvent::from_line(l).unwrap())
        .collect()
}

#[test]
fn a_job_with_everything_in_s3_trains_checkpoints_and_resumes_there() {
    let server = MotoServer::start();
    let data =
        std::fs::read_to_string(repo().join("examples/quickstart/house-style.jsonl")).unwrap();
    let data: String = data.lines().take(20).map(|l| format!("{l}\n")).collect();
    let (bucket, dir, in_s3) = job_in_s3(&server, data.clone().into_bytes());
    let events = train(Some(&server), &in_s3, "s3://anneal/runs", &[]);

    let run = "runs/ml/s3job/uid-1";
    let result = crate::train_cli::succeeded_result(&events);
    assert_eq!(result.uri, format!("s3://anneal/{run}/final"));
    let checkpoints: Vec<String> = events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Checkpoint(c) => Some(c.uri.clone()),
            _ => None,
        })
        .collect();
    // 16 training samples, micro-batches of 2 two at a time: 4 steps, checkpoints at 2 and 4.
    assert_eq!(
        checkpoints,
        [2, 4].map(|s| format!("s3://anneal/{run}/checkpoints/ckpt-{s}"))
    );
    for path in ["checkpoints/ckpt-2", "checkpoints/ckpt-4", "final"] {
        assert!(
            bucket.is_complete(&format!("{run}/{path}")).unwrap(),
            "{path}"
        );
    }
    let stored_events = bucket.get(&format!("{run}/events.jsonl")).unwrap().unwrap();
    assert_eq!(
        String::from_utf8(stored_events).unwrap().lines().count(),
        events.len()
    );
    assert!(bucket.get(&format!("{run}/loss.svg")).unwrap().is_some());

    // The same job on local files writes the same adapter, byte for byte.
    let local = dir.path().join("local");
    std::fs::create_dir_all(&local).unwrap();
    std::fs::write(local.join("train.jsonl"), &data).unwrap();
    let model = std::path::absolute(repo().join("examples/models/anneal-tiny")).unwrap();
    std::fs::write(
        local.join("job.yaml"),
        manifest(&format!("file://{}", model.display()), "file://train.jsonl"),
    )
    .unwrap();
    let local_out = dir.path().join("out");
    train(
        None,
        &local.join("job.yaml"),
        local_out.to_str().unwrap(),
        &[],
    );
    let local_adapter =
        std::fs::read(local_out.join("ml/s3job/uid-1/final/adapter_model.safetensors")).unwrap();
    let s3_adapter = bucket
        .get(&format!("{run}/final/adapter_model.safetensors"))
        .unwrap()
        .unwrap();
    assert!(
        s3_adapter == local_adapter,
        "the adapter in S3 differs from the local run's"
    );

    // Resuming the finished run reads its state back from S3 and changes nothing.
    let resumed = train(Some(&server), &in_s3, "s3://anneal/runs", &["--resume"]);
    let message = resumed.iter().find_map(|e| match &e.body {
        EventBody::Phase {
            phase: JobPhase::Running,
            message,
            ..
        } => message.clone(),
        _ => None,
    });
    assert_eq!(message.as_deref(), Some("resumed from ckpt-4 at step 4/4"));
    let again = bucket
        .get(&format!("{run}/final/adapter_model.safetensors"))
        .unwrap()
        .unwrap();
    assert!(again == s3_adapter);
}

/// The base model in S3 is checked as `trainer serve` and `fetch` check a folder: a
/// file that no longer matches its COMPLETE marker (half an upload) stops the job
/// before training, with the file named and the exit code that lets a pod retry.
#[test]
fn a_base_model_in_s3_that_does_not_match_its_marker_is_refused() {
    let server = MotoServer::start();
    let data = std::fs::read(repo().join("examples/quickstart/house-style.jsonl")).unwrap();
    let (bucket, _dir, in_s3) = job_in_s3(&server, data);
    bucket
        .put("models/anneal-tiny/config.json", b"{}".to_vec())
        .unwrap();

    let output = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .arg("train")
        .arg(&in_s3)
        .args([
            "--output",
            "s3://anneal/runs",
            "--run-id",
            "uid-1",
            "--json",
        ])
        .args(["--device", "cpu"])
        .envs(server.settings())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("spec.baseModel.source s3://anneal/models/anneal-tiny")
            && stderr.contains("incomplete")
            && stderr.contains("config.json"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty(), "no event: training never started");
    assert!(bucket.list_children("runs").unwrap().is_empty());
}

/// Storage over an unreliable network (issue: faults on purpose): through a proxy that
/// answers a seeded tenth of the requests with `503 SlowDown`, holds 8% and cuts 8%
/// off, a run still ends on the same adapter, byte for byte, as one over a
/// clean connection, with every checkpoint complete.
#[test]
fn a_run_through_throttling_delays_and_resets_ends_on_the_clean_runs_adapter() {
    use anneal_moto::fault_proxy::{FaultProxy, FaultShares};

    let server = MotoServer::start();
    let data =
        std::fs::read_to_string(repo().join("examples/quickstart/house-style.jsonl")).unwrap();
    let data: String = data.lines().take(20).map(|l| format!("{l}\n")).collect();
    let (bucket, _dir, in_s3) = job_in_s3(&server, data.into_bytes());
    train(Some(&server), &in_s3, "s3://anneal/clean", &[]);

    let shares = FaultShares {
        slow_down: 10,
        delay: 8,
        reset: 8,
    };
    // `ANNEAL_FAULT_SEED` repeats the test with other faults.
    let seed = std::env::var("ANNEAL_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(23);
    let proxy = FaultProxy::start(&server.endpoint(), shares, seed);
    let mut command = Command::new(env!("CARGO_BIN_EXE_trainer"));
    command.arg("train").arg(&in_s3).args([
        "--output",
        "s3://anneal/faulty",
        "--run-id",
        "uid-1",
        "--json",
        "--device",
        "cpu",
    ]);
    for (key, value) in server.settings() {
        let value = match key {
            "AWS_ENDPOINT_URL" => proxy.endpoint(),
            _ => value,
        };
        command.env(key, value);
    }
    let output = command.output().unwrap();
    let counts = proxy.counts();
    assert!(
        output.status.success(),
        "{counts:?}\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // The run met every kind of fault, several times over.
    assert!(
        counts.slow_down >= 1 && counts.delay >= 1 && counts.reset >= 1 && counts.faults() >= 6,
        "{counts:?}"
    );
    eprintln!("fault proxy, seed {seed}: {counts:?}");

    let run = "ml/s3job/uid-1";
    for path in ["checkpoints/ckpt-2", "checkpoints/ckpt-4", "final"] {
        assert!(
            bucket.is_complete(&format!("faulty/{run}/{path}")).unwrap(),
            "{path}"
        );
    }
    for file in ["adapter_model.safetensors", "adapter_config.json"] {
        let read = |prefix: &str| {
            bucket
                .get(&format!("{prefix}/{run}/final/{file}"))
                .unwrap()
                .unwrap()
        };
        assert!(
            read("clean") == read("faulty"),
            "final/{file} differs from the clean run's"
        );
    }
}
