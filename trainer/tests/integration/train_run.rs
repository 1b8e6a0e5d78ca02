//! Training runs through the library, on the bundled tiny model and the quick
//! start's data: a stopped and resumed run ends bit for bit where an
//! uninterrupted one does (with LoRA dropout, gradient checkpointing on and off), a
//! run resumed where the memory plan picks another micro-batch keeps its order, a
//! half-written checkpoint is never resumed from, checkpoints hold what PEFT and a
//! resume need, the trained adapter reloads, and gradient checkpointing leaves a
//! run's losses as they are.

use std::path::{Path, PathBuf};

use crate::support::Recorder;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use anneal_crds::FineTuneJob;
use anneal_crds::events::{EventBody, TrainerEvent};
use anneal_crds::finetunejob::JobPhase;
use anneal_crds::manifest::parse_finetunejob;
use anneal_crds::memory_plan::plan::peak_bytes;
use anneal_crds::memory_plan::{ByteSize, DeviceMemory, ModelShape, PlanInputs, plan};
use anneal_crds::storage::Storage;
use anneal_model::backend::CpuBackend;
use anneal_model::chat::ModelTokenizer;
use anneal_model::generate::{SamplingParams, generate};
use anneal_model::llm::load_model;
use anneal_model::lora::merge;
use anneal_model::lora::peft::load_adapter;
use anneal_train::device_memory::GivenMemory;
use anneal_train::run::{
    BaseModel, RunData, RunIdentity, RunInputs, RunLocation, RunOutcome, TrainingSettings,
    run_training,
};
use anneal_train::state::TrainerState;
use anneal_train::train_backend::CpuTrainBackend;
use burn::tensor::DType;
use safetensors::SafeTensors;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub(crate) fn tiny_model() -> PathBuf {
    repo().join("examples/models/anneal-tiny")
}

/// The first `lines` samples of the quick start's dataset.
fn quickstart_lines(lines: usize) -> Vec<u8> {
    let text =
        std::fs::read_to_string(repo().join("examples/quickstart/house-style.jsonl")).unwrap();
    let mut out: String = text.lines().take(lines).collect::<Vec<_>>().join("\n");
    out.push('\n');
    out.into_bytes()
}

/// A small job: 19 training samples in micro-batches of 2, two per step, so 5
/// steps an epoch and 10 in all, with dropout on so the RNG matters, and gradient
/// checkpointing on (the default).
fn small_job(extra_checkpoints: &str) -> FineTuneJob {
    small_job_at(0.003, extra_checkpoints)
}

fn small_job_at(learning_rate: f64, extra_checkpoints: &str) -> FineTuneJob {
    small_job_with("lora", learning_rate, extra_checkpoints)
}

fn small_job_with(training: &str, learning_rate: f64, extra_checkpoints: &str) -> FineTuneJob {
    small_job_of(
        training,
        learning_rate,
        Layers::default(),
        extra_checkpoints,
    )
}

/// What the small job's layers do: their LoRA dropout and whether the backward
/// pass recomputes them (`gradientCheckpointing`; unset is the default, on).
pub(crate) struct Layers {
    pub dropout: f64,
    pub gradient_checkpointing: Option<bool>,
}

impl Default for Layers {
    fn default() -> Self {
        Layers {
            dropout: 0.1,
            gradient_checkpointing: None,
        }
    }
}

pub(crate) fn small_job_of(
    training: &str,
    learning_rate: f64,
    layers: Layers,
    extra_checkpoints: &str,
) -> FineTuneJob {
    let checkpointing = match layers.gradient_checkpointing {
        Some(on) => format!("\n    gradientCheckpointing: {on}"),
        None => String::new(),
    };
    let dropout = layers.dropout;
    let yaml = format!(
        r#"
apiVersion: anneal.dev/v1alpha1
kind: FineTuneJob
metadata: {{name: small}}
spec:
  training: {training}
  baseModel: {{name: anneal-tiny, source: "file://model"}}
  dataset: {{train: "file://train.jsonl", validationSplit: 0.2}}
  hyperparameters:
    learningRate: {learning_rate}
    epochs: 2
    batchSize: 4
    gradientAccumulation: 2
    maxTokens: 256
    seed: 7
    warmupRatio: 0.2
    lora: {{rank: 4, alpha: 8, dropout: {dropout}}}{checkpointing}
  checkpoints:
    everyEpoch: true
    everySteps: 2
{extra_checkpoints}
    samplePrompts:
      - messages: [{{role: user, content: "What should I wear when it is windy?"}}]
"#
    );
    parse_finetunejob(&yaml).unwrap()
}

