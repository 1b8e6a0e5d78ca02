//! `dataset.mix`: general data mixed into every epoch. The run says how many mixed
//! samples each epoch holds and what share of it they are, its steps count them, its
//! state records them; a broken line of a mixed file is named by file and line.

use std::path::Path;

use anneal_crds::events::EventBody;
use serde_json::Value;

use crate::train_cli::{events, expect, job_dir, repo, trainer_train};

/// `job_dir`'s job with `general.jsonl` (`lines`) mixed in at `weight`.
fn mixed_job(dir: &Path, lines: &str, weight: f64) -> std::path::PathBuf {
    std::fs::write(dir.join("general.jsonl"), lines).unwrap();
    let manifest = job_dir(dir, None);
    let text = std::fs::read_to_string(&manifest).unwrap().replace(
        "validationSplit: 0.2}",
        &format!(
            "validationSplit: 0.2, mix: [{{uri: \"file://general.jsonl\", weight: {weight}}}]}}"
        ),
    );
    assert!(text.contains("mix:"), "{text}");
    std::fs::write(&manifest, text).unwrap();
    manifest
}

fn general_lines() -> String {
    std::fs::read_to_string(repo().join("examples/quickstart/house-style-heldout.jsonl")).unwrap()
}

#[test]
fn every_epoch_trains_on_the_mixed_share_too() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = mixed_job(dir.path(), &general_lines(), 0.5);
    let out = dir.path().join("out");
    let output = trainer_train(&manifest, &out, &[]).output().unwrap();
    expect(&output, 0);
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("team-a/cli/r1/final/trainer_state.json")).unwrap(),
    )
    .unwrap();
    let main = state["data"]["trainSamples"].as_u64().unwrap();
    let mixed = (main as f64 * 0.5).round() as u64;
    assert_eq!(state["data"]["mixedPerEpoch"], serde_json::json!([mixed]));
    let steps_per_epoch = (main + mixed).div_ceil(4);
    assert_eq!(
        state["data"]["stepsPerEpoch"].as_u64(),
        Some(steps_per_epoch)
    );
    assert_eq!(
        state["totalSteps"].as_u64(),
        Some(2 * steps_per_epoch),
        "2 epochs"
    );

    let general = general_lines().lines().count();
    let said = events(&output.stdout)
        .into_iter()
        .find_map(|e| match e.body {
            EventBody::Log { message, .. } if message.starts_with("dataset.mix: ") => Some(message),
            _ => None,
        });
    let share = 100.0 * mixed as f64 / (main + mixed) as f64;
    let expected = format!(
        "dataset.mix: {mixed} samples of {} (of {general}) in every epoch beside the training data's {main}: {share:.0}% of the epoch's {}",
        dir.path().join("general.jsonl").display(),
        main + mixed
    );
    assert_eq!(said.as_deref(), Some(expected.as_str()));
}

#[test]
fn a_broken_line_of_a_mixed_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines: Vec<String> = general_lines().lines().take(3).map(str::to_owned).collect();
    lines[1] = "{\"messages\": [".to_owned();
    let manifest = mixed_job(dir.path(), &(lines.join("\n") + "\n"), 0.5);
    let output = trainer_train(&manifest, &dir.path().join("out"), &[])
        .output()
        .unwrap();
    expect(&output, 2);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("general.jsonl: line 2: "), "{stderr}");
}
