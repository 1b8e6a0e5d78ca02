//! LoRA SFT throughput and peak memory on the CPU backend: timed
//! `sft::step::sft_step` calls (forward, backward, global-norm clipping, AdamW on
//! the adapters) over fixed token batches. Prints one JSON line with
//! `tokens_per_second` (input positions per second, padding included),
//! `peak_rss_mib` and every step's loss, read by benches/sft_cpu.py, which runs
//! transformers + PEFT on the same checkpoint, batches and settings for the ratio.
//!
//! cargo bench -p anneal-trainer --bench sft -- MODEL_DIR [--spec FILE]
//!     [--init-adapter DIR] [--save-adapter DIR] [--gradient-checkpointing]
//!
//! (cargo runs benches in `trainer/`: give absolute paths.)
//!
//! `--spec` is a JSON file with the settings and the batches (see [`Spec`]); without
//! it the defaults below train on token ids spread over the vocabulary.
//! `--init-adapter` starts from a PEFT adapter folder instead of a fresh `attach`, so
//! both implementations can start from the same weights when their losses are
//! compared (the loaded adapter has no dropout). `--save-adapter` writes the trained
//! adapter in PEFT format after the timed steps. `--gradient-checkpointing`
//! recomputes each layer in the backward pass as training does by default; without
//! it the layers' activations are kept, as in benches/sft_cpu.py's PEFT run.

mod common;

use std::path::PathBuf;
use std::time::Instant;

use anneal_crds::hyperparameters::TargetModule;
use anneal_model::llm::load_model;
use anneal_model::lora::peft::{load_adapter, save_adapter};
use anneal_model::lora::{LoraSettings, attach};
use anneal_train::backward::LayerActivations;
use anneal_train::optimizer::adamw;
use anneal_train::sft::step::sft_step;
use anneal_train::step_settings::StepSettings;
use anneal_train::tensor_batch::Batch;
use anneal_train::tokenized::TokenizedSample;
use anneal_train::train_backend::CpuTrainBackend;
use burn::tensor::DType;
use serde::Deserialize;

type B = CpuTrainBackend;

/// What to train and how; benches/sft_cpu.py writes one and gives PEFT the same.
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Spec {
    rank: usize,
    alpha: f64,
    dropout: f64,
    seed: u64,
    learning_rate: f64,
    weight_decay: f64,
    max_grad_norm: f64,
    /// Untimed steps first (allocation, first-touch), then `steps` timed ones.
    warmup_steps: usize,
    steps: usize,
    /// One micro-batch per step, step `k` taking `batches[k % len]`: each batch is a
    /// list of samples of `ids` and a trained-token `mask` of the same length.
    batches: Vec<Vec<Sample>>,
}

#[derive(Deserialize)]
struct Sample {
    ids: Vec<u32>,
    mask: Vec<bool>,
}

impl Default for Spec {
    fn default() -> Self {
        Self {
            rank: 8,
            alpha: 16.0,
            dropout: 0.05,
            seed: 0,
            learning_rate: 1e-3,
            weight_decay: 0.0,
            max_grad_norm: 1.0,
            warmup_steps: 2,
            steps: 10,
            batches: Vec::new(),
        }
    }
}

/// Four samples of 257 ids (256 input positions) spread over the vocabulary, the
/// first quarter of each a prompt that is not trained on.
fn default_batch(vocab: usize) -> Vec<Sample> {
    (0..4)
        .map(|row| Sample {
            ids: (0..257)
                .map(|t| (((row * 257 + t) * 7919) % vocab) as u32)
                .collect(),
            mask: (0..257).map(|t| t >= 64).collect(),
        })
        .collect()
}

fn main() {
    let mut model_dir = None;
    let (mut spec_path, mut init_adapter, mut save_to) = (None, None, None);
    let mut activations = LayerActivations::Kept;
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    while let Some(arg) = args.next() {
        let mut value = || PathBuf::from(args.next().expect("a value after the flag"));
        match arg.as_str() {
            "--spec" => spec_path = Some(value()),
            "--init-adapter" => init_adapter = Some(value()),
            "--save-adapter" => save_to = Some(value()),
            "--gradient-checkpointing" => activations = LayerActivations::Recomputed,
            _ if model_dir.is_none() && !arg.starts_with("--") => {
                model_dir = Some(PathBuf::from(arg))
            }
            _ => panic!(
                "unexpected argument {arg:?}; usage: sft MODEL_DIR [--spec FILE] [--init-adapter DIR] [--save-adapter DIR] [--gradient-checkpointing]"
            ),
        }
    }
    let model_dir = model_dir.expect("usage: sft MODEL_DIR [--spec FILE] ...");
    let mut spec: Spec = spec_path.map_or_else(Spec::default, |path| {
        let text = std::fs::read_to_string(&path).expect("the spec file reads");
        serde_json::from_str(&text).expect("the spec file parses")
    });

    let device = Default::default();
    let (config, model) =
        load_model::<B>(&model_dir, &device, DType::F32).expect("the model loads");
    if spec.batches.is_empty() {
        spec.batches.push(default_batch(config.vocab_size));
    }
    let settings = LoraSettings {
        rank: spec.rank,
        alpha: spec.alpha,
        dropout: spec.dropout,
        target_modules: TargetModule::ALL.to_vec(),
        use_rslora: false,
        seed: spec.seed,
    };
    let mut model = match &init_adapter {
        Some(dir) => load_adapter(model, dir).expect("the initial adapter loads"),
        None => attach(model, &settings),
    };

    // Batch tensors are built once, outside the timed loop, as a data loader running
    // ahead of the step would have them ready.
    let batches: Vec<Batch<B>> = spec
        .batches
        .iter()
        .enumerate()
        .map(|(i, samples)| {
            let samples: Vec<TokenizedSample> = samples
                .iter()
                .map(|s| {
                    assert_eq!(s.ids.len(), s.mask.len(), "batch {i}: ids and mask differ");
                    TokenizedSample {
                        line: i as u64,
                        ids: s.ids.clone(),
                        mask: s.mask.clone(),
                    }
                })
                .collect();
            Batch::new(&samples.iter().collect::<Vec<_>>(), &device)
        })
        .collect();

    let mut optimizer = adamw::<B, _>(spec.weight_decay);
    let mut losses = Vec::new();
    let mut positions = 0;
    let mut start = Instant::now();
    for step in 0..spec.warmup_steps + spec.steps {
        if step == spec.warmup_steps {
            start = Instant::now();
        }
        let batch = &batches[step % batches.len()];
        // The step reads its loss back to the host, so it has finished when it returns.
        let (next, stats) = sft_step(
            model,
            &mut optimizer,
            std::slice::from_ref(batch),
            StepSettings {
                learning_rate: spec.learning_rate,
                max_grad_norm: spec.max_grad_norm,
                activations,
            },
        );
        model = next;
        losses.push(stats.loss);
        if step >= spec.warmup_steps {
            positions += stats.positions;
        }
    }
    let seconds = start.elapsed().as_secs_f64();

    if let Some(dir) = &save_to {
        let name = model_dir.display().to_string();
        save_adapter(&mut model, &settings, &name, dir).expect("the adapter saves");
    }
    println!(
        "{}",
        serde_json::json!({
            "implementation": "anneal (burn flex, f32)",
            "warmup_steps": spec.warmup_steps,
            "steps": spec.steps,
            "positions": positions,
            "seconds": seconds,
            "tokens_per_second": positions as f64 / seconds,
            "peak_rss_mib": common::peak_rss_mib(),
            "losses": losses,
        })
    );
}
