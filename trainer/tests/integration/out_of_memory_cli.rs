//! Out of device memory (`trainer train` as a user runs it, with the allocator's
//! failure injected by `ANNEAL_FAULT_OOM_ABOVE_MICRO_BATCH`): a LoRA step that runs out
//! is taken again at half the micro-batch and the run ends on the same adapter as one
//! planned at that micro-batch; when the smaller step runs out too, the run stops with
//! exit 2, reason `OutOfMemory`, the step, both micro-batches and the plan.

use anneal_crds::events::{EventBody, LogLevel};

use crate::train_cli::{events, expect, job_dir, trainer_train};

#[test]
fn a_step_out_of_memory_is_retried_at_half_the_micro_batch_and_ends_like_a_run_planned_there() {
    let dir = tempfile::tempdir().unwrap();
    // batchSize 4 with gradientAccumulation 2: micro-batches of 2.
    let manifest = job_dir(dir.path(), None);
    let yaml = std::fs::read_to_string(&manifest).unwrap();
    let planned_at_one = dir.path().join("job-micro-1.yaml");
    std::fs::write(
        &planned_at_one,
        yaml.replace("gradientAccumulation: 2", "gradientAccumulation: 4"),
    )
    .unwrap();
    let clean = dir.path().join("clean");
    expect(
        &trainer_train(&planned_at_one, &clean, &[])
            .output()
            .unwrap(),
        0,
    );

    let retried = dir.path().join("retried");
    let output = trainer_train(&manifest, &retried, &[])
        .env("ANNEAL_FAULT_OOM_ABOVE_MICRO_BATCH", "1")
        .output()
        .unwrap();
    expect(&output, 0);
    let warnings: Vec<String> = events(&output.stdout)
        .into_iter()
        .filter_map(|e| match e.body {
            EventBody::Log {
                level: LogLevel::Warn,
                message,
            } if message.starts_with("out of memory") => Some(message),
            _ => None,
        })
        .collect();
    assert_eq!(
        warnings,
        [
            "out of memory at step 1 with micro-batch 2 (can't allocate buffer of size: 2147483648 \
          (injected by ANNEAL_FAULT_OOM_ABOVE_MICRO_BATCH=1)); taking the step again at \
          micro-batch 1, and the rest of the run with it"
        ],
        "one retry, then the run keeps the smaller micro-batch"
    );
    for file in ["adapter_model.safetensors", "adapter_config.json"] {
        assert!(
            std::fs::read(clean.join("team-a/cli/r1/final").join(file)).unwrap()
                == std::fs::read(retried.join("team-a/cli/r1/final").join(file)).unwrap(),
            "final/{file} differs from the run planned at micro-batch 1"
        );
    }
}

#[test]
fn a_step_out_of_memory_at_half_the_micro_batch_too_stops_with_reason_out_of_memory() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = job_dir(dir.path(), None);
    let out = dir.path().join("out");
    let termination_log = dir.path().join("termination-log");
    let output = trainer_train(&manifest, &out, &[])
        .env("ANNEAL_FAULT_OOM_ABOVE_MICRO_BATCH", "0")
        .env("ANNEAL_TERMINATION_LOG", &termination_log)
        .output()
        .unwrap();
    expect(&output, 2);
    let message = std::fs::read_to_string(&termination_log).unwrap();
    assert_eq!(
        message.trim_end(),
        "OutOfMemory: out of memory at step 1 with micro-batch 2 and again at micro-batch 1; \
         the run started with micro-batch 2 x 2 accumulation (set by gradientAccumulation); the \
         device said: can't allocate buffer of size: 2147483648 (injected by \
         ANNEAL_FAULT_OOM_ABOVE_MICRO_BATCH=0); lower hyperparameters.maxTokens or batchSize, \
         or give the job more memory (more GPUs, or a larger --gpu-memory only if the GPUs \
         have it)"
    );
    // Nothing was saved, and nothing claims to be.
    let run = out.join("team-a/cli/r1");
    assert!(!run.join("checkpoints").exists() && !run.join("final").exists());
}
