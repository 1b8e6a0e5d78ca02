//! The plan's figures against hand arithmetic, and how they move with the inputs.

use super::footprint::{block_score_elements, score_elements};
use super::*;
use crate::hyperparameters::TargetModule;

fn seven_b_lora(max_tokens: u64, batch_size: u64, device: DeviceMemory) -> PlanInputs {
    PlanInputs {
        shape: known_shape("Qwen/Qwen2.5-7B-Instruct").unwrap(),
        base_dtype: WeightDtype::Bf16,
        trained: TrainedWeights::Lora {
            rank: 8,
            targets: TargetModule::ALL.to_vec(),
            dropout: true,
        },
        sequences_per_sample: 1,
        max_tokens,
        batch_size,
        gradient_checkpointing: true,
        device,
    }
}

fn one_gpu(gib: u64) -> DeviceMemory {
    DeviceMemory::gpus(ByteSize::gib(gib), 1)
}

#[test]
fn qwen_7b_lora_r8_at_4096_tokens_adds_up_by_hand() {
    let plan = plan(&seven_b_lora(4096, 32, one_gpu(80))).unwrap();
    // Base: 7,615,616,512 parameters x 2 bytes (bf16).
    assert_eq!(plan.base_weights, ByteSize(15_231_233_024));
    // LoRA r8 on all seven projections: 720,896 per layer x 28 = 20,185,088 parameters,
    // x 16 bytes (f32 value, gradient, two AdamW moments).
    assert_eq!(plan.trainable_params, 20_185_088);
    assert_eq!(plan.trainable_state, ByteSize(322_961_408));
    // One sample of 4096 tokens, f32:
    // - 28 layer inputs [4096, 3584]: 28 x 58,720,256 = 1,644,167,168;
    // - the recomputed layer, per token 3 x 3584 + 2 x 3584 + 2 x 512 + 3 x 18944 = 75,776
    //   plus LoRA 7 x 8 + 6 x 3584 (dropped inputs of q, k, v, o, gate, up) + 18944
    //   (down's) = 40,504, so 116,280 x 4096 = 476,282,880 elements, x 4 =
    //   1,905,131,520 (no scores: attention keeps q, k and v);
    // - backward working set: attention's largest query block, 4 x 28 heads x 128 rows
    //   x 4096 keys = 58,720,256, and 2 x 4096 x 18944 = 155,189,248: x 4 = 855,638,016;
    // - the final norm's input, output and gradient: 3 x 4096 x 3584 x 4 = 176,160,768.
    assert_eq!(block_score_elements(4096), 524_288);
    assert_eq!(plan.activations_per_sample, ByteSize(4_581_097_472));
    // Scores of one head over the 32 blocks: (1 + ... + 32) x 128 x 128, 8,650,752.
    // The mask is two 128 x 128 triangles, 32,768, + RoPE 4 x 4096 x 128 = 2,097,152,
    // x 4 bytes.
    assert_eq!(score_elements(4096), 8_650_752);
    assert_eq!(plan.shared_tables, ByteSize(8_519_680));
    // A 220-token chunk of 152,064 logits (128 MiB at most), f32, and its gradient.
    assert_eq!(plan.logits, ByteSize(267_632_640));
    // Fixed 15,830,346,752 + 13 x 4,581,097,472 = 75,384,613,888; margin 10% + 1 GiB
    // = 8,612,203,212; peak 83,996,817,100 (78.2 GiB) <= 80 GiB. 14 samples would be
    // 89,036,024,320 (82.9 GiB): too many.
    assert_eq!(plan.micro_batch, 13);
    assert_eq!(plan.activations, ByteSize(13 * 4_581_097_472));
    assert_eq!(plan.margin, ByteSize(8_612_203_212));
    assert_eq!(plan.peak, ByteSize(83_996_817_100));
    assert_eq!(plan.accumulation, 3);
}

