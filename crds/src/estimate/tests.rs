use super::*;
use crate::memory_plan::known_shape;

fn qwen_7b() -> ModelShape {
    known_shape("Qwen/Qwen2.5-7B-Instruct").unwrap()
}

/// `samples` sequences of `positions` each.
fn uniform(samples: u64, positions: u64) -> EpochTokens {
    let mut tokens = EpochTokens::default();
    for _ in 0..samples {
        tokens.add(positions, true);
    }
    tokens
}

fn work(training: TrainingType, checkpointing: bool, per_epoch: EpochTokens) -> TrainingWork {
    TrainingWork {
        shape: qwen_7b(),
        method: TrainingMethod::Sft,
        training,
        gradient_checkpointing: checkpointing,
        epochs: 2,
        batch_size: 16,
        per_epoch,
    }
}

/// The 7B model's weights that take part in a token's products: the 28 layers'
/// projections and the head (the embedding lookup is no product).
const QWEN_7B_MATMUL_WEIGHTS: f64 = 28.0
    * (2.0 * 3584.0 * 3584.0 + 2.0 * 3584.0 * 512.0 + 3.0 * 3584.0 * 18944.0)
    + 3584.0 * 152_064.0;

#[test]
fn full_training_without_recomputation_is_six_flops_per_weight_and_token() {
    // Short sequences, where attention is a rounding error: the textbook 6·N·tokens.
    let short = work(TrainingType::Full, false, uniform(1000, 8));
    let per_token = short.flops() / short.tokens() as f64;
    let textbook = 6.0 * QWEN_7B_MATMUL_WEIGHTS;
    assert!(
        (per_token / textbook - 1.0).abs() < 0.001,
        "{per_token:e} vs {textbook:e}"
    );
    assert!((QWEN_7B_MATMUL_WEIGHTS / 7.07e9 - 1.0).abs() < 0.01);

    // LoRA with recomputation: forward, backward to the inputs, the forward again.
    let lora = work(TrainingType::Lora, true, uniform(1000, 8));
    assert!(
        (lora.flops() / short.flops() - 1.0).abs() < 1e-9,
        "3 passes either way"
    );
    let lora_kept = work(TrainingType::Lora, false, uniform(1000, 8));
    assert!((lora_kept.flops() / short.flops() - 2.0 / 3.0).abs() < 1e-9);
}

#[test]
fn attention_grows_with_the_square_of_the_length() {
    // 4,096 positions: each query sees 2,048.5 keys on average, 4·28·3584 FLOPs each.
    let long = work(TrainingType::Lora, true, uniform(10, 4096));
    let dense = 2.0 * QWEN_7B_MATMUL_WEIGHTS;
    let attention = 4.0 * 28.0 * 3584.0 * 2048.5;
    let per_token = long.forward_flops_per_epoch() / long.per_epoch.positions as f64;
    assert!((per_token / (dense + attention) - 1.0).abs() < 1e-9);
    assert!(attention / dense > 0.05, "a twentieth more at 4,096 tokens");
    // The same tokens as 40 samples of 1,024 positions: a quarter of the attention.
    let short = work(TrainingType::Lora, true, uniform(40, 1024));
    assert_eq!(short.tokens(), long.tokens());
    let attention_of =
        |w: &TrainingWork| w.forward_flops_per_epoch() - dense * w.per_epoch.positions as f64;
    assert!((attention_of(&short) / attention_of(&long) - 1025.0 / 4097.0).abs() < 1e-9);
}

#[test]
fn steps_duration_and_cost_follow_the_devices_and_the_price() {
    let job = work(TrainingType::Lora, true, uniform(10_000, 1000));
    assert_eq!(
        job.steps(),
        2 * 625,
        "10,000 samples in steps of 16, two epochs"
    );
    assert_eq!(job.tokens(), 20_000_000);
    let h100 = |devices| Throughput::parallel(devices, 989e12, 0.4);
    let one = estimate(&job, &h100(1), true, Some(2.5));
    let eight = estimate(&job, &h100(8), true, Some(2.5));
    assert!((one.seconds / eight.seconds - 8.0).abs() < 1e-9);
    assert!((one.gpu_hours - one.seconds / 3600.0).abs() < 1e-9);
    assert!(
        (eight.gpu_hours - one.gpu_hours).abs() < 1e-9,
        "the same GPU-hours"
    );
    assert!((one.cost.unwrap() - 2.5 * one.gpu_hours).abs() < 1e-9);
    // About 43 GFLOPs a token: 20M tokens in about 36 min on one H100 at 40%.
    assert!(
        (one.flops / 20e6 / 43e9 - 1.0).abs() < 0.02,
        "{:e}",
        one.flops / 20e6
    );
    assert_eq!(rough_duration(one.seconds), "36 min");
    // Two GPUs with the layers placed across them: one computes at a time, both are
    // paid for.
    let placed = Throughput {
        computing: 1,
        ..h100(2)
    };
    let placed = estimate(&job, &placed, true, Some(2.5));
    assert!((placed.seconds - one.seconds).abs() < 1e-9);
    assert!((placed.gpu_hours - 2.0 * one.gpu_hours).abs() < 1e-9);
    let cpu = estimate(&job, &h100(1), false, Some(2.5));
    assert_eq!(
        (cpu.gpu_hours, cpu.cost),
        (0.0, None),
        "no GPU, no GPU cost"
    );
}

#[test]
fn dpo_adds_the_reference_pass_and_counts_pairs() {
    let mut pairs = EpochTokens::default();
    for _ in 0..100 {
        pairs.add(300, true); // chosen
        pairs.add(280, false); // rejected
    }
    assert_eq!((pairs.samples, pairs.positions), (100, 58_000));
    let dpo = TrainingWork {
        method: TrainingMethod::Dpo,
        ..work(TrainingType::Lora, true, pairs)
    };
    assert_eq!(dpo.passes(), 4.0);
    assert_eq!(dpo.steps(), 2 * 7);
    // A held-out tenth taken off: the same mean length.
    let kept = pairs.scaled_to(90);
    assert_eq!((kept.samples, kept.positions), (90, 52_200));
}

#[test]
fn durations_read_as_forecasts() {
    assert_eq!(rough_duration(42.4), "42 s");
    assert_eq!(rough_duration(2000.0), "33 min");
    assert_eq!(rough_duration(3.0 * 3600.0 + 1300.0), "3 h 21 min");
    assert_eq!(rough_duration(50.0 * 3600.0), "2 d 2 h");
}
