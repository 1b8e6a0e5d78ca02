//! Training that fails loudly (`trainer train` as a user runs it): a run whose loss
//! turns NaN stops with exit 2 at that step, names the last good checkpoint and the
//! likely cause, writes nothing after it, and resumes from it; a base model with NaN
//! weights, nonsense config values or no finite output is refused with exit 2.

use std::path::{Path, PathBuf};

use anneal_crds::events::{EventBody, LogLevel};
use anneal_crds::finetunejob::JobPhase;
use safetensors::SafeTensors;
use safetensors::tensor::TensorView;

use crate::train_cli::{events, expect, job_dir, repo, trainer_train};

/// The tiny model copied to `dir`, with `model.norm.weight` set to `value` everywhere
/// and config.json's `field` (if any) set to the JSON `json`.
fn altered_tiny_model(dir: &Path, value: f32, config: Option<(&str, &str)>) -> PathBuf {
    let model = dir.join("altered-model");
    std::fs::create_dir_all(&model).unwrap();
    let source = repo().join("examples/models/anneal-tiny");
    for entry in std::fs::read_dir(&source).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), model.join(entry.file_name())).unwrap();
    }
    let bytes = std::fs::read(source.join("model.safetensors")).unwrap();
    let tensors = SafeTensors::deserialize(&bytes).unwrap();
    let norm = tensors.tensor("model.norm.weight").unwrap();
    let altered: Vec<u8> = (0..norm.shape().iter().product::<usize>())
        .flat_map(|_| value.to_le_bytes())
        .collect();
    let views: Vec<(String, TensorView)> = tensors
        .names()
        .into_iter()
        .map(|name| {
            let view = tensors.tensor(name).unwrap();
            let view = if name == "model.norm.weight" {
                TensorView::new(view.dtype(), view.shape().to_vec(), &altered).unwrap()
            } else {
                view
            };
            (name.to_owned(), view)
        })
        .collect();
    safetensors::serialize_to_file(views, None, &model.join("model.safetensors")).unwrap();
    if let Some((field, json)) = config {
        let path = model.join("config.json");
        let mut config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        config[field] = serde_json::from_str(json).unwrap();
        std::fs::write(&path, config.to_string()).unwrap();
    }
    model
}

fn last_stderr_line(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn a_nan_loss_stops_the_run_there_and_a_resume_ends_like_a_clean_run() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = job_dir(dir.path(), None);
    let clean = dir.path().join("clean");
    expect(&trainer_train(&manifest, &clean, &[]).output().unwrap(), 0);

    let faulty = dir.path().join("faulty");
    let termination_log = dir.path().join("termination-log");
    let output = trainer_train(&manifest, &faulty, &[])
        .env("ANNEAL_FAULT_NAN_LOSS_AT_STEP", "3")
        .env("ANNEAL_TERMINATION_LOG", &termination_log)
        .output()
        .unwrap();
    expect(&output, 2);
    // A pod's termination message: the reason the operator puts on the Failed condition.
    let message = std::fs::read_to_string(&termination_log).unwrap();
    assert!(
        message.starts_with("Diverged: training diverged at step 3: the training loss is NaN;"),
        "{message}"
    );
    let line = last_stderr_line(&output);
    assert!(
        line.starts_with(
            "trainer train: training diverged at step 3: the training loss is NaN; \
             the last good checkpoint is ckpt-2 (kept); likely cause: the learning rate ("
        ) && line.contains("lower hyperparameters.learningRate"),
        "{line}"
    );
    // The events say so too (the operator's status and Kubernetes Events read them),
    // and no figure of step 3 was published.
    let events = events(&output.stdout);
    let said = |level_or_phase: &dyn Fn(&EventBody) -> bool| {
        events.iter().any(|e| level_or_phase(&e.body))
    };
    assert!(said(
        &|b| matches!(b, EventBody::Log { level: LogLevel::Error, message } if message.starts_with("training diverged at step 3"))
    ));
    assert!(said(
        &|b| matches!(b, EventBody::Phase { phase: JobPhase::Failed, message: Some(m), .. } if m.contains("ckpt-2"))
    ));
    assert!(!said(&|b| matches!(b, EventBody::Metrics { step: 3, .. })));
    let run = faulty.join("team-a/cli/r1");
    let checkpoints: Vec<String> = std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        checkpoints,
        ["ckpt-2"],
        "nothing after the last good checkpoint"
    );
    assert!(!run.join("final").exists());

    // Resumed without the fault, the run ends on the same adapter as the clean one.
    let resumed = trainer_train(&manifest, &faulty, &["--resume"])
        .output()
        .unwrap();
    expect(&resumed, 0);
    for file in ["adapter_model.safetensors", "adapter_config.json"] {
        assert!(
            std::fs::read(clean.join("team-a/cli/r1/final").join(file)).unwrap()
                == std::fs::read(run.join("final").join(file)).unwrap(),
            "final/{file} differs from the clean run's"
        );
    }
}

#[test]
fn a_base_model_with_no_finite_output_fails_at_step_one_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = job_dir(dir.path(), None);
    // Finite weights whose final norm overflows f32: every logit is inf or NaN.
    let model = altered_tiny_model(dir.path(), 3.0e38, None);
    let out = dir.path().join("out");
    let output = trainer_train(&manifest, &out, &["--base-model", model.to_str().unwrap()])
        .output()
        .unwrap();
    expect(&output, 2);
    let line = last_stderr_line(&output);
    assert!(
        line.starts_with("trainer train: training diverged at step 1: the training loss is ")
            && line.contains("no checkpoint was written before it")
            && line.contains("the base model gives no finite output"),
        "{line}"
    );
    let run = out.join("team-a/cli/r1");
    assert!(!run.join("checkpoints").exists() && !run.join("final").exists());
}

#[test]
fn nan_weights_and_nonsense_config_values_are_refused_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = job_dir(dir.path(), None);
    let cases = [
        (f32::NAN, None, "model.norm.weight"),
        (
            1.0,
            Some(("rms_norm_eps", "-1")),
            "rms_norm_eps is -1: a finite number above 0",
        ),
        (
            1.0,
            Some(("rope_theta", "0")),
            "rope_theta is 0: a finite number above 0",
        ),
        (
            1.0,
            Some(("max_position_embeddings", "0")),
            "max_position_embeddings is 0: between 1 and 16777216",
        ),
    ];
    for (norm, config, message) in cases {
        let case = tempfile::tempdir_in(dir.path()).unwrap();
        let model = altered_tiny_model(case.path(), norm, config);
        let out = case.path().join("out");
        let output = trainer_train(&manifest, &out, &["--base-model", model.to_str().unwrap()])
            .output()
            .unwrap();
        expect(&output, 2);
        let line = last_stderr_line(&output);
        assert!(line.contains(message), "{config:?}: {line}");
        if norm.is_nan() {
            assert!(
                line.contains("element 0 in ") && line.contains(" is NaN"),
                "{line}"
            );
        }
        assert!(
            !out.join("team-a/cli/r1/checkpoints").exists(),
            "{config:?}"
        );
    }
}