#[test]
fn the_peak_grows_with_max_tokens() {
    let mut last = 0;
    for tokens in (64..=16_384).step_by(64) {
        let peak = plan::peak_bytes(&seven_b_lora(tokens, 1, one_gpu(80)), 1);
        assert!(peak > last, "{tokens} tokens: {peak} after {last}");
        last = peak;
    }
}

#[test]
fn with_recomputation_the_activations_are_linear_in_max_tokens() {
    // Past 1,024 tokens attention's blocks have 128 rows, so its working set, 128 rows
    // x T keys, grows linearly too: every part of a sample's activations does.
    let shape = known_shape("Qwen/Qwen2.5-7B-Instruct").unwrap();
    let activations = |tokens| {
        let inputs = seven_b_lora(tokens, 1, one_gpu(80));
        footprint::activation_bytes_per_sample(&inputs, shape.layers)
    };
    for tokens in [1024, 2048, 4096, 8192, 16_384] {
        assert_eq!(activations(2 * tokens), 2 * activations(tokens), "{tokens}");
    }
}

#[test]
fn recomputation_keeps_one_layer_of_activations_instead_of_all() {
    let with = seven_b_lora(4096, 1, one_gpu(80));
    let without = PlanInputs {
        gradient_checkpointing: false,
        ..with.clone()
    };
    let layers = with.shape.layers;
    let saved = footprint::layer_saved_bytes(&with);
    assert_eq!(
        footprint::activation_bytes_per_sample(&without, layers)
            - footprint::activation_bytes_per_sample(&with, layers),
        (layers - 1) * saved
    );
    // With recomputation a layer more costs only its input, [T, h] f32.
    let deeper = |inputs: &PlanInputs| {
        footprint::activation_bytes_per_sample(inputs, layers + 1)
            - footprint::activation_bytes_per_sample(inputs, layers)
    };
    assert_eq!(deeper(&with), 4096 * 3584 * 4);
    assert_eq!(deeper(&without), 4096 * 3584 * 4 + saved);
    // At 4096 tokens it is what lets 7B train 13 samples at a time on an 80 GiB GPU
    // instead of 1.
    let batch_of_32 = |inputs: &PlanInputs| {
        plan(&PlanInputs {
            batch_size: 32,
            ..inputs.clone()
        })
        .unwrap()
        .micro_batch
    };
    assert_eq!((batch_of_32(&with), batch_of_32(&without)), (13, 1));
}

#[test]
fn the_micro_batch_is_the_largest_that_fits_and_accumulation_reaches_the_batch() {
    // A GPU exactly as large as 8 samples of 7B at 4096 tokens need.
    let eight = ByteSize(plan::peak_bytes(&seven_b_lora(4096, 32, one_gpu(80)), 8));
    let device = DeviceMemory::gpus(eight, 1);
    let cases = [
        (32, 8, 4),
        (30, 8, 4),
        (8, 8, 1),
        (9, 8, 2),
        (5, 5, 1),
        (1, 1, 1),
    ];
    for (batch, micro, accumulation) in cases {
        let plan = plan(&seven_b_lora(4096, batch, device)).unwrap();
        assert_eq!(
            (plan.micro_batch, plan.accumulation),
            (micro, accumulation),
            "batchSize {batch}"
        );
        assert!(plan.peak <= eight);
    }
    let one_byte_less = DeviceMemory::gpus(ByteSize(eight.bytes() - 1), 1);
    assert_eq!(
        plan(&seven_b_lora(4096, 32, one_byte_less))
            .unwrap()
            .micro_batch,
        7
    );
}

