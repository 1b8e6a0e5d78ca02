//! DPO steps on the bundled tiny model: the first step's loss is ln 2 with zero
//! rewards (the trained model starts as its reference), steps on the same pairs move
//! the rewards apart, LoRA leaves the base weights alone, and full training's
//! reference stays the initial model while the trained one moves; recomputing the
//! layers in the backward pass (gradient checkpointing) gives the steps of keeping
//! their activations, with the SFT term and label smoothing on.

use std::path::{Path, PathBuf};

use anneal_crds::finetunejob::TrainingType;
use anneal_crds::hyperparameters::TargetModule;
use anneal_model::chat::ModelTokenizer;
use anneal_model::llm::{CausalLm, load_model};
use anneal_model::lora::{LoraSettings, attach, projections_mut};
use anneal_train::backward::LayerActivations;
use anneal_train::chunked_loss::batch_scores;
use anneal_train::dpo::data::{PreferencePair, prepare_pairs};
use anneal_train::dpo::loss::{DpoConfig, PairBatch, sequence_log_probs};
use anneal_train::dpo::reference::Reference;
use anneal_train::dpo::step::{DpoStepStats, dpo_step};
use anneal_train::optimizer::adamw;
use anneal_train::step_settings::StepSettings;
use anneal_train::train_backend::CpuTrainBackend;
use burn::module::AutodiffModule;
use burn::tensor::DType;

type B = CpuTrainBackend;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn model_dir() -> PathBuf {
    repo().join("examples/models/anneal-tiny")
}

fn pairs(count: usize) -> Vec<PreferencePair> {
    let tokenizer = ModelTokenizer::from_model_dir(&model_dir(), "Qwen2ForCausalLM").unwrap();
    let data = std::fs::read(repo().join("examples/quickstart/house-style-dpo.jsonl")).unwrap();
    let prepared = prepare_pairs(data.as_slice(), &tokenizer, 256).unwrap();
    prepared.pairs.into_iter().take(count).collect()
}

fn close(actual: f64, expected: f64, tolerance: f64) {
    assert!(
        (actual - expected).abs() < tolerance,
        "{actual} vs {expected}"
    );
}

/// `steps` steps on the same pairs in micro-batches of 2; the stats of each step.
fn train(
    model: CausalLm<B>,
    reference: &Reference<B>,
    pairs: &[PreferencePair],
    steps: usize,
    learning_rate: f64,
) -> (CausalLm<B>, Vec<DpoStepStats>) {
    let config = DpoConfig::new();
    let activations = LayerActivations::Recomputed;
    train_with(
        model,
        reference,
        &config,
        activations,
        pairs,
        steps,
        learning_rate,
    )
}

/// [`train`] with the objective's settings and the backward pass's activations.
fn train_with(
    model: CausalLm<B>,
    reference: &Reference<B>,
    config: &DpoConfig,
    activations: LayerActivations,
    pairs: &[PreferencePair],
    steps: usize,
    learning_rate: f64,
) -> (CausalLm<B>, Vec<DpoStepStats>) {
    let device = Default::default();
    let mut optimizer = adamw::<B, _>(0.0);
    let mut model = model;
    let mut all = Vec::new();
    for _ in 0..steps {
        let micro: Vec<PairBatch<B>> = pairs
            .chunks(2)
            .map(|c| PairBatch::new(&c.iter().collect::<Vec<_>>(), &device))
            .collect();
        let (next, stats) = dpo_step(
            model,
            reference,
            config,
            &mut optimizer,
            &micro,
            StepSettings {
                learning_rate,
                max_grad_norm: 1.0,
                activations,
            },
        );
        model = next;
        all.push(stats);
    }
    (model, all)
}

