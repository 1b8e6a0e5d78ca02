//! `trainer train` and `trainer fetch` with models from a hub (a fake Hugging Face
//! Hub and ModelScope on loopback): the hub model trains exactly as the same folder on
//! disk, a second job downloads nothing, a gated model without a token and an
//! unreachable hub fail with what to do.

use std::path::{Path, PathBuf};
use std::process::Command;

use anneal_fake_hub::FakeHub;

use crate::train_cli::{expect, job_dir, repo, trainer_train};

fn tiny_model() -> PathBuf {
    repo().join("examples/models/anneal-tiny")
}

/// Bytes of the tiny model's files a download takes (all but its README.md).
fn tiny_model_bytes() -> u64 {
    std::fs::read_dir(tiny_model())
        .unwrap()
        .map(|entry| entry.unwrap())
        .filter(|entry| entry.file_name() != "README.md")
        .map(|entry| entry.metadata().unwrap().len())
        .sum()
}

/// The job folder of `train_cli`, its base model given as `base_model` (YAML).
fn hub_job(dir: &Path, base_model: &str) -> PathBuf {
    let manifest = job_dir(dir, None);
    let text = std::fs::read_to_string(&manifest).unwrap();
    let line = text
        .lines()
        .find(|line| line.trim_start().starts_with("baseModel:"))
        .unwrap()
        .to_owned();
    std::fs::write(
        &manifest,
        text.replace(&line, &format!("  baseModel: {base_model}")),
    )
    .unwrap();
    manifest
}

pub fn with_hub(mut command: Command, hub: &FakeHub, cache: &Path) -> Command {
    command
        .env("HF_ENDPOINT", hub.endpoint())
        .env("MODELSCOPE_ENDPOINT", hub.endpoint())
        .env("ANNEAL_MODEL_CACHE", cache)
        .env_remove("HF_TOKEN")
        .env_remove("HUGGING_FACE_HUB_TOKEN");
    command
}

fn final_adapter(output: &Path) -> Vec<u8> {
    std::fs::read(output.join("team-a/cli/r1/final/adapter_model.safetensors")).unwrap()
}

#[test]
fn a_hub_model_trains_as_its_folder_does_and_a_second_job_downloads_nothing() {
    let hub = FakeHub::start();
    hub.publish_folder("anneal/tiny", "main", &tiny_model());
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let out = dir.path().join("out");

    let by_uri = hub_job(
        dir.path(),
        r#"{name: anneal/tiny, source: "hf://anneal/tiny@main"}"#,
    );
    let first = with_hub(trainer_train(&by_uri, &out, &[]), &hub, &cache)
        .output()
        .unwrap();
    expect(&first, 0);
    assert_eq!(hub.bytes_served(), tiny_model_bytes());
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(
        stderr.contains("hf://anneal/tiny@main: commit "),
        "{stderr}"
    );

    // The same job on the folder itself learns the very same adapter.
    let local = job_dir(dir.path(), None);
    let out_local = dir.path().join("out-local");
    expect(&trainer_train(&local, &out_local, &[]).output().unwrap(), 0);
    assert_eq!(final_adapter(&out), final_adapter(&out_local));

    // By name alone, on the cache the first job filled.
    let by_name = hub_job(dir.path(), "{name: anneal/tiny}");
    let second = with_hub(
        trainer_train(&by_name, &dir.path().join("out-2"), &[]),
        &hub,
        &cache,
    )
    .output()
    .unwrap();
    expect(&second, 0);
    assert_eq!(
        hub.bytes_served(),
        tiny_model_bytes(),
        "the second job downloads nothing"
    );
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains("hf://anneal/tiny: commit ") && stderr.contains(", 0 bytes downloaded"),
        "{stderr}"
    );
}

#[test]
fn a_gated_model_without_a_token_fails_before_training_saying_what_to_do() {
    let hub = FakeHub::start();
    hub.publish_folder("meta-llama/tiny", "main", &tiny_model());
    hub.gate("meta-llama/tiny", "hf_reader");
    let dir = tempfile::tempdir().unwrap();
    let manifest = hub_job(
        dir.path(),
        r#"{name: meta-llama/tiny, source: "hf://meta-llama/tiny"}"#,
    );
    let out = dir.path().join("out");
    let output = with_hub(
        trainer_train(&manifest, &out, &[]),
        &hub,
        &dir.path().join("cache"),
    )
    .output()
    .unwrap();
    expect(&output, 2);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("trainer train: spec.baseModel.source: hf://meta-llama/tiny: the model is gated and needs a token: accept its license on the hub, then put a token that can read it in HF_TOKEN"),
        "{stderr}"
    );
    assert!(!out.join("team-a/cli/r1").exists());

    let mut with_token = with_hub(
        trainer_train(&manifest, &out, &[]),
        &hub,
        &dir.path().join("cache"),
    );
    with_token.env("HF_TOKEN", "hf_reader");
    expect(&with_token.output().unwrap(), 0);
}

#[test]
fn an_unreachable_hub_is_worth_a_retry_and_says_how_to_train_without_it() {
    let hub = FakeHub::start();
    hub.set_down(true);
    let dir = tempfile::tempdir().unwrap();
    let output = with_hub(
        trainer_train(
            &repo().join("examples/support-sft.yaml"),
            &dir.path().join("out"),
            &[],
        ),
        &hub,
        &dir.path().join("cache"),
    )
    .output()
    .unwrap();
    expect(&output, 1);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("spec.baseModel.source: ")
            && stderr.contains("HTTP 503")
            && stderr.contains("add --base-model examples/models/anneal-tiny"),
        "{stderr}"
    );
}

#[test]
fn fetch_links_a_modelscope_snapshot_and_fetches_it_once() {
    let hub = FakeHub::start();
    hub.publish_folder("anneal/tiny", "master", &tiny_model());
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    for target in ["base", "again"] {
        let mut fetch = Command::new(env!("CARGO_BIN_EXE_trainer"));
        fetch
            .args(["fetch", "modelscope://anneal/tiny"])
            .arg(dir.path().join(target));
        let output = with_hub(fetch, &hub, &cache).output().unwrap();
        expect(&output, 0);
        let linked = dir.path().join(target);
        assert!(std::fs::symlink_metadata(&linked).unwrap().is_symlink());
        assert_eq!(
            std::fs::read(linked.join("model.safetensors")).unwrap(),
            std::fs::read(tiny_model().join("model.safetensors")).unwrap()
        );
    }
    assert_eq!(hub.bytes_served(), tiny_model_bytes());

    let mut missing = Command::new(env!("CARGO_BIN_EXE_trainer"));
    missing
        .args(["fetch", "modelscope://anneal/nothing"])
        .arg(dir.path().join("x"));
    let output = with_hub(missing, &hub, &cache).output().unwrap();
    expect(&output, 2);
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("modelscope://anneal/nothing: no such repository")
    );
}