#[test]
fn qwen_72b_in_bf16_does_not_fit_one_80_gib_gpu_and_the_error_says_what_would() {
    let inputs = PlanInputs {
        shape: known_shape("Qwen/Qwen2.5-72B-Instruct").unwrap(),
        ..seven_b_lora(4096, 8, one_gpu(80))
    };
    let error = plan(&inputs).unwrap_err();
    // 72,706,203,648 parameters x 2 bytes: more than the GPU before any activation.
    assert_eq!(error.base_weights, ByteSize(145_412_407_296));
    assert_eq!(error.peak.to_string(), "168.5 GiB");
    assert_eq!(error.fitting_max_tokens, None);
    // 3 GPUs hold 27 of the 80 layers each.
    assert_eq!(error.fitting_devices, Some(3));
    assert_eq!(
        error.to_string(),
        "needs 168.5 GiB per GPU at micro-batch 1 with maxTokens 4096 (base weights 135.4 GiB), \
         more than the 80 GiB of a GPU; no maxTokens fits on 1 x 80 GiB GPU, \
         or on 3 GPUs of 80 GiB with its layers placed across them (spec.resources.gpus: 3)"
    );
    // Two H200s hold it, five samples at a time.
    let two_h200 = PlanInputs {
        device: DeviceMemory::gpus(ByteSize::gib(141), 2),
        ..inputs
    };
    let plan = plan(&two_h200).unwrap();
    assert_eq!((plan.layers_per_device, plan.micro_batch), (40, 5));
}

#[test]
fn a_too_long_max_tokens_is_told_the_longest_that_fits() {
    // 32,768 tokens, Qwen2.5-7B's context, fit one 80 GiB GPU; twice that does not.
    assert!(plan(&seven_b_lora(32_768, 8, one_gpu(80))).is_ok());
    let long = seven_b_lora(65_536, 8, one_gpu(80));
    let error = plan(&long).unwrap_err();
    let fitting = error.fitting_max_tokens.unwrap();
    let at = |tokens| plan::peak_bytes(&seven_b_lora(tokens, 8, one_gpu(80)), 1);
    assert!(at(fitting) <= ByteSize::gib(80).bytes());
    assert!(at(fitting + 1) > ByteSize::gib(80).bytes());
    assert!(
        error
            .to_string()
            .contains(&format!("it fits with maxTokens {fitting} or less")),
        "{error}"
    );
    // Spread over 2 GPUs, each holds 14 layers' inputs.
    assert_eq!(error.fitting_devices, Some(2));
    // At 131,072 tokens one recomputed layer's activations (71 GB) outgrow a GPU: more
    // GPUs do not help.
    let error = plan(&seven_b_lora(131_072, 8, one_gpu(80))).unwrap_err();
    assert_eq!(error.fitting_devices, None);
    assert!(
        error.to_string().ends_with(
            ", and no number of 80 GiB GPUs holds it with its layers placed across them"
        ),
        "{error}"
    );
}

/// What the trainer holds in full training: f32 weights (the master copy it also
/// computes with), their gradients and two moments, 16 bytes a parameter on a GPU as
/// on the CPU.
#[test]
fn a_full_training_job_holds_sixteen_bytes_a_parameter_on_every_device() {
    let spec: crate::FineTuneJobSpec = serde_json::from_value(serde_json::json!({
        "training": "full",
        "baseModel": {"name": "Qwen/Qwen2.5-7B-Instruct", "source": "s3://m/q"},
        "dataset": {"train": "s3://d/t.jsonl"},
    }))
    .unwrap();
    let shape = known_shape("Qwen/Qwen2.5-7B-Instruct").unwrap();
    for device in [one_gpu(1000), DeviceMemory::cpu(ByteSize::gib(1000))] {
        let inputs = PlanInputs::for_job(&spec, shape, device);
        assert_eq!(inputs.base_dtype, WeightDtype::F32);
        let plan = plan(&inputs).unwrap();
        assert_eq!(
            plan.base_weights.bytes() + plan.trainable_state.bytes(),
            16 * shape.params(),
            "{device}"
        );
    }
}

