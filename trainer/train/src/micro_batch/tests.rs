use std::path::PathBuf;

use anneal_crds::finetunejob::{CheckpointsSpec, TrainingMethod, TrainingType};
use anneal_crds::hyperparameters::HyperparametersSpec;
use anneal_crds::memory_plan::plan::peak_bytes;
use anneal_crds::memory_plan::{ByteSize, DeviceMemory};

use super::*;

fn tiny_model() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/models/anneal-tiny")
}

/// DPO LoRA on the tiny model, batchSize 8, maxTokens 256, with the job's
/// `gradientAccumulation`.
fn settings(gradient_accumulation: Option<u32>) -> TrainingSettings {
    let spec = HyperparametersSpec {
        batch_size: Some(8),
        max_tokens: Some(256),
        gradient_accumulation,
        ..HyperparametersSpec::default()
    };
    TrainingSettings {
        method: TrainingMethod::Dpo,
        training: TrainingType::Lora,
        hyperparameters: spec.resolve(),
        set_micro_batch: spec.set_micro_batch(),
        packing: false,
        checkpoints: CheckpointsSpec::default(),
    }
}

/// `bytes` of RAM, said to come from `--cpu-memory`.
fn cpu(bytes: u64) -> Option<FoundMemory> {
    Some(FoundMemory {
        device: DeviceMemory::cpu(ByteSize(bytes)),
        from: "--cpu-memory",
    })
}

/// The plan's inputs for `settings()` on `bytes` of RAM.
fn plan_inputs(bytes: u64) -> PlanInputs {
    let text = std::fs::read_to_string(tiny_model().join("config.json")).unwrap();
    let shape = ModelShape::from_config_json(&text).unwrap();
    let s = settings(None);
    let device = DeviceMemory::cpu(ByteSize(bytes));
    PlanInputs::for_training(s.method, s.training, &s.hyperparameters, shape, device)
}

#[test]
fn without_gradient_accumulation_the_plan_picks_the_micro_batch() {
    // Exactly the peak of 3 samples: 3 fit, 4 do not.
    let memory = peak_bytes(&plan_inputs(0), 3);
    let chosen = choose_micro_batch(&settings(None), &tiny_model(), cpu(memory)).unwrap();
    let planned = plan(&plan_inputs(memory)).unwrap();
    assert_eq!((chosen.size, chosen.accumulation), (3, 3));
    assert_eq!(chosen.size as u64, planned.micro_batch);
    assert_eq!(
        chosen.to_string(),
        format!(
            "micro-batch 3 x 3 accumulation (plan: {} of {} CPU, memory from --cpu-memory)",
            planned.peak,
            ByteSize(memory)
        )
    );
    // Ample memory: the whole batch at once.
    let ample = choose_micro_batch(&settings(None), &tiny_model(), cpu(64 << 30)).unwrap();
    assert_eq!((ample.size, ample.accumulation), (8, 1));
}

#[test]
fn gradient_accumulation_wins_over_the_plan() {
    for memory in [cpu(64 << 30), cpu(peak_bytes(&plan_inputs(0), 1)), None] {
        let chosen = choose_micro_batch(&settings(Some(4)), &tiny_model(), memory).unwrap();
        assert_eq!((chosen.size, chosen.accumulation), (2, 4));
        assert_eq!(
            chosen.to_string(),
            "micro-batch 2 x 4 accumulation (set by gradientAccumulation)"
        );
    }
}

#[test]
fn unknown_memory_runs_the_whole_batch() {
    let chosen = choose_micro_batch(&settings(None), &tiny_model(), None).unwrap();
    assert_eq!((chosen.size, chosen.accumulation), (8, 1));
    assert_eq!(chosen.source, MicroBatchSource::UnknownMemory);
}

#[test]
fn too_little_memory_fails_with_the_plans_figures() {
    let memory = peak_bytes(&plan_inputs(0), 1) - 1;
    let error = choose_micro_batch(&settings(None), &tiny_model(), cpu(memory)).unwrap_err();
    let does_not_fit = plan(&plan_inputs(memory)).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!("does not fit: {does_not_fit} (memory from --cpu-memory)")
    );
    assert!(
        error.to_string().starts_with(
            // The bundled model stores f32: its frozen layers stay f32 on the CPU.
            "does not fit: needs 79.5 MiB per CPU at micro-batch 1 with maxTokens 256"
        ),
        "{error}"
    );
}

#[test]
fn a_model_folder_without_config_json_is_named() {
    let folder = tempfile::tempdir().unwrap();
    let error = choose_micro_batch(&settings(None), folder.path(), cpu(64 << 30)).unwrap_err();
    assert!(error.to_string().contains("config.json"), "{error}");
}