#[test]
fn lora_starts_at_ln2_and_moves_the_rewards_apart() {
    let _generator = crate::support::generator_turn();
    let device = Default::default();
    let (_, base) = load_model::<B>(&model_dir(), &device, DType::F32).unwrap();
    let settings = LoraSettings {
        rank: 4,
        alpha: 8.0,
        dropout: 0.0,
        target_modules: TargetModule::ALL.to_vec(),
        use_rslora: false,
        seed: 3,
    };
    let mut model = attach(base, &settings);
    let weight = |m: &mut CausalLm<B>| {
        projections_mut(m)[0]
            .2
            .base
            .weight
            .val()
            .into_data()
            .to_vec::<f32>()
            .unwrap()
    };
    let base_before = weight(&mut model);
    let pairs = pairs(4);
    let (mut model, stats) = train(model, &Reference::AdapterOff, &pairs, 6, 5e-3);

    // Adapter B starts at zero: the trained model is its reference, Δ = 0, loss ln 2.
    let first = &stats[0].scores;
    close(first.loss, std::f64::consts::LN_2, 1e-5);
    close(first.rewards_chosen, 0.0, 1e-5);
    close(first.rewards_rejected, 0.0, 1e-5);
    assert_eq!(stats[0].pairs, 4);

    let last = &stats.last().unwrap().scores;
    assert!(last.loss < 0.5, "{stats:?}");
    assert!(last.reward_margin > 0.5, "{stats:?}");
    assert_eq!(last.reward_accuracy, 1.0, "{stats:?}");
    // −log σ is convex, so the mean loss is at least −log σ(mean margin) (Jensen).
    assert!(last.loss >= (1.0 + (-last.reward_margin).exp()).ln() - 1e-6);
    assert_eq!(weight(&mut model), base_before, "the base is frozen");
}

#[test]
fn full_training_keeps_the_initial_model_as_reference() {
    let _generator = crate::support::generator_turn();
    let device = Default::default();
    let (_, model) = load_model::<B>(&model_dir(), &device, DType::F32).unwrap();
    let reference = Reference::for_training(TrainingType::Full, false, &model);
    let pairs = pairs(2);
    let batch = PairBatch::<<B as burn::tensor::backend::AutodiffBackend>::InnerBackend>::new(
        &pairs.iter().collect::<Vec<_>>(),
        &device,
    );
    let scores = |m: &CausalLm<_>| {
        sequence_log_probs(
            batch_scores(m, &batch.sequences).log_probs,
            &batch.sequences,
        )
        .into_data()
        .to_vec::<f32>()
        .unwrap()
    };
    let initial = scores(&model.valid());
    let (model, stats) = train(model, &reference, &pairs, 2, 1e-3);
    close(stats[0].scores.loss, std::f64::consts::LN_2, 1e-5);
    assert!(stats[1].scores.reward_margin > 0.0, "{stats:?}");
    assert_eq!(scores(&reference.model(&model)), initial);
    assert_ne!(scores(&model.valid()), initial, "the trained model moved");
}

#[test]
fn recomputed_layers_give_the_steps_of_kept_ones_with_the_sft_term() {
    let _generator = crate::support::generator_turn();
    let device = Default::default();
    let settings = LoraSettings {
        rank: 4,
        alpha: 8.0,
        dropout: 0.0,
        target_modules: TargetModule::ALL.to_vec(),
        use_rslora: false,
        seed: 3,
    };
    let config = DpoConfig::new()
        .with_label_smoothing(0.1)
        .with_sft_weight(1.0);
    let pairs = pairs(4);
    let run = |activations| {
        let (_, base) = load_model::<B>(&model_dir(), &device, DType::F32).unwrap();
        let model = attach(base, &settings);
        let reference = Reference::AdapterOff;
        train_with(model, &reference, &config, activations, &pairs, 4, 5e-3).1
    };
    let kept = run(LayerActivations::Kept);
    let recomputed = run(LayerActivations::Recomputed);
    let relative = |a: f64, b: f64| (a - b).abs() / b.abs().max(1e-12);
    for (k, r) in kept.iter().zip(&recomputed) {
        assert!(
            relative(r.scores.loss, k.scores.loss) <= 1e-5,
            "{kept:?} vs {recomputed:?}"
        );
        assert!(relative(r.grad_norm, k.grad_norm) <= 1e-5, "{k:?} vs {r:?}");
        // The margin starts at exactly 0 (the adapter is off in the reference).
        assert!(
            (r.scores.reward_margin - k.scores.reward_margin).abs()
                <= 1e-5 * k.scores.reward_margin.abs().max(1e-3),
            "{k:?} vs {r:?}"
        );
    }
    // The steps moved the model: the last loss is the SFT term's and DPO's, below the
    // first (ln 2 plus the chosen replies' per-token NLL).
    assert!(kept[3].scores.loss < kept[0].scores.loss, "{kept:?}");
}