#[test]
fn full_training_adds_an_f32_master_copy_to_a_bf16_base() {
    let lora = seven_b_lora(1024, 1, one_gpu(1000));
    let full = PlanInputs {
        trained: TrainedWeights::Full,
        ..lora.clone()
    };
    let params = full.shape.params();
    let plan_full = plan(&full).unwrap();
    assert_eq!(plan_full.trainable_params, params);
    // bf16 base 2 + f32 master 4 + gradient 4 + moments 8 = 18 bytes a parameter.
    assert_eq!(
        plan_full.base_weights.bytes() + plan_full.trainable_state.bytes(),
        18 * params
    );
    // On the CPU the f32 base is the master copy: 4 + 4 + 8 = 16.
    let cpu = PlanInputs {
        base_dtype: WeightDtype::F32,
        device: DeviceMemory::cpu(ByteSize::gib(1000)),
        ..full
    };
    let plan_cpu = plan(&cpu).unwrap();
    assert_eq!(
        plan_cpu.base_weights.bytes() + plan_cpu.trainable_state.bytes(),
        16 * params
    );
}

#[test]
fn a_job_spec_gives_its_inputs_and_dpo_trains_two_sequences_a_sample() {
    let spec: crate::FineTuneJobSpec = serde_json::from_value(serde_json::json!({
        "method": "dpo",
        "baseModel": {"name": "Qwen/Qwen2.5-7B-Instruct", "source": "s3://m/q"},
        "dataset": {"train": "s3://d/t.jsonl"},
        "hyperparameters": {"maxTokens": 2048, "lora": {"dropout": 0.0}},
    }))
    .unwrap();
    let shape = known_shape(&spec.base_model.name).unwrap();
    let inputs = PlanInputs::for_job(&spec, shape, one_gpu(80));
    assert_eq!(
        (
            inputs.max_tokens,
            inputs.batch_size,
            inputs.sequences_per_sample
        ),
        (2048, 8, 2)
    );
    assert_eq!(inputs.base_dtype, WeightDtype::Bf16);
    assert_eq!(
        inputs.trained,
        TrainedWeights::Lora {
            rank: 8,
            targets: TargetModule::ALL.to_vec(),
            dropout: false
        }
    );
    let dpo = plan_for_job(&spec, shape, one_gpu(80)).unwrap();
    let sft = plan(&PlanInputs {
        sequences_per_sample: 1,
        ..inputs
    })
    .unwrap();
    assert_eq!(
        dpo.activations_per_sample.bytes(),
        2 * sft.activations_per_sample.bytes()
    );
}

#[test]
fn a_job_that_turns_recomputation_off_is_planned_with_every_layer_kept() {
    let job = |checkpointing: Option<bool>| -> crate::FineTuneJobSpec {
        let mut hyperparameters = serde_json::json!({"maxTokens": 4096});
        if let Some(on) = checkpointing {
            hyperparameters["gradientCheckpointing"] = serde_json::json!(on);
        }
        serde_json::from_value(serde_json::json!({
            "baseModel": {"name": "Qwen/Qwen2.5-7B-Instruct", "source": "s3://m/q"},
            "dataset": {"train": "s3://d/t.jsonl"},
            "hyperparameters": hyperparameters,
        }))
        .unwrap()
    };
    let shape = known_shape("Qwen/Qwen2.5-7B-Instruct").unwrap();
    let default = PlanInputs::for_job(&job(None), shape, one_gpu(80));
    let off = PlanInputs::for_job(&job(Some(false)), shape, one_gpu(80));
    assert!(default.gradient_checkpointing);
    assert!(!off.gradient_checkpointing);
    // Without recomputation all 28 layers keep their activations: 7B at 4,096 tokens
    // fits one sample at a time on an 80 GiB GPU, where with it all 8 do.
    assert_eq!(plan(&default).unwrap().micro_batch, 8);
    let alone = plan(&off).unwrap();
    assert_eq!((alone.micro_batch, alone.accumulation), (1, 8));
    assert_eq!(format!("{:.1}", alone.peak.as_gib()), "74.6");
}

