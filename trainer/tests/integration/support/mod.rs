//! Shared by the trainer's integration tests: where the reference checkpoints are,
//! and reading their transformers outputs. (A real S3-compatible server for tests is
//! crate `anneal-moto`.)
// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// A checkpoint under tests/fixtures/reference/ (`qwen2-tiny` or `llama3-tiny`).
pub fn fixture(model: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/reference")
        .join(model)
}

/// The Qwen2 reference checkpoint.
pub fn qwen() -> PathBuf {
    fixture("qwen2-tiny")
}

/// The transformers outputs recorded beside a checkpoint.
pub fn reference(model: &str) -> Value {
    let text = std::fs::read_to_string(fixture(model).join("reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A JSON array of token ids.
pub fn ids(value: &Value) -> Vec<u32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect()
}

/// Runs `trainer generate --model MODEL --device cpu --json ARGS...`.
pub fn trainer_generate(model: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trainer"))
        .arg("generate")
        .arg("--model")
        .arg(model)
        .args(["--device", "cpu", "--json"])
        .args(args)
        .output()
        .unwrap()
}

/// The JSON object on the last line of a successful command's stdout.
pub fn last_json(output: &Output) -> Value {
    let stdout = String::from_utf8(output.stdout.clone()).unwrap();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

/// burn's CPU backend has one random generator per process, and the tests in this
/// binary run side by side: a test that seeds it and draws from it (LoRA init,
/// dropout, a training run's per-step seed) holds this for its whole length, so that
/// no other test reseeds or draws in between.
pub fn generator_turn() -> std::sync::MutexGuard<'static, ()> {
    static GENERATOR: std::sync::Mutex<()> = std::sync::Mutex::new(());
    // A failed test poisons the lock; the others still take their turns.
    GENERATOR
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