pub(crate) fn inputs(job: &FineTuneJob, output: &Path, work: &Path, resume: bool) -> RunInputs {
    RunInputs {
        job: RunIdentity {
            job_name: job.metadata.name.clone().unwrap(),
            run_id: "run-1".into(),
        },
        base_model: BaseModel {
            name: job.spec.base_model.name.clone(),
            dir: tiny_model(),
            adapter: None,
            started_from: None,
        },
        settings: TrainingSettings::of_job(job),
        data: RunData {
            train: ("train.jsonl".into(), {
                let path = work.join("train.jsonl");
                std::fs::create_dir_all(work).unwrap();
                std::fs::write(&path, quickstart_lines(24)).unwrap();
                path
            }),
            validation: None,
            validation_split: job.spec.dataset.resolved_validation_split(),
            mix: Vec::new(),
            evaluation: None,
        },
        location: RunLocation {
            output: Storage::open(&format!("file://{}", output.display())).unwrap(),
            work_dir: work.to_path_buf(),
        },
        memory: GivenMemory::default(),
        resume,
        stop: Arc::new(AtomicBool::new(false)),
        deadline: None,
    }
}

/// burn's CPU backend keeps one random generator per process: anything random in a
/// parallel test thread (building a model draws initial weights) would take draws from
/// a training's dropout stream. A trainer process runs one training; these tests run
/// one at a time for the same reason.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

pub(crate) fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn train(inputs: RunInputs, stop_at: Option<u64>) -> (RunOutcome, Vec<TrainerEvent>) {
    train_on(inputs, stop_at, 1)
}

/// A run on `devices` devices (all of them the CPU: the data-parallel or placed code
/// path, with nothing else changed).
pub(crate) fn train_on(
    inputs: RunInputs,
    stop_at: Option<u64>,
    devices: usize,
) -> (RunOutcome, Vec<TrainerEvent>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let recorder = Recorder {
        events: events.clone(),
        stop: stop_at.map(|at| (at, inputs.stop.clone())),
    };
    let devices = vec![Default::default(); devices];
    let outcome =
        run_training::<CpuTrainBackend>(inputs, vec![Box::new(recorder)], &devices).unwrap();
    let events = events.lock().unwrap().clone();
    (outcome, events)
}

