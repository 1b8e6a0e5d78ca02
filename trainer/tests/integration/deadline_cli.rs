//! `spec.activeDeadlineSeconds` through `trainer train`: a run past its deadline
//! (the operator passes it as `--deadline`) checkpoints what it trained, says where it
//! is kept, and fails with the reason `DeadlineExceeded` in its termination message.

use anneal_crds::events::{EventBody, TrainerEvent};
use anneal_crds::finetunejob::JobPhase;

use crate::train_cli::{events, expect, job_dir, run_until, trainer_train};

const PAST: &str = "2000-01-01T00:00:00Z";

fn with_deadline(manifest: &std::path::Path) {
    let text = std::fs::read_to_string(manifest).unwrap() + "  activeDeadlineSeconds: 3600\n";
    std::fs::write(manifest, text).unwrap();
}

fn failed_phase(events: &[TrainerEvent]) -> Option<String> {
    events.iter().find_map(|e| match &e.body {
        EventBody::Phase {
            phase: JobPhase::Failed,
            message,
            ..
        } => message.clone(),
        _ => None,
    })
}

#[test]
fn a_run_past_its_deadline_keeps_its_checkpoints_and_fails_with_deadline_exceeded() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = job_dir(dir.path(), None);
    with_deadline(&manifest);
    let out = dir.path().join("out");
    // Three steps, then a stop request: ckpt-2 (everySteps: 2) and ckpt-3 (the stop's).
    let child = run_until(
        trainer_train(&manifest, &out, &[]),
        |e| matches!(&e.body, EventBody::Progress(p) if p.step >= 3),
        "-TERM",
    );
    let stopped = child.wait_with_output().unwrap();
    expect(&stopped, 143);
    let run = out.join("team-a/cli/r1");
    let kept: Vec<String> = std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let last = kept
        .iter()
        .max_by_key(|name| name["ckpt-".len()..].parse::<u64>().unwrap())
        .unwrap()
        .clone();
    let step: u64 = last["ckpt-".len()..].parse().unwrap();

    // Resumed after its deadline: not one more step, and the checkpoint stays.
    let termination = dir.path().join("termination-log");
    let termination_arg = termination.to_str().unwrap();
    let output = trainer_train(
        &manifest,
        &out,
        &[
            "--resume",
            "--deadline",
            PAST,
            "--termination-log",
            termination_arg,
        ],
    )
    .output()
    .unwrap();
    expect(&output, 2);
    let events = events(&output.stdout);
    assert!(
        !events
            .iter()
            .any(|e| matches!(&e.body, EventBody::Progress(p) if p.step > step)),
        "no step after the deadline"
    );
    let why = format!(
        "ran past spec.activeDeadlineSeconds (3600 s) at step {step}/10; the checkpoints are kept, the last is {last}"
    );
    assert_eq!(failed_phase(&events).as_deref(), Some(why.as_str()));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr
            .trim_end()
            .ends_with(&format!("trainer train: {why}")),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(&termination).unwrap().trim_end(),
        format!("DeadlineExceeded: {why}")
    );
    let folder = run.join("checkpoints").join(&last);
    assert!(folder.join("adapter_model.safetensors").exists());
    assert!(folder.join("COMPLETE").exists(), "{last} is whole");
}

#[test]
fn a_fresh_run_past_its_deadline_takes_no_step_and_a_bad_deadline_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = job_dir(dir.path(), None);
    with_deadline(&manifest);
    let out = dir.path().join("out");
    let output = trainer_train(&manifest, &out, &["--deadline", PAST])
        .output()
        .unwrap();
    expect(&output, 2);
    let events = events(&output.stdout);
    assert_eq!(
        failed_phase(&events).as_deref(),
        Some(
            "ran past spec.activeDeadlineSeconds (3600 s) at step 0/10; no step was taken, so there is no checkpoint"
        )
    );
    assert!(!out.join("team-a/cli/r1/checkpoints").exists());

    let output = trainer_train(&manifest, &out, &["--deadline", "tomorrow"])
        .output()
        .unwrap();
    expect(&output, 2);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("\"tomorrow\" is not an RFC 3339 time such as 2026-12-05T18:00:00Z"),
        "{stderr}"
    );
}
