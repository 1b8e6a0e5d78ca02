//! DPO against SFT throughput on the CPU backend, on the same preference data: SFT
//! steps train on each pair's prompt and chosen reply, DPO steps on the pair (both
//! replies, one forward pass for them, plus the reference's pass without gradients).
//! Prints one JSON line with `tokens_per_second` (input positions of the trained
//! model's forward and backward per second, padding included), `examples_per_second`
//! (samples for SFT, pairs for DPO) and `peak_rss_mib`; benches/dpo_cpu.py runs it for
//! both methods, each in its own process, and writes the comparison.
//!
//! cargo bench -p anneal-trainer --bench dpo -- MODEL_DIR DATA_JSONL --method sft|dpo
//!     [--training lora|full] [--batch N] [--steps N] [--warmup N]
//!     [--gradient-checkpointing]
//!
//! `--gradient-checkpointing` recomputes each layer in the backward pass, as training
//! does by default; without it the layers' activations are kept.
//!
//! (cargo runs benches in `trainer/`: give absolute paths.)

mod common;

use std::path::PathBuf;
use std::time::Instant;

use anneal_crds::finetunejob::TrainingType;
use anneal_crds::hyperparameters::TargetModule;
use anneal_model::chat::ModelTokenizer;
use anneal_model::llm::load_model;
use anneal_model::lora::{LoraSettings, attach};
use anneal_train::backward::LayerActivations;
use anneal_train::dpo::data::{PreferencePair, prepare_pairs};
use anneal_train::dpo::loss::{DpoConfig, PairBatch};
use anneal_train::dpo::reference::Reference;
use anneal_train::dpo::step::dpo_step;
use anneal_train::optimizer::adamw;
use anneal_train::sft::step::sft_step;
use anneal_train::step_settings::StepSettings;
use anneal_train::tensor_batch::Batch;
use anneal_train::train_backend::CpuTrainBackend;
use burn::tensor::DType;

type B = CpuTrainBackend;

const MAX_TOKENS: usize = 256;
const LEARNING_RATE: f64 = 1e-3;

fn main() {
    let mut positional = Vec::new();
    let (mut method, mut training) = (String::from("sft"), String::from("lora"));
    let (mut batch, mut steps, mut warmup) = (4usize, 10usize, 2usize);
    let mut activations = LayerActivations::Kept;
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    while let Some(arg) = args.next() {
        let mut value = || args.next().expect("a value after the flag");
        match arg.as_str() {
            "--method" => method = value(),
            "--training" => training = value(),
            "--batch" => batch = value().parse().expect("--batch N"),
            "--steps" => steps = value().parse().expect("--steps N"),
            "--warmup" => warmup = value().parse().expect("--warmup N"),
            "--gradient-checkpointing" => activations = LayerActivations::Recomputed,
            _ if !arg.starts_with("--") => positional.push(PathBuf::from(arg)),
            _ => panic!("unexpected argument {arg:?}"),
        }
    }
    let [model_dir, data] = positional.as_slice() else {
        panic!("usage: dpo MODEL_DIR DATA_JSONL --method sft|dpo [--training lora|full]");
    };

    let device = Default::default();
    let (config, model) = load_model::<B>(model_dir, &device, DType::F32).expect("the model loads");
    let tokenizer = ModelTokenizer::from_model_dir(model_dir, &config.architecture)
        .expect("the tokenizer loads");
    let bytes = std::fs::read(data).expect("the data reads");
    let pairs = prepare_pairs(bytes.as_slice(), &tokenizer, MAX_TOKENS)
        .expect("the data is a DPO dataset")
        .pairs;
    let chunks: Vec<Vec<&PreferencePair>> = pairs
        .chunks(batch)
        .filter(|c| c.len() == batch)
        .map(|c| c.iter().collect())
        .collect();
    assert!(!chunks.is_empty(), "fewer pairs than one batch");

    let training = match training.as_str() {
        "lora" => TrainingType::Lora,
        "full" => TrainingType::Full,
        other => panic!("--training {other}: lora or full"),
    };
    let settings = LoraSettings {
        rank: 8,
        alpha: 16.0,
        dropout: 0.0,
        target_modules: TargetModule::ALL.to_vec(),
        use_rslora: false,
        seed: 0,
    };
    let mut model = match training {
        TrainingType::Lora => attach(model, &settings),
        TrainingType::Full => model,
    };
    let reference = Reference::for_training(training, false, &model);
    let dpo = DpoConfig::new();
    let mut optimizer = adamw::<B, _>(0.0);
    let settings = StepSettings {
        learning_rate: LEARNING_RATE,
        max_grad_norm: 1.0,
        activations,
    };

    // Batch tensors are built once, outside the timed loop, as a data loader would.
    let sft_batches: Vec<Batch<B>> = chunks
        .iter()
        .map(|c| Batch::new(&c.iter().map(|p| &p.chosen).collect::<Vec<_>>(), &device))
        .collect();
    let pair_batches: Vec<PairBatch<B>> =
        chunks.iter().map(|c| PairBatch::new(c, &device)).collect();

    let (mut positions, mut examples) = (0usize, 0usize);
    let mut start = Instant::now();
    for step in 0..warmup + steps {
        if step == warmup {
            start = Instant::now();
        }
        let k = step % chunks.len();
        // Each step reads its loss back to the host, so it has finished when it returns.
        let (step_positions, step_examples) = match method.as_str() {
            "sft" => {
                let (next, stats) = sft_step(
                    model,
                    &mut optimizer,
                    std::slice::from_ref(&sft_batches[k]),
                    settings,
                );
                model = next;
                (stats.positions, batch)
            }
            "dpo" => {
                let (next, stats) = dpo_step(
                    model,
                    &reference,
                    &dpo,
                    &mut optimizer,
                    std::slice::from_ref(&pair_batches[k]),
                    settings,
                );
                model = next;
                (stats.positions, stats.pairs)
            }
            other => panic!("--method {other}: sft or dpo"),
        };
        if step >= warmup {
            positions += step_positions;
            examples += step_examples;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "method": method,
            "training": format!("{training:?}").to_lowercase(),
            "batch": batch,
            "steps": steps,
            "warmup_steps": warmup,
            "positions": positions,
            "seconds": seconds,
            "tokens_per_second": positions as f64 / seconds,
            "examples_per_second": examples as f64 / seconds,
            "peak_rss_mib": common::peak_rss_mib(),
        })
    );
}
