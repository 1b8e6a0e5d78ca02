//! SFT then DPO on the SFT result, in two manifests and one local run each: the DPO
//! job names the SFT job's `final` checkpoint in `spec.baseModel.fineTuneJob`; its run
//! trains the SFT adapter further against the SFT model as DPO's reference, and
//! records where it started. A job that cannot start from what it names says which
//! field is wrong.

use std::path::Path;

use anneal_crds::events::{EventBody, TrainerEvent};
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

use crate::train_cli::{events, expect, job_dir, repo, trainer_train};

/// A DPO job on the house-style pairs that starts from `from`'s `checkpoint`, with
/// `lora` as its LoRA block.
fn dpo_manifest(
    dir: &Path,
    from: &str,
    checkpoint: &str,
    base: &str,
    lora: &str,
) -> std::path::PathBuf {
    let pairs =
        std::fs::read_to_string(repo().join("examples/quickstart/house-style-dpo.jsonl")).unwrap();
    let pairs = pairs.lines().take(16).collect::<Vec<_>>().join("\n") + "\n";
    std::fs::write(dir.join("pairs.jsonl"), pairs).unwrap();
    let manifest = format!(
        r#"apiVersion: anneal.dev/v1alpha1
kind: FineTuneJob
metadata: {{name: dpo, namespace: team-a}}
spec:
  method: dpo
  baseModel: {{name: {base}, fineTuneJob: {{name: {from}, checkpoint: {checkpoint}}}}}
  dataset: {{train: "file://pairs.jsonl", validationSplit: 0.25}}
  hyperparameters:
    learningRate: 0.001
    epochs: 1
    batchSize: 4
    maxTokens: 256
    lora: {lora}
    dpo: {{beta: 0.1}}
  checkpoints: {{everySteps: 2}}
"#
    );
    let path = dir.join("dpo.yaml");
    std::fs::write(&path, manifest).unwrap();
    path
}

/// The SFT job's LoRA block (`job_dir`'s), which a job continuing it must repeat.
const SFT_LORA: &str = "{rank: 4, alpha: 8, dropout: 0.0}";

/// Every `lora_B` matrix of the adapter in `dir`, flattened in name order.
fn lora_b(dir: &Path) -> Vec<f32> {
    let bytes = std::fs::read(dir.join("adapter_model.safetensors")).unwrap();
    let tensors = SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<&str> = tensors
        .names()
        .into_iter()
        .filter(|n| n.contains("lora_B"))
        .collect();
    names.sort_unstable();
    let mut values = Vec::new();
    for name in names {
        let view = tensors.tensor(name).unwrap();
        assert_eq!(view.dtype(), Dtype::F32, "{name}");
        values.extend(
            view.data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        );
    }
    values
}

fn norm(values: impl Iterator<Item = f32>) -> f64 {
    values
        .map(|v| f64::from(v) * f64::from(v))
        .sum::<f64>()
        .sqrt()
}

fn first_step_loss(events: &[TrainerEvent]) -> (f64, f64) {
    events
        .iter()
        .find_map(|e| match &e.body {
            EventBody::Metrics {
                step: 1, metrics, ..
            } => Some((metrics.train_loss?, metrics.reward_margin?)),
            _ => None,
        })
        .expect("step 1's metrics")
}

