//! LoRA SFT steps on the reference Qwen2 checkpoint: the loss falls on data it
//! trains on, the frozen base does not move, the run is repeatable, and recomputing
//! the layers in the backward pass (gradient checkpointing) gives the steps of
//! keeping their activations.

use std::fs::File;
use std::path::{Path, PathBuf};

use anneal_crds::hyperparameters::TargetModule;
use anneal_model::chat::ModelTokenizer;
use anneal_model::llm::load_model;
use anneal_model::lora::{LoraSettings, attach, projections_mut};
use anneal_train::backward::LayerActivations;
use anneal_train::optimizer::adamw;
use anneal_train::sft::data::prepare;
use anneal_train::sft::step::sft_step;
use anneal_train::step_settings::StepSettings;
use anneal_train::tensor_batch::Batch;
use anneal_train::tokenized::TokenizedSample;
use anneal_train::train_backend::CpuTrainBackend;
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

/// The losses, then the first layer's frozen q_proj weight before and after, and its
/// adapter B after.
type Trained = (Vec<f64>, Vec<f32>, Vec<f32>, Vec<f32>);

/// Trains `steps` steps on the same 4 samples (2 micro-batches of 2).
fn run(steps: usize) -> Trained {
    run_with(steps, LayerActivations::Recomputed).0
}

/// [`run`] with the backward pass's activations; also each step's gradient norm.
fn run_with(steps: usize, activations: LayerActivations) -> (Trained, Vec<f64>) {
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
    let mut model = attach(model, &settings);
    let base_before = projections_mut(&mut model)[0]
        .2
        .base
        .weight
        .val()
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    let samples = samples();
    let settings = StepSettings {
        learning_rate: 1e-2,
        max_grad_norm: 1.0,
        activations,
    };
    let mut optimizer = adamw::<B, _>(0.0);
    let (mut losses, mut grad_norms) = (Vec::new(), Vec::new());
    for _ in 0..steps {
        let micro: Vec<Batch<B>> = samples
            .chunks(2)
            .map(|c| Batch::new(&c.iter().collect::<Vec<_>>(), &device))
            .collect();
        let (next, stats) = sft_step(model, &mut optimizer, &micro, settings);
        model = next;
        losses.push(stats.loss);
        grad_norms.push(stats.grad_norm);
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
    ((losses, base_before, base_after, adapter_b), grad_norms)
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

#[test]
fn recomputed_layers_give_the_steps_of_kept_ones() {
    let _generator = crate::support::generator_turn();
    let ((kept, _, _, kept_b), kept_norms) = run_with(5, LayerActivations::Kept);
    let ((recomputed, _, _, recomputed_b), recomputed_norms) =
        run_with(5, LayerActivations::Recomputed);
    let relative = |a: f64, b: f64| (a - b).abs() / b.abs();
    for (step, (r, k)) in recomputed.iter().zip(&kept).enumerate() {
        assert!(relative(*r, *k) <= 1e-5, "step {step}: loss {r} vs {k}");
        let (rn, kn) = (recomputed_norms[step], kept_norms[step]);
        assert!(
            relative(rn, kn) <= 1e-5,
            "step {step}: grad norm {rn} vs {kn}"
        );
    }
    // The adapters trained to the same values: max |gap| / max |value|.
    let scale = kept_b.iter().fold(0f32, |m, v| m.max(v.abs()));
    let gap = recomputed_b
        .iter()
        .zip(&kept_b)
        .fold(0f32, |m, (r, k)| m.max((r - k).abs()));
    assert!(
        scale > 0.0 && gap / scale <= 1e-4,
        "adapter B gap {gap} of {scale}"
    );
    assert!(kept[4] < kept[0], "{kept:?}");
}