/// Peak RSS of `trainer train` at Qwen2.5-0.5B's shape, LoRA r8 with dropout on all
/// seven projections, batch 2, one micro-batch, as `benches/scale_cpu.py` measured
/// it (benches/RESULTS.md, 2026-12-05): (maxTokens, GiB).
const MEASURED_0_5B_CPU: [(u64, f64); 3] = [(1024, 1.91), (2048, 2.39), (4096, 3.43)];

/// Qwen2.5-0.5B, LoRA r8 with dropout on all seven projections, on a roomy CPU.
fn half_b_lora_on_the_cpu(max_tokens: u64, batch_size: u64) -> PlanInputs {
    PlanInputs {
        shape: known_shape("Qwen/Qwen2.5-0.5B-Instruct").unwrap(),
        base_dtype: WeightDtype::F32,
        device: DeviceMemory::cpu(ByteSize::gib(4096)),
        ..seven_b_lora(max_tokens, batch_size, one_gpu(80))
    }
}

#[test]
fn the_cpu_plan_is_within_15_percent_of_the_measured_peaks() {
    for (max_tokens, measured) in MEASURED_0_5B_CPU {
        let planned = plan(&half_b_lora_on_the_cpu(max_tokens, 2)).unwrap();
        assert_eq!(planned.micro_batch, 2);
        let ratio = planned.peak.as_gib() / measured;
        assert!(
            (0.85..=1.15).contains(&ratio),
            "maxTokens {max_tokens}: plan {:.2} GiB against {measured} GiB measured ({ratio:.2}x)",
            planned.peak.as_gib()
        );
    }
}

#[test]
fn on_the_cpu_the_loss_and_the_layers_are_not_counted_together() {
    for max_tokens in [1024, 4096] {
        let planned = plan(&half_b_lora_on_the_cpu(max_tokens, 1)).unwrap();
        let fixed = planned.base_weights.bytes()
            + planned.trainable_state.bytes()
            + planned.shared_tables.bytes();
        let parts = planned.activations.bytes() + planned.logits.bytes();
        let without_margin = planned.peak.bytes() - planned.margin.bytes();
        assert!(
            without_margin < fixed + parts,
            "maxTokens {max_tokens}: the two phases were summed"
        );
        assert!(without_margin >= fixed + planned.activations.bytes().max(planned.logits.bytes()));
    }
}

/// A model that fits one GPU trains data-parallel on several: one GPU's plan at the
/// replicas' share of the batch; one that does not fit one is placed across them.
#[test]
fn several_gpus_train_a_model_that_fits_one_data_parallel() {
    let two = DeviceMemory::gpus(ByteSize::gib(80), 2);
    let parallel = plan(&seven_b_lora(4096, 32, two)).unwrap();
    let alone = plan(&seven_b_lora(4096, 16, one_gpu(80))).unwrap();
    assert_eq!(parallel.replicas, 2);
    // Each GPU holds the whole model and 13 samples at a time, as one GPU alone does.
    assert_eq!(parallel.layers_per_device, 28);
    assert_eq!(parallel.peak, alone.peak);
    assert_eq!(parallel.micro_batch, 13);
    // 32 samples: 3 micro-batches (13, 13, 6 before the trainer evens them out), 2
    // of them on one GPU: 2 accumulation steps on each.
    assert_eq!(parallel.accumulation, 2);
    assert_eq!(parallel.inputs.batch_size, 32);
    let text = parallel.to_string();
    assert!(
        text.ends_with(
            "micro-batch 13 x 2 accumulation steps on each of 2 GPUs, data-parallel \
             (a copy of the model on each) = batchSize 32 (some micro-batches are shorter)"
        ),
        "{text}"
    );
    assert!(
        text.contains("7.62B parameters x 2 bytes (bf16)\n"),
        "{text}"
    );

    // Eight samples on four GPUs: two each, in one pass.
    let four = DeviceMemory::gpus(ByteSize::gib(80), 4);
    let spread = plan(&seven_b_lora(4096, 8, four)).unwrap();
    assert_eq!(
        (spread.replicas, spread.micro_batch, spread.accumulation),
        (4, 2, 1)
    );
    assert!(spread.to_string().ends_with("= batchSize 8"), "{spread}");
    // No more replicas than a step has samples: one sample on two GPUs places the
    // layers instead.
    let single = plan(&seven_b_lora(4096, 1, two)).unwrap();
    assert_eq!((single.replicas, single.layers_per_device), (1, 14));

    // 72B does not fit one 141 GiB GPU: its layers are placed across two.
    let seventy_two = PlanInputs {
        shape: known_shape("Qwen/Qwen2.5-72B-Instruct").unwrap(),
        ..seven_b_lora(4096, 8, DeviceMemory::gpus(ByteSize::gib(141), 2))
    };
    let placed = plan(&seventy_two).unwrap();
    assert_eq!((placed.replicas, placed.layers_per_device), (1, 40));
}