#[test]
fn dpo_trains_the_sft_adapter_further_against_the_sft_model() {
    let dir = tempfile::tempdir().unwrap();
    let sft = job_dir(dir.path(), None);
    let text = std::fs::read_to_string(&sft)
        .unwrap()
        .replace("name: cli,", "name: sft,")
        .replace("dropout: 0.1", "dropout: 0.0");
    std::fs::write(&sft, text).unwrap();
    let out = dir.path().join("out");
    expect(&trainer_train(&sft, &out, &[]).output().unwrap(), 0);

    let dpo = dpo_manifest(dir.path(), "sft", "final", "anneal-tiny", SFT_LORA);
    let output = trainer_train(&dpo, &out, &[]).output().unwrap();
    expect(&output, 0);
    let trained = events(&output.stdout);

    // At the first step the policy is the SFT model, and so is the reference: every
    // pair's margin is 0 and the loss is -log sigmoid(0) = ln 2. (Against the base
    // model as the reference, the SFT adapter would already move the margin.)
    let (loss, margin) = first_step_loss(&trained);
    assert!(margin.abs() < 1e-4, "reward margin {margin}");
    assert!((loss - std::f64::consts::LN_2).abs() < 1e-4, "loss {loss}");
    let announced = trained.iter().any(|e| {
        matches!(&e.body, EventBody::Phase { message: Some(m), .. }
            if m.ends_with(", from FineTuneJob sft's final (its adapter trained further)"))
    });
    assert!(announced, "the run says where it started");

    // The adapter was trained further, not started afresh: a few small DPO steps
    // leave it near the SFT adapter (a new adapter's B starts at zero).
    let sft_b = lora_b(&out.join("team-a/sft/r1/final"));
    let dpo_b = lora_b(&out.join("team-a/dpo/r1/final"));
    let moved = norm(sft_b.iter().zip(&dpo_b).map(|(a, b)| a - b)) / norm(sft_b.iter().copied());
    assert!(norm(sft_b.iter().copied()) > 0.0);
    assert!(
        moved < 0.5,
        "the DPO adapter moved {moved} of the SFT adapter's size"
    );

    // Its lineage: in the state of each checkpoint, and the base model in its job.yaml.
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("team-a/dpo/r1/final/trainer_state.json")).unwrap(),
    )
    .unwrap();
    let sft_final = format!("file://{}", out.join("team-a/sft/r1/final").display());
    assert_eq!(state["startedFrom"]["fineTuneJob"], "sft");
    assert_eq!(state["startedFrom"]["checkpoint"], "final");
    assert_eq!(state["startedFrom"]["uri"], sft_final.as_str());
    assert_eq!(state["startedFrom"]["training"], "lora");
    let recorded = std::fs::read_to_string(out.join("team-a/dpo/r1/job.yaml")).unwrap();
    assert!(!recorded.contains("fineTuneJob"), "{recorded}");
    assert!(
        recorded.contains("examples/models/anneal-tiny"),
        "{recorded}"
    );
}

#[test]
fn a_job_that_cannot_start_from_what_it_names_says_which_field() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let stderr = |manifest: &Path| {
        let output = trainer_train(manifest, &out, &[]).output().unwrap();
        expect(&output, 2);
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let missing = dpo_manifest(dir.path(), "sft", "final", "anneal-tiny", SFT_LORA);
    let error = stderr(&missing);
    assert!(
        error.contains("spec.baseModel.fineTuneJob.name: no run of FineTuneJob sft under file://"),
        "{error}"
    );

    let sft = job_dir(dir.path(), None);
    let text = std::fs::read_to_string(&sft)
        .unwrap()
        .replace("name: cli,", "name: sft,");
    std::fs::write(&sft, text).unwrap();
    expect(&trainer_train(&sft, &out, &[]).output().unwrap(), 0);
    for (checkpoint, base, lora, named) in [
        (
            "ckpt-99",
            "anneal-tiny",
            SFT_LORA,
            "spec.baseModel.fineTuneJob.checkpoint: ckpt-99: FineTuneJob sft's run",
        ),
        (
            "final",
            "Qwen/Qwen2.5-7B-Instruct",
            SFT_LORA,
            "spec.baseModel.name: \"Qwen/Qwen2.5-7B-Instruct\", but FineTuneJob sft trained \"anneal-tiny\"",
        ),
        (
            "final",
            "anneal-tiny",
            "{rank: 8, alpha: 8}",
            "spec.hyperparameters.lora.rank: 8, but the adapter of FineTuneJob sft's final has 4",
        ),
    ] {
        let manifest = dpo_manifest(dir.path(), "sft", checkpoint, base, lora);
        let error = stderr(&manifest);
        assert!(error.contains(named), "{named} in {error}");
    }
}
