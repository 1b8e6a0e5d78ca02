//! Runs on several devices, every one the CPU here, so the multi-device code paths
//! run with nothing else changed: a model that fits one device trains data-parallel
//! (a copy on each) to one device's losses and weights, and resumes on any number; a
//! model that fits only with its layers placed across them trains and resumes bit for
//! bit as on one.

use anneal_crds::FineTuneJob;
use anneal_crds::events::EventBody;
use anneal_crds::memory_plan::plan::peak_bytes;
use anneal_crds::memory_plan::{ByteSize, DeviceMemory, ModelShape, PlanInputs};
use anneal_train::run::{RunOutcome, TrainingSettings};

use crate::train_run::{
    Layers, inputs, losses, micro_batch_line, one_at_a_time, read, small_job_of, tiny_model,
    train_on,
};

/// The small job with gradient checkpointing and LoRA dropout, and in full training
/// with neither, each with the file its trained weights end in: what the
/// multi-device runs are checked with.
fn two_jobs() -> [(FineTuneJob, &'static str); 2] {
    let lora_with_dropout = small_job_of(
        "lora",
        0.003,
        Layers {
            dropout: 0.1,
            gradient_checkpointing: Some(true),
        },
        "",
    );
    let full_kept = small_job_of(
        "full",
        0.001,
        Layers {
            dropout: 0.0,
            gradient_checkpointing: Some(false),
        },
        "",
    );
    [
        (lora_with_dropout, "adapter_model.safetensors"),
        (full_kept, "model.safetensors"),
    ]
}

/// A CPU memory that holds `job` at micro-batch 1 with the tiny model's layers placed
/// across `devices`, but not on one device: where the trainer places them.
fn placed_but_not_whole(job: &FineTuneJob, devices: u32) -> ByteSize {
    let text = std::fs::read_to_string(tiny_model().join("config.json")).unwrap();
    let shape = ModelShape::from_config_json(&text).unwrap();
    let settings = TrainingSettings::of_job(job);
    let peak = |devices| {
        let device = DeviceMemory::cpu(ByteSize(0)).with_devices(devices);
        let h = &settings.hyperparameters;
        let inputs = PlanInputs::for_training(settings.method, settings.training, h, shape, device);
        peak_bytes(&inputs, 1)
    };
    let (placed, whole) = (peak(devices), peak(1));
    assert!(placed < whole, "{placed} placed, {whole} whole");
    ByteSize(placed)
}

/// The tiny model's four layers placed on three devices (runs of 2, 1 and 1), given a
/// memory that holds it placed but not whole: with gradient checkpointing and dropout
/// (LoRA) and without (full training), the run's losses and its final weights and
/// optimizer state are those of one device, bit for bit, and a placed run stopped and
/// resumed ends where the straight one does.
#[test]
fn layers_placed_across_devices_train_and_resume_as_on_one_device() {
    let _generator = crate::support::generator_turn();
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    for (job, weights) in &two_jobs() {
        let tight = placed_but_not_whole(job, 3);
        let run = |name: &str, devices: usize, stop_at: Option<u64>, resume: bool| {
            let out = dir.path().join(format!("{weights}-{name}"));
            let work = dir.path().join(format!("{weights}-{name}-work-{resume}"));
            let mut inputs = inputs(job, &out, &work, resume);
            if devices > 1 {
                inputs.memory.cpu = Some(tight);
            }
            let (outcome, events) = train_on(inputs, stop_at, devices);
            ((outcome, out), events)
        };
        let ((one, one_dir), _) = run("one", 1, None, false);
        let ((placed, placed_dir), events) = run("placed", 3, None, false);
        let said = events.iter().find_map(|e| match &e.body {
            EventBody::Log { message, .. } if message.starts_with("decoder layers") => {
                Some(message.clone())
            }
            _ => None,
        });
        assert_eq!(
            said.as_deref(),
            Some(
                "decoder layers placed across 3 devices: layers 0-1 on Cpu, layer 2 on Cpu, layer 3 on Cpu"
            )
        );
        assert_eq!(losses(&one).len(), 10);
        assert_eq!(losses(&placed), losses(&one), "{weights}");
        let ((stopped, _), _) = run("resumed", 3, Some(4), false);
        assert!(
            matches!(stopped, RunOutcome::Stopped { step: 4, .. }),
            "{stopped:?}"
        );
        let ((resumed, resumed_dir), _) = run("resumed", 3, None, true);
        assert_eq!(losses(&resumed), losses(&one), "{weights} resumed");
        for file in [weights, "optimizer.safetensors"] {
            let one = read(one_dir.join("final").join(file));
            assert!(
                read(placed_dir.join("final").join(file)) == one,
                "{file} placed"
            );
            assert!(
                read(resumed_dir.join("final").join(file)) == one,
                "{file} resumed"
            );
        }
    }
}

/// The largest gap between two runs' values, relative to the largest value.
fn relative_gap(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    let gap = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    gap / scale
}

/// The f32 values of every tensor in a safetensors file, in name order.
fn weights(path: std::path::PathBuf) -> Vec<f32> {
    let bytes = read(path);
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names = file.names();
    names.sort();
    names
        .iter()
        .flat_map(|name| {
            let view = file.tensor(name).unwrap();
            assert_eq!(view.dtype(), safetensors::Dtype::F32, "{name}");
            (view.data().chunks_exact(4))
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The tiny model fits one device, so two devices train it data-parallel: with LoRA
/// dropout and recomputation (LoRA) and without (full training), each step's two
/// micro-batches run one on each copy, the losses and final weights are one device's
/// to the rounding of summing the copies' gradients, a data-parallel run stopped and
/// resumed ends bit for bit where the straight one does, and its checkpoint resumes
/// on one device.
#[test]
fn a_model_that_fits_one_device_trains_data_parallel_on_two() {
    let _generator = crate::support::generator_turn();
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    for (job, file) in &two_jobs() {
        let run = |name: &str, devices: usize, stop_at: Option<u64>, resume: bool| {
            let out = dir.path().join(format!("{file}-{name}"));
            let work = dir.path().join(format!("{file}-{name}-work-{resume}"));
            let (outcome, events) = train_on(inputs(job, &out, &work, resume), stop_at, devices);
            ((outcome, out), events)
        };
        let ((one, one_dir), _) = run("one", 1, None, false);
        let ((parallel, parallel_dir), events) = run("parallel", 2, None, false);
        assert_eq!(
            micro_batch_line(&events).as_deref(),
            Some(
                "micro-batch 2 x 1 accumulation on each of 2 devices, data-parallel (set by gradientAccumulation)"
            ),
            "{file}"
        );
        assert!(
            !events.iter().any(|e| matches!(&e.body,
                EventBody::Log { message, .. } if message.starts_with("decoder layers"))),
            "{file}: nothing placed"
        );
        let (one_losses, parallel_losses) = (losses(&one), losses(&parallel));
        assert_eq!(parallel_losses.len(), 10);
        for (step, (p, o)) in parallel_losses.iter().zip(&one_losses).enumerate() {
            let gap = (p - o).abs() / o.abs();
            assert!(gap <= 1e-5, "{file} step {}: {p} vs {o}", step + 1);
        }
        let final_gap = relative_gap(
            &weights(parallel_dir.join("final").join(file)),
            &weights(one_dir.join("final").join(file)),
        );
        assert!(final_gap <= 1e-4, "{file}: final weights {final_gap} apart");

        // Stopped at step 4 and resumed on two devices: bit for bit.
        let ((stopped, _), _) = run("resumed", 2, Some(4), false);
        assert!(
            matches!(stopped, RunOutcome::Stopped { step: 4, .. }),
            "{stopped:?}"
        );
        let ((resumed, resumed_dir), _) = run("resumed", 2, None, true);
        assert_eq!(losses(&resumed), parallel_losses, "{file} resumed");
        for name in [file, "optimizer.safetensors"] {
            assert!(
                read(resumed_dir.join("final").join(name))
                    == read(parallel_dir.join("final").join(name)),
                "{file}: final/{name} after the resume"
            );
        }
        // A data-parallel checkpoint goes on on one device.
        let ((stopped, _), _) = run("moved", 2, Some(4), false);
        assert!(
            matches!(stopped, RunOutcome::Stopped { step: 4, .. }),
            "{stopped:?}"
        );
        let ((moved, moved_dir), _) = run("moved", 1, None, true);
        for (step, (m, o)) in losses(&moved).iter().zip(&one_losses).enumerate() {
            let gap = (m - o).abs() / o.abs();
            assert!(gap <= 1e-5, "{file} moved, step {}: {m} vs {o}", step + 1);
        }
        let moved_gap = relative_gap(
            &weights(moved_dir.join("final").join(file)),
            &weights(one_dir.join("final").join(file)),
        );
        assert!(
            moved_gap <= 1e-4,
            "{file}: moved final weights {moved_gap} apart"
        );
    }
}