pub(crate) fn read(path: PathBuf) -> Vec<u8> {
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn a_stopped_and_resumed_run_ends_with_the_same_adapter_bit_for_bit() {
    let _generator = crate::support::generator_turn();
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let job = small_job("");
    let (straight, straight_events) = train(
        inputs(&job, &dir.path().join("a"), &dir.path().join("wa"), false),
        None,
    );
    let RunOutcome::Finished { result, state } = straight else {
        panic!("{straight:?}")
    };
    assert_eq!(state.step, 10);
    assert!(state.hyperparameters.gradient_checkpointing);
    assert_eq!(result.model_id, "ft:anneal-tiny:small:ckpt-10");
    assert_eq!(
        micro_batch_line(&straight_events).as_deref(),
        Some("micro-batch 2 x 2 accumulation (set by gradientAccumulation)")
    );
    assert_eq!(
        (
            state.data.micro_batch_size,
            state.data.gradient_accumulation
        ),
        (2, 2)
    );

    let b = dir.path().join("b");
    let (stopped, _) = train(inputs(&job, &b, &dir.path().join("wb"), false), Some(3));
    assert_eq!(
        stopped,
        RunOutcome::Stopped {
            checkpoint: "ckpt-3".into(),
            step: 3
        }
    );
    // A checkpoint cut off mid-upload: files, but no COMPLETE marker. Resume must skip it.
    let torn = b.join("checkpoints/ckpt-9");
    std::fs::create_dir_all(&torn).unwrap();
    std::fs::write(torn.join("adapter_model.safetensors"), b"half").unwrap();
    std::fs::write(torn.join("trainer_state.json"), b"{").unwrap();

    let (resumed, resumed_events) = train(inputs(&job, &b, &dir.path().join("wc"), true), None);
    let RunOutcome::Finished {
        result: resumed_result,
        state: resumed_state,
    } = resumed
    else {
        panic!("{resumed:?}")
    };
    assert_eq!(resumed_state.step, 10);
    assert_eq!(resumed_result.model_id, result.model_id);
    let a = dir.path().join("a");
    for file in ["adapter_model.safetensors", "optimizer.safetensors"] {
        assert!(
            read(a.join("final").join(file)) == read(b.join("final").join(file)),
            "final/{file} differs between the uninterrupted and the resumed run"
        );
    }
    // Same losses at every step, whichever process ran it.
    let losses = |s: &TrainerState| -> Vec<(u64, f64)> {
        s.log_history
            .iter()
            .map(|e| (e.step, e.train_loss))
            .collect()
    };
    assert_eq!(losses(&state), losses(&resumed_state));
    let resumed_message = resumed_events.iter().find_map(|e| match &e.body {
        EventBody::Phase {
            phase: JobPhase::Running,
            message,
            ..
        } => message.clone(),
        _ => None,
    });
    assert_eq!(
        resumed_message.as_deref(),
        Some("resumed from ckpt-3 at step 3/10")
    );

    // The stored event log continues the first process's numbering, with no gap or repeat.
    let log = String::from_utf8(read(b.join("events.jsonl"))).unwrap();
    let seqs: Vec<u64> = log
        .lines()
        .map(|l| TrainerEvent::from_line(l).unwrap().seq)
        .collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    assert!(
        seqs.len() > straight_events.len(),
        "both processes' events are kept"
    );
}

/// The train losses of every step of a finished run.
pub(crate) fn losses(outcome: &RunOutcome) -> Vec<f64> {
    let RunOutcome::Finished { state, .. } = outcome else {
        panic!("{outcome:?}")
    };
    state.log_history.iter().map(|e| e.train_loss).collect()
}

#[test]
fn without_gradient_checkpointing_a_run_with_dropout_resumes_bit_for_bit() {
    let _generator = crate::support::generator_turn();
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let layers = Layers {
        dropout: 0.1,
        gradient_checkpointing: Some(false),
    };
    let job = small_job_of("lora", 0.003, layers, "");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let (straight, _) = train(inputs(&job, &a, &dir.path().join("wa"), false), None);
    let (stopped, _) = train(inputs(&job, &b, &dir.path().join("wb"), false), Some(3));
    assert!(
        matches!(stopped, RunOutcome::Stopped { step: 3, .. }),
        "{stopped:?}"
    );
    let (resumed, _) = train(inputs(&job, &b, &dir.path().join("wc"), true), None);
    assert_eq!(losses(&straight).len(), 10);
    assert_eq!(losses(&straight), losses(&resumed));
    for file in ["adapter_model.safetensors", "optimizer.safetensors"] {
        assert!(
            read(a.join("final").join(file)) == read(b.join("final").join(file)),
            "final/{file} differs between the uninterrupted and the resumed run"
        );
    }
    // The setting reached the step: with it on, each layer draws its dropout masks
    // from a seed of its own, so the same job's losses differ once the adapters are
    // nonzero (B starts at zero, which makes the first step's loss the base model's).
    let c = dir.path().join("c");
    let (recomputed, _) = train(
        inputs(&small_job(""), &c, &dir.path().join("wd"), false),
        None,
    );
    let (recomputed, kept) = (losses(&recomputed), losses(&straight));
    assert_eq!(recomputed[0], kept[0]);
    assert_ne!(recomputed[1..], kept[1..]);
}

/// The run's line saying its micro-batch and why.
pub(crate) fn micro_batch_line(events: &[TrainerEvent]) -> Option<String> {
    events.iter().find_map(|e| match &e.body {
        EventBody::Log { message, .. } if message.starts_with("micro-batch ") => {
            Some(message.clone())
        }
        _ => None,
    })
}

/// The memory plan of `job` on a CPU with `memory`.
fn plan_inputs(job: &FineTuneJob, memory: ByteSize) -> PlanInputs {
    let text = std::fs::read_to_string(tiny_model().join("config.json")).unwrap();
    let shape = ModelShape::from_config_json(&text).unwrap();
    PlanInputs::for_job(&job.spec, shape, DeviceMemory::cpu(memory))
}

#[test]
fn a_run_resumed_where_the_plan_picks_another_micro_batch_keeps_its_order() {
    let _generator = crate::support::generator_turn();
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let layers = Layers {
        dropout: 0.0,
        gradient_checkpointing: None,
    };
    let mut job = small_job_of("lora", 0.003, layers, "");
    job.spec.hyperparameters.gradient_accumulation = None;
    // Exactly what a step of 4 at once needs, and what 1 sample at a time needs.
    let roomy = ByteSize(peak_bytes(&plan_inputs(&job, ByteSize(0)), 4));
    let tight = ByteSize(peak_bytes(&plan_inputs(&job, ByteSize(0)), 1));
    let run = |(name, work): (&str, &str), resume, memory, stop_at| {
        let (out, work) = (dir.path().join(name), dir.path().join(work));
        let mut inputs = inputs(&job, &out, &work, resume);
        inputs.memory.cpu = Some(memory);
        train(inputs, stop_at)
    };
    let (straight, straight_events) = run(("a", "wa"), false, roomy, None);
    assert_eq!(
        micro_batch_line(&straight_events),
        Some(format!(
            "micro-batch 4 x 1 accumulation (plan: {roomy} of {roomy} CPU, memory from --cpu-memory)"
        ))
    );

    let (stopped, _) = run(("b", "wb"), false, roomy, Some(3));
    assert!(
        matches!(stopped, RunOutcome::Stopped { step: 3, .. }),
        "{stopped:?}"
    );
    let checkpoint = TrainerState::from_json(
        &String::from_utf8(read(
            dir.path().join("b/checkpoints/ckpt-3/trainer_state.json"),
        ))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(checkpoint.data.micro_batch_size, 4);
    // Resumed on a device where only one sample fits: not refused, the same order.
    let (resumed, resumed_events) = run(("b", "wc"), true, tight, None);
    assert_eq!(
        micro_batch_line(&resumed_events),
        Some(format!(
            "micro-batch 1 x 4 accumulation (plan: {tight} of {tight} CPU, memory from --cpu-memory)"
        ))
    );
    let RunOutcome::Finished { state, .. } = &resumed else {
        panic!("{resumed:?}")
    };
    let planned = plan(&plan_inputs(&job, tight)).unwrap();
    assert_eq!(state.data.micro_batch_size as u64, planned.micro_batch);
    assert_eq!(
        (
            state.data.micro_batch_size,
            state.data.gradient_accumulation
        ),
        (1, 4)
    );
    // Every step saw the samples of the uninterrupted run's step: the same losses, to
    // the rounding of summing four micro-batches instead of one.
    let (straight, resumed) = (losses(&straight), losses(&resumed));
    assert_eq!(resumed.len(), 10);
    assert_eq!(straight[..3], resumed[..3], "the steps before the stop");
    for (step, (one, four)) in resumed.iter().zip(&straight).enumerate() {
        let gap = (one - four).abs() / four.abs();
        assert!(gap <= 1e-5, "step {}: {one} vs {four}", step + 1);
    }
}

#[test]
fn gradient_checkpointing_leaves_the_losses_of_a_run_without_dropout() {
    let _generator = crate::support::generator_turn();
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let run = |on: bool| {
        let layers = Layers {
            dropout: 0.0,
            gradient_checkpointing: Some(on),
        };
        let job = small_job_of("lora", 0.003, layers, "");
        let out = dir.path().join(format!("out-{on}"));
        let work = dir.path().join(format!("work-{on}"));
        train(inputs(&job, &out, &work, false), None).0
    };
    let (on, off) = (losses(&run(true)), losses(&run(false)));
    assert_eq!(on.len(), 10);
    for (step, (with, without)) in on.iter().zip(&off).enumerate() {
        let gap = (with - without).abs() / without.abs();
        assert!(gap <= 1e-5, "step {}: {with} vs {without}", step + 1);
    }
    assert!(on[9] < on[0], "the run learned: {on:?}");
}

#[test]
fn checkpoints_hold_the_adapter_optimizer_state_samples_and_metrics() {
    let _generator = crate::support::generator_turn();
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let job = small_job("    keep: 2");
    let out = dir.path().join("out");
    let (outcome, events) = train(inputs(&job, &out, &dir.path().join("w"), false), None);
    let RunOutcome::Finished { state, .. } = outcome else {
        panic!("{outcome:?}")
    };

    // Checkpoints every 2 steps and at each epoch end (step 5): 2, 4, 5, 6, 8, 10, with
    // `keep: 2` leaving the newest and the best.
    let written: Vec<&str> = state.checkpoints.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        written,
        ["ckpt-2", "ckpt-4", "ckpt-5", "ckpt-6", "ckpt-8", "ckpt-10"]
    );
    let mut left: Vec<String> = std::fs::read_dir(out.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    let best = state.best_checkpoint.clone().unwrap();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(
        left.contains(&"ckpt-10".to_owned()) && left.contains(&best),
        "{left:?}"
    );
    // Validation loss fell from the first checkpoint to the best.
    let first = state.checkpoints[0].valid_loss.unwrap();
    let best_loss = state
        .checkpoints
        .iter()
        .find(|c| c.name == best)
        .unwrap()
        .valid_loss
        .unwrap();
    assert!(best_loss < first, "{best_loss} vs {first}");

    let ckpt = out.join("checkpoints/ckpt-10");
    assert!(ckpt.join("COMPLETE").exists());
    let config: serde_json::Value =
        serde_json::from_slice(&read(ckpt.join("adapter_config.json"))).unwrap();
    assert_eq!(config["peft_type"], "LORA");
    assert_eq!(config["r"], 4);
    assert_eq!(config["lora_alpha"], 8.0);
    assert_eq!(config["base_model_name_or_path"], "anneal-tiny");
    assert_eq!(config["target_modules"].as_array().unwrap().len(), 7);

    // Optimizer state exists for the adapter only: two moments for A and B of the 7
    // projections of 4 layers, and nothing for a base weight.
    let optimizer = read(ckpt.join("optimizer.safetensors"));
    let optimizer = SafeTensors::deserialize(&optimizer).unwrap();
    let names = optimizer.names();
    assert_eq!(
        names.len(),
        3 * 2 * 7 * 4,
        "exp_avg, exp_avg_sq and step for each"
    );
    assert!(
        names
            .iter()
            .all(|n| n.contains(".lora_A.weight.") || n.contains(".lora_B.weight.")),
        "{names:?}"
    );

    let saved =
        TrainerState::from_json(&String::from_utf8(read(ckpt.join("trainer_state.json"))).unwrap())
            .unwrap();
    assert_eq!((saved.step, saved.total_steps), (10, 10));
    assert_eq!(saved.data.steps_per_epoch, 5);
    assert_eq!(saved.data.train_samples + saved.data.validation_samples, 24);
    let samples: serde_json::Value =
        serde_json::from_slice(&read(ckpt.join("samples.json"))).unwrap();
    assert!(!samples[0]["answer"].as_str().unwrap().is_empty());

    // Events: a metrics line per step named as in the status, validation at checkpoints.
    let metrics: Vec<_> = events
        .iter()
        .filter(|e| matches!(e.body, EventBody::Metrics { .. }))
        .collect();
    assert_eq!(
        metrics.len(),
        11,
        "the base model's validation, then one per step"
    );
    let baseline = metrics[0].to_line();
    assert!(
        baseline.contains(r#""step":0"#)
            && baseline.contains("validLoss")
            && !baseline.contains("trainLoss"),
        "{baseline}"
    );
    let line = metrics[2].to_line();
    for field in [
        "\"step\":2",
        "trainLoss",
        "validLoss",
        "tokenAccuracy",
        "tokensPerSecond",
        "learningRate",
    ] {
        assert!(line.contains(field), "{field} missing in {line}");
    }
    let stored = String::from_utf8(read(out.join("events.jsonl"))).unwrap();
    assert_eq!(stored.lines().count(), events.len());
    let svg = String::from_utf8(read(out.join("loss.svg"))).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("validation"));
}

#[test]
fn the_trained_adapter_reloads_and_generates_what_the_merged_model_does() {
    let _generator = crate::support::generator_turn();
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    // A large step, so ten steps move the greedy answer visibly.
    let job = small_job_at(0.02, "");
    let out = dir.path().join("out");
    let (outcome, _) = train(inputs(&job, &out, &dir.path().join("w"), false), None);
    assert!(matches!(outcome, RunOutcome::Finished { .. }));

    let device = Default::default();
    let (config, base) = load_model::<CpuBackend>(&tiny_model(), &device, DType::F32).unwrap();
    let tokenizer = ModelTokenizer::from_model_dir(&tiny_model(), &config.architecture).unwrap();
    let messages = vec![anneal_crds::dataset::ChatMessage {
        role: anneal_crds::dataset::Role::User,
        content: "How do I fix a flat tyre on my bike?".into(),
    }];
    let prompt = tokenizer.encode_chat(&messages, true).unwrap().ids;
    let params = SamplingParams {
        max_new_tokens: 24,
        ..Default::default()
    };
    let greedy = |model: &anneal_model::llm::CausalLm<CpuBackend>| {
        generate(
            model,
            &prompt,
            tokenizer.eos_token_ids(),
            &params,
            |_| String::new(),
            |_| {},
        )
        .token_ids
    };
    let plain = greedy(&base);
    let adapted = load_adapter(base, &out.join("final")).unwrap();
    let with_adapter = greedy(&adapted);
    let merged = greedy(&merge(adapted));
    assert_eq!(with_adapter, merged);
    assert_ne!(with_adapter, plain, "training changed nothing");
}

#[test]
fn full_training_moves_every_weight_saves_a_model_folder_and_resumes_bit_for_bit() {
    let _generator = crate::support::generator_turn();
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let job = small_job_with("full", 0.001, "");
    let a = dir.path().join("a");
    let (straight, _) = train(inputs(&job, &a, &dir.path().join("wa"), false), None);
    let RunOutcome::Finished { state, .. } = straight else {
        panic!("{straight:?}")
    };
    let first = state.checkpoints[0].valid_loss.unwrap();
    let last = state.checkpoints.last().unwrap().valid_loss.unwrap();
    assert!(last < first, "validation loss {first} -> {last}");

    let b = dir.path().join("b");
    let (stopped, _) = train(inputs(&job, &b, &dir.path().join("wb"), false), Some(3));
    assert!(
        matches!(stopped, RunOutcome::Stopped { step: 3, .. }),
        "{stopped:?}"
    );
    let (resumed, _) = train(inputs(&job, &b, &dir.path().join("wc"), true), None);
    assert!(
        matches!(resumed, RunOutcome::Finished { .. }),
        "{resumed:?}"
    );
    for file in ["model.safetensors", "optimizer.safetensors"] {
        assert!(
            read(a.join("final").join(file)) == read(b.join("final").join(file)),
            "final/{file} differs between the uninterrupted and the resumed run"
        );
    }

    // The final folder is a model like the base: it loads, every weight moved, and
    // the optimizer kept state for every one of them.
    let device = Default::default();
    let (_, base) = load_model::<CpuBackend>(&tiny_model(), &device, DType::F32).unwrap();
    let (_, tuned) = load_model::<CpuBackend>(&a.join("final"), &device, DType::F32).unwrap();
    let base_weights = anneal_model::llm::save::named_weights(&base);
    let tuned_weights = anneal_model::llm::save::named_weights(&tuned);
    assert_eq!(base_weights.len(), tuned_weights.len());
    for (before, after) in base_weights.iter().zip(&tuned_weights) {
        let values = |w: &anneal_model::llm::save::NamedWeight<'_, CpuBackend>| match &w.param {
            anneal_model::llm::save::WeightRef::Matrix(p) => {
                p.val().into_data().to_vec::<f32>().unwrap()
            }
            anneal_model::llm::save::WeightRef::Vector(p) => {
                p.val().into_data().to_vec::<f32>().unwrap()
            }
        };
        assert_ne!(
            values(before),
            values(after),
            "{} did not move",
            before.name
        );
    }
    let optimizer = read(a.join("final/optimizer.safetensors"));
    let optimizer = SafeTensors::deserialize(&optimizer).unwrap();
    assert_eq!(optimizer.names().len(), 3 * base_weights.len());
    assert!(a.join("final/tokenizer.json").exists() && a.join("final/config.json").exists());
}
