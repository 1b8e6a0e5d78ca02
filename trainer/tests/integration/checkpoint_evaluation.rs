//! `checkpoints.evaluation` through `trainer train`: every checkpoint answers the
//! held-out chats and is scored, its scores land in its status and the report in its
//! folder, and `best` is the checkpoint with the best first metric; a bad held-out
//! set or metric is refused by its field before the model loads.

use std::path::Path;

use anneal_crds::events::EventBody;
use anneal_crds::finetunejob::CheckpointStatus;
use serde_json::Value;

use crate::train_cli::{events, expect, job_dir, trainer_train};

/// The held-out chats: the last 6 of the quick start's data (the job trains on the first 24).
fn held_out(dir: &Path, extra: &str) {
    let data = std::fs::read_to_string(
        crate::train_cli::repo().join("examples/quickstart/house-style.jsonl"),
    )
    .unwrap();
    let lines: Vec<&str> = data.lines().collect();
    let text = lines[lines.len() - 6..].join("\n") + "\n" + extra;
    std::fs::write(dir.join("held-out.jsonl"), text).unwrap();
}

/// The CLI job with `evaluation` (YAML flow) added to its checkpoints.
fn with_evaluation(manifest: &Path, evaluation: &str) {
    let text = std::fs::read_to_string(manifest).unwrap().replace(
        "checkpoints: {everyEpoch: true, everySteps: 2}",
        &format!("checkpoints: {{everyEpoch: true, everySteps: 2, evaluation: {evaluation}}}"),
    );
    std::fs::write(manifest, text).unwrap();
}

const EVALUATION: &str = r#"{dataset: {uri: "file://held-out.jsonl"}, metrics: [{contains: {text: "In short:"}}, referenceLoss: {}, rougeL: {}], generation: {maxTokens: 24}}"#;

fn checkpoints(events: &[anneal_crds::events::TrainerEvent]) -> Vec<CheckpointStatus> {
    events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Checkpoint(c) => Some(c.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn every_checkpoint_is_scored_and_best_is_its_first_metric() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = job_dir(dir.path(), None);
    held_out(dir.path(), "");
    with_evaluation(&manifest, EVALUATION);
    let out = dir.path().join("out");
    let output = trainer_train(&manifest, &out, &[]).output().unwrap();
    expect(&output, 0);
    let events = events(&output.stdout);
    let checkpoints = checkpoints(&events);
    assert!(checkpoints.len() >= 5, "{checkpoints:?}");
    let run = out.join("team-a/cli/r1");
    for checkpoint in &checkpoints {
        let metrics: Vec<&str> = checkpoint
            .evaluation
            .iter()
            .map(|s| s.metric.as_str())
            .collect();
        assert_eq!(
            metrics,
            [
                "contains \"In short:\"",
                "referenceLoss",
                "perplexity",
                "rougeL"
            ],
            "{}",
            checkpoint.name
        );
        for score in &checkpoint.evaluation {
            assert!(
                score.low <= score.score && score.score <= score.high,
                "{}: {score:?}",
                checkpoint.name
            );
        }
        let [contains, loss, perplexity, rouge] = &checkpoint.evaluation[..] else {
            unreachable!()
        };
        assert!((0.0..=1.0).contains(&contains.score) && (0.0..=1.0).contains(&rouge.score));
        assert!(loss.score > 0.0 && loss.score.is_finite());
        assert!((perplexity.score - loss.score.exp()).abs() < 1e-9 * perplexity.score);

        // The report in the checkpoint's folder holds every answer; scored again here,
        // its answers give the status's numbers.
        let folder = run.join("checkpoints").join(&checkpoint.name);
        let report: Value =
            serde_json::from_str(&std::fs::read_to_string(folder.join("evaluation.json")).unwrap())
                .unwrap();
        let samples = report["samples"].as_array().unwrap();
        assert_eq!(samples.len(), 6);
        let answers: Vec<&str> = samples
            .iter()
            .map(|s| s["answers"][0]["answer"].as_str().unwrap())
            .collect();
        let with_opener = answers.iter().filter(|a| a.contains("In short:")).count();
        assert_eq!(
            contains.score,
            with_opener as f64 / 6.0,
            "{}",
            checkpoint.name
        );
        assert_eq!(report["models"][0]["model"], checkpoint.name.as_str());
        let page = std::fs::read_to_string(folder.join("evaluation.html")).unwrap();
        assert!(page.contains(&format!("cli {}", checkpoint.name)));
    }
    // The first metric decides, highest first; ties go to the next metrics in turn
    // (referenceLoss and perplexity lower, rougeL higher), then to the validation
    // loss, then to the earliest.
    let key = |c: &CheckpointStatus| {
        let s: Vec<f64> = c.evaluation.iter().map(|s| s.score).collect();
        [-s[0], s[1], s[2], -s[3], c.valid_loss.unwrap()]
    };
    let best = checkpoints
        .iter()
        .min_by(|a, b| {
            let (a, b) = (key(a), key(b));
            a.iter()
                .zip(&b)
                .map(|(a, b)| a.total_cmp(b))
                .find(|order| order.is_ne())
                .unwrap_or(std::cmp::Ordering::Equal)
        })
        .unwrap();
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(run.join("final/trainer_state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(state["bestCheckpoint"], best.name.as_str());
    // The scores went into the log too, one line a checkpoint.
    let logged = events
        .iter()
        .filter(|e| matches!(&e.body, EventBody::Log { message, .. } if message.contains(": evaluated on 6 held-out chats in ")))
        .count();
    assert_eq!(logged, checkpoints.len());
}

#[test]
fn a_bad_held_out_set_or_metric_is_refused_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = job_dir(dir.path(), None);
    // Line 7: a chat that never gets to the user.
    held_out(
        dir.path(),
        "{\"messages\": [{\"role\": \"assistant\", \"content\": \"Hello.\"}]}\n",
    );
    with_evaluation(&manifest, EVALUATION);
    let out = dir.path().join("out");
    let output = trainer_train(&manifest, &out, &[]).output().unwrap();
    expect(&output, 2);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "trainer train: spec.checkpoints.evaluation.dataset.uri file://held-out.jsonl: line 7: "
        ),
        "{stderr}"
    );
    assert!(output.stdout.is_empty(), "no event: training never started");

    // A prompt without a reference, scored by a metric that needs one.
    held_out(
        dir.path(),
        "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi?\"}]}\n",
    );
    let output = trainer_train(&manifest, &out, &[]).output().unwrap();
    expect(&output, 2);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("trainer train: spec.checkpoints.evaluation.metrics[1]: referenceLoss compares each answer with a reference answer, and dataset line 7 has none"),
        "{stderr}"
    );
}
