//! LoRA SFT steps on the reference Qwen2 checkpoint: the loss falls on data it
//! trains on, the frozen base does not move, and the run is repeatable.

use std::fs::File;
use std::path::{Path, PathBuf};

use anneal_crds::hyperparameters::TargetModule;
use anneal_model::backend::CpuTrainBackend;
use anneal_model::chat::ModelTokenizer;
use anneal_model::llm::load_model;
use anneal_model::lora::{LoraSettings, attach, projections_mut};
use anneal_train::optimizer::adamw;
use anneal_train::sft::data::prepare;
use anneal_train::sft::step::sft_step;
use anneal_train::tensor_batch::Batch;
use anneal_train::tokenized::TokenizedSample;
use burn::tensor::DType;

type B = CpuTrainBackend;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn samples() -> Vec<TokenizedSample> {
    let model = root().join("tests/fixtures/reference/qwen2-tiny");
    let tokenizer = ModelTokenizer::from_model_dir(&model, "Qwen2ForCausalLM").unwrap();
    let data = File::open(root().join("../examples/datasets/support-sft.jsonl")).unwrap();
    let prepared = prepare(data, &tokenizer, 400).unwrap();
    prepared.samples.into_iter().take(4).collect()
}

/// Trains `steps` steps on the same 4 samples (2 micro-batches of 2), returning the
/// losses and the first layer's frozen q_proj weight and adapter B afterwards.
fn run(steps: usize) -> (Vec<f64>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let device = Default::default();
    let model_dir = root().join("tests/fixtures/reference/qwen2-tiny");
    let (_, model) = load_model::<B>(&model_dir, &device, DType::F32).unwrap();
    let settings = LoraSettings {
        rank: 8,
        alpha: 16.0,
        dropout: 0.0,
        target_modules: TargetModule::ALL.to_vec(),
        use_rslora: false,
        seed: 5,
    };
    let mut model = attach(model, &settings, &device);
    let base_before = projections_mut(&mut model)[0]
        .2
        .base
        .weight
        .val()
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    let samples = samples();
    let mut optimizer = adamw::<B>(0.0);
    let mut losses = Vec::new();
    for _ in 0..steps {
        let micro: Vec<Batch<B>> = samples
            .chunks(2)
            .map(|c| Batch::new(&c.iter().collect::<Vec<_>>(), &device))
            .collect();
        let (next, stats) = sft_step(model, &mut optimizer, &micro, 1e-2, 1.0);
        model = next;
        losses.push(stats.loss);
    }
    let first = &mut projections_mut(&mut model)[0].2;
    let base_after = first.base.weight.val().into_data().to_vec::<f32>().unwrap();
    let adapter_b = first
        .lora
        .as_ref()
        .unwrap()
        .b
        .val()
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    (losses, base_before, base_after, adapter_b)
}

#[test]
fn loss_falls_the_base_stays_and_runs_repeat() {
    let _generator = crate::support::generator_turn();
    let (losses, base_before, base_after, adapter_b) = run(25);
    let (first, last) = (losses[0], *losses.last().unwrap());
    assert!(
        last < first * 0.5,
        "loss {first:.3} -> {last:.3}: {losses:?}"
    );
    assert_eq!(base_before, base_after, "the frozen base weight moved");
    assert!(
        adapter_b.iter().any(|&v| v != 0.0),
        "the adapter did not train"
    );

    let (losses_again, _, _, adapter_b_again) = run(25);
    assert_eq!(losses, losses_again, "two runs with one seed differ");
    assert_eq!(adapter_b, adapter_b_again);
}