/// On the CPU a frozen base's layers stay in the checkpoint's own dtype: bf16 and f16
/// at 2 bytes with one layer widened to f32 beside them, an f32 checkpoint's at 4
/// bytes with nothing to widen.
#[test]
fn the_cpu_holds_the_layers_in_the_checkpoints_dtype() {
    let bf16 = plan(&half_b_lora_on_the_cpu(1024, 2)).unwrap();
    let with = |stored_dtype| {
        let mut inputs = half_b_lora_on_the_cpu(1024, 2);
        inputs.shape.stored_dtype = stored_dtype;
        plan(&inputs).unwrap()
    };
    let shape = known_shape("Qwen/Qwen2.5-0.5B-Instruct").unwrap();
    let (layers, outside) = (
        shape.layers * shape.layer_params(),
        shape.outside_layer_params(),
    );
    let widened = shape.layer_params() * 4;
    assert_eq!(
        bf16.base_weights.bytes(),
        layers * 2 + outside * 4 + widened
    );
    assert_eq!(with(WeightDtype::F16).base_weights, bf16.base_weights);
    let f32 = with(WeightDtype::F32);
    assert_eq!(f32.base_weights.bytes(), layers * 4 + outside * 4);
    assert!(f32.peak > bf16.peak);
    // On a GPU the frozen base is bf16 whatever the checkpoint stores.
    let gpu = |stored_dtype| {
        let mut inputs = seven_b_lora(4096, 8, one_gpu(80));
        inputs.shape.stored_dtype = stored_dtype;
        plan(&inputs).unwrap().base_weights
    };
    assert_eq!(gpu(WeightDtype::F32), gpu(WeightDtype::Bf16));
}

#[test]
fn config_json_says_the_checkpoints_dtype() {
    let config = |dtype_key: &str, dtype: &str| {
        format!(
            r#"{{"architectures": ["Qwen2ForCausalLM"], "hidden_size": 64,
            "intermediate_size": 128, "num_attention_heads": 4, "num_hidden_layers": 2,
            "vocab_size": 100, "{dtype_key}": "{dtype}"}}"#
        )
    };
    for (key, dtype, expected) in [
        ("torch_dtype", "float32", WeightDtype::F32),
        ("dtype", "float16", WeightDtype::F16),
        ("torch_dtype", "bfloat16", WeightDtype::Bf16),
        ("torch_dtype", "float8_e4m3fn", WeightDtype::Bf16),
    ] {
        let shape = ModelShape::from_config_json(&config(key, dtype)).unwrap();
        assert_eq!(shape.stored_dtype, expected, "{key}: {dtype}");
    }
    let bundled = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/models/anneal-tiny/config.json"
    ))
    .unwrap();
    let tiny = ModelShape::from_config_json(&bundled).unwrap();
    assert_eq!(
        tiny.stored_dtype,
        WeightDtype::F32,
        "the bundled model is f32"
    );
}
