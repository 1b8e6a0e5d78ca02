//! Shared by the trainer's integration tests: where the reference checkpoints are,
//! and reading their transformers outputs. (A real S3-compatible server for tests is
//! crate `anneal-moto`.)
// Each test binary uses a different part of this module.
#![allow(dead_code)]

pub mod fake_openai;
pub mod serve;

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

/// The Qwen2 reference checkpoint on the CPU training backend, its base in `dtype`.
pub fn qwen_for_training(
    dtype: burn::tensor::DType,
) -> anneal_model::llm::CausalLm<anneal_train::train_backend::CpuTrainBackend> {
    let device = Default::default();
    anneal_model::llm::load_model(&qwen(), &device, dtype)
        .unwrap()
        .1
}

/// Rank-4 LoRA on every projection of `model`, with `dropout`, and B given seeded
/// values: PEFT starts B at zero, which leaves A without gradient, and tests that
/// compare two backward passes want every adapter to have one.
pub fn lora_with_nonzero_b(
    model: anneal_model::llm::CausalLm<anneal_train::train_backend::CpuTrainBackend>,
    dropout: f64,
) -> anneal_model::llm::CausalLm<anneal_train::train_backend::CpuTrainBackend> {
    use anneal_model::lora::{LoraSettings, attach, projections_mut};
    use burn::module::Param;
    use burn::prelude::*;
    use burn::tensor::Distribution;
    type A = anneal_train::train_backend::CpuTrainBackend;

    let device = Default::default();
    let settings = LoraSettings {
        rank: 4,
        alpha: 8.0,
        dropout,
        target_modules: anneal_crds::hyperparameters::TargetModule::ALL.to_vec(),
        use_rslora: false,
        seed: 3,
    };
    let mut model = attach(model, &settings);
    A::seed(&device, 11);
    for (_, _, projection) in projections_mut(&mut model) {
        let lora = projection.lora.as_mut().unwrap();
        let b = lora.b.val();
        let values = Tensor::random(b.shape(), Distribution::Normal(0.0, 0.05), &device);
        lora.b = Param::initialized(lora.b.id, values.require_grad());
    }
    model
}

/// Two rows of different lengths (70 and 33 tokens) with their first tokens untrained.
pub fn two_row_batch()
-> anneal_train::tensor_batch::Batch<anneal_train::train_backend::CpuTrainBackend> {
    use anneal_train::tokenized::TokenizedSample;
    let sample = |ids: Vec<u32>, trained_from: usize| TokenizedSample {
        line: 1,
        mask: (0..ids.len()).map(|i| i >= trained_from).collect(),
        ids,
    };
    let long = sample((0..70).map(|i| (i * 37 % 500) as u32).collect(), 20);
    let short = sample((0..33).map(|i| (i * 11 % 500 + 3) as u32).collect(), 5);
    anneal_train::tensor_batch::Batch::new(&[&long, &short], &Default::default())
}

/// Keeps every event of a run; sets `stop` once a step at or past `stop_at` has
/// finished, as a SIGTERM would.
pub struct Recorder {
    pub events: std::sync::Arc<std::sync::Mutex<Vec<anneal_crds::events::TrainerEvent>>>,
    pub stop: Option<(u64, std::sync::Arc<std::sync::atomic::AtomicBool>)>,
}

impl anneal_train::event_log::EventSink for Recorder {
    fn emit(&mut self, event: &anneal_crds::events::TrainerEvent) {
        if let (anneal_crds::events::EventBody::Progress(p), Some((at, flag))) =
            (&event.body, &self.stop)
            && p.step >= *at
        {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        self.events.lock().unwrap().push(event.clone());
    }
}

/// A runtime for a test's HTTP requests (reqwest is async), TLS provider installed.
pub fn http_runtime() -> tokio::runtime::Runtime {
    anneal_crds::storage::install_crypto_provider();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}
