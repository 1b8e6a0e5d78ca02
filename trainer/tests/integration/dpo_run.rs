//! A DPO run through the library on the bundled tiny model and the quick start's
//! preference pairs (the reply opening with "Good question!" chosen, the same reply
//! without it rejected), with the SFT term on the chosen reply (RPO): validation
//! reward accuracy climbs far above chance, the greedy answer takes up the chosen
//! style and stays fluent, every metrics event carries the rewards, and the final adapter is a PEFT
//! adapter that loads and generates like an SFT one. Stopped and resumed runs end bit
//! for bit where uninterrupted ones do: full training against its initial reference,
//! and LoRA with dropout and gradient checkpointing on.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anneal_crds::events::{EventBody, TrainerEvent};
use anneal_crds::finetunejob::Metrics;
use anneal_crds::manifest::parse_finetunejob;
use anneal_crds::storage::Storage;
use anneal_model::backend::CpuBackend;
use anneal_model::chat::ModelTokenizer;
use anneal_model::generate::{SamplingParams, generate};
use anneal_model::llm::load_model;
use anneal_model::lora::peft::load_adapter;
use anneal_train::device_memory::GivenMemory;
use anneal_train::event_log::EventSink;
use anneal_train::run::{
    BaseModel, RunData, RunIdentity, RunInputs, RunLocation, RunOutcome, TrainingSettings,
    run_training,
};
use anneal_train::train_backend::CpuTrainBackend;
use burn::tensor::DType;

const STYLE: &str = "Good question!";
const QUESTION: &str = "What should I wear when it is windy?";
/// The learning test's seed. It also passes with 12 and 42; some seeds (3, 7) send
/// the 1M-parameter model's answer to another question's.
const SEED: u64 = 11;

/// Lowercase words, without punctuation.
fn words(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(|w| {
            w.trim_matches(|c: char| !c.is_alphanumeric())
                .to_lowercase()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

/// The share of `reference`'s words that occur in `text`.
fn shared_words(reference: &str, text: &str) -> f64 {
    let reference = words(reference);
    let text = words(text);
    let kept = reference.iter().filter(|w| text.contains(w)).count();
    kept as f64 / reference.len().max(1) as f64
}

/// `answer` up to the "In short:" summary the dataset's replies end with.
fn first_paragraph(answer: &str) -> &str {
    answer.split("In short:").next().unwrap_or(answer)
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tiny_model() -> PathBuf {
    repo().join("examples/models/anneal-tiny")
}

/// The first `lines` pairs of the quick start's preference data.
fn pairs(lines: usize) -> Vec<u8> {
    let text =
        std::fs::read_to_string(repo().join("examples/quickstart/house-style-dpo.jsonl")).unwrap();
    let mut out = text.lines().take(lines).collect::<Vec<_>>().join("\n");
    out.push('\n');
    out.into_bytes()
}

/// Keeps every event; sets `stop` once a step at or past `stop_at` has finished.
struct Recorder(
    Arc<Mutex<Vec<TrainerEvent>>>,
    Option<(u64, Arc<AtomicBool>)>,
);

impl EventSink for Recorder {
    fn emit(&mut self, event: &TrainerEvent) {
        if let (EventBody::Progress(p), Some((at, flag))) = (&event.body, &self.1)
            && p.step >= *at
        {
            flag.store(true, Ordering::SeqCst);
        }
        self.0.lock().unwrap().push(event.clone());
    }
}

/// Runs `yaml` on the first `lines` pairs, writing to `out`.
fn train(
    yaml: &str,
    lines: usize,
    out: &Path,
    resume: bool,
    stop_at: Option<u64>,
) -> (RunOutcome, Vec<TrainerEvent>) {
    let job = parse_finetunejob(yaml).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let inputs = RunInputs {
        job: RunIdentity {
            job_name: job.metadata.name.clone().unwrap(),
            run_id: "run-1".into(),
        },
        base_model: BaseModel {
            name: "anneal-tiny".into(),
            dir: tiny_model(),
            adapter: None,
            started_from: None,
        },
        settings: TrainingSettings::of_job(&job),
        data: RunData {
            train: ("pairs.jsonl".into(), {
                let path = out.with_extension("pairs.jsonl");
                std::fs::write(&path, pairs(lines)).unwrap();
                path
            }),
            validation: None,
            validation_split: job.spec.dataset.resolved_validation_split(),
            mix: Vec::new(),
            evaluation: None,
        },
        location: RunLocation {
            output: Storage::open(&format!("file://{}", out.display())).unwrap(),
            work_dir: out.with_extension("work"),
        },
        memory: GivenMemory::default(),
        resume,
        stop: stop.clone(),
        deadline: None,
    };
    let events = Arc::new(Mutex::new(Vec::new()));
    let recorder = Recorder(events.clone(), stop_at.map(|at| (at, stop)));
    let outcome =
        run_training::<CpuTrainBackend>(inputs, vec![Box::new(recorder)], &[Default::default()])
            .unwrap();
    let events = events.lock().unwrap().clone();
    (outcome, events)
}

#[test]
fn dpo_lora_learns_the_preferred_style() {
    let _generator = crate::support::generator_turn();
    let yaml = format!(
        r#"
apiVersion: anneal.dev/v1alpha1
kind: FineTuneJob
metadata: {{name: prefer}}
spec:
  method: dpo
  baseModel: {{name: anneal-tiny, source: "file://model"}}
  dataset: {{train: "file://pairs.jsonl", validationSplit: 0.1}}
  hyperparameters:
    # The quick start's settings: a large step for the tiny model, and the chosen
    # reply's NLL beside the DPO loss (RPO) so that the answer stays fluent.
    learningRate: 0.003
    epochs: 2
    batchSize: 8
    maxTokens: 256
    seed: {seed}
    warmupRatio: 0.1
    lora: {{rank: 8, alpha: 16, dropout: 0.0}}
    dpo: {{beta: 0.1, sftWeight: 1.0}}
  checkpoints:
    everyEpoch: true
    samplePrompts:
      - messages: [{{role: user, content: "{QUESTION}"}}]
"#,
        seed = SEED
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (outcome, events) = train(&yaml, 160, &out, false, None);
    let RunOutcome::Finished { state, .. } = outcome else {
        panic!("{outcome:?}")
    };
    let metrics: Vec<(u64, Metrics)> = events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Metrics { step, metrics, .. } => Some((*step, metrics.clone())),
            _ => None,
        })
        .collect();
    // 144 training pairs (16 held out), 8 a step, 2 epochs: 36 steps.
    assert_eq!(
        (state.data.train_samples, state.data.validation_samples),
        (144, 16)
    );
    assert_eq!(state.step, 36);

    // Before training the model is its own reference: every reward is 0, the DPO part
    // of the loss is ln 2 and no chosen reply out-rewards its rejected one; the SFT
    // term adds the chosen replies' per-token NLL on top.
    let (step, before) = &metrics[0];
    assert_eq!(*step, 0);
    let before_loss = before.valid_loss.unwrap();
    assert!(before_loss > std::f64::consts::LN_2 + 0.5, "{before:?}");
    assert_eq!(before.valid_reward_accuracy, Some(0.0));
    assert_eq!(before.valid_reward_margin, Some(0.0));
    assert!(before.token_accuracy.is_none(), "no token accuracy in DPO");

    // Every step reports the training rewards; the last also the validation ones.
    for (_, m) in &metrics[1..] {
        assert!(m.train_loss.is_some() && m.reward_margin.is_some(), "{m:?}");
        assert!(m.rewards_chosen.is_some() && m.rewards_rejected.is_some());
        assert!(m.reward_accuracy.is_some() && m.tokens_per_second.is_some());
    }
    let (_, after) = metrics.last().unwrap();
    let accuracy = after.valid_reward_accuracy.unwrap();
    let margin = after.valid_reward_margin.unwrap();
    assert!(accuracy >= 0.9, "validation reward accuracy {accuracy}");
    assert!(margin > 0.5, "validation reward margin {margin}");
    let after_loss = after.valid_loss.unwrap();
    assert!(
        after_loss < 1.0 && after_loss < before_loss / 2.0,
        "{after:?}"
    );
    assert!(
        (after.valid_rewards_chosen.unwrap() - after.valid_rewards_rejected.unwrap() - margin)
            .abs()
            < 1e-9
    );

    // The greedy answer takes up the chosen style.
    let before_answer = events
        .iter()
        .find_map(|e| match &e.body {
            EventBody::Log { message, .. } => message.strip_prefix("before training: "),
            _ => None,
        })
        .unwrap()
        .to_owned();
    let final_answer = state.checkpoints.last().unwrap().samples[0].clone();
    assert!(!before_answer.starts_with(STYLE), "{before_answer}");
    assert!(final_answer.starts_with(STYLE), "{final_answer}");
    // ... and stays fluent: its first paragraph (before the dataset's "In short:"
    // summary line) keeps most of the base model's fluent answer to the question
    // ("Tie down anything light in the garden. Cyclists should expect hard work
    // against the wind."). Plain DPO on this model gives "Good question! Do not what
    // I do not know any other people last week. do I start?", which keeps none of it.
    let kept = shared_words(&before_answer, first_paragraph(&final_answer));
    assert!(
        kept >= 0.5,
        "{kept:.2} of {before_answer:?} in {final_answer:?}"
    );

    // final/ is a PEFT adapter that the generate path loads: its greedy answer is the
    // one the last checkpoint recorded.
    let final_dir = out.join("final");
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(final_dir.join("adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(config["peft_type"], "LORA");
    let device = Default::default();
    let (model_config, base) =
        load_model::<CpuBackend>(&tiny_model(), &device, DType::F32).unwrap();
    let tokenizer =
        ModelTokenizer::from_model_dir(&tiny_model(), &model_config.architecture).unwrap();
    let adapted = load_adapter(base, &final_dir).unwrap();
    let messages = vec![anneal_crds::dataset::ChatMessage {
        role: anneal_crds::dataset::Role::User,
        content: QUESTION.into(),
    }];
    let prompt = tokenizer.encode_chat(&messages, true).unwrap().ids;
    let params = SamplingParams {
        max_new_tokens: 64,
        temperature: 0.0,
        ..Default::default()
    };
    let answer = generate(
        &adapted,
        &prompt,
        tokenizer.eos_token_ids(),
        &params,
        |ids| tokenizer.decode(ids, true).unwrap_or_default(),
        |_| {},
    )
    .text;
    assert_eq!(answer, final_answer);
}

/// Full training keeps the initial weights as its reference; a resumed run must take
/// the base model again, not the checkpoint it resumes from, or its losses (and so
/// its weights) would differ from an uninterrupted run's.
#[test]
fn full_dpo_resumes_bit_for_bit_against_the_same_reference() {
    let _generator = crate::support::generator_turn();
    let yaml = r#"
apiVersion: anneal.dev/v1alpha1
kind: FineTuneJob
metadata: {name: prefer-full}
spec:
  method: dpo
  training: full
  baseModel: {name: anneal-tiny, source: "file://model"}
  dataset: {train: "file://pairs.jsonl", validationSplit: 0.25}
  hyperparameters:
    learningRate: 0.0001
    epochs: 2
    batchSize: 4
    maxTokens: 256
    seed: 5
    dpo: {beta: 0.1, labelSmoothing: 0.1}
  checkpoints:
    everyEpoch: true
"#;
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    // 12 training pairs, 4 a step: 3 steps an epoch, 6 in all.
    let (straight, _) = train(yaml, 16, &a, false, None);
    let RunOutcome::Finished { state, .. } = straight else {
        panic!("{straight:?}")
    };
    assert_eq!(state.step, 6);
    let (stopped, _) = train(yaml, 16, &b, false, Some(2));
    assert!(
        matches!(stopped, RunOutcome::Stopped { step: 2, .. }),
        "{stopped:?}"
    );
    let (resumed, _) = train(yaml, 16, &b, true, None);
    let RunOutcome::Finished {
        state: resumed_state,
        ..
    } = resumed
    else {
        panic!("{resumed:?}")
    };
    let history = |s: &anneal_train::state::TrainerState| -> Vec<(f64, Option<f64>)> {
        s.log_history
            .iter()
            .map(|e| (e.train_loss, e.train_rewards.map(|r| r.reward_margin)))
            .collect()
    };
    assert_eq!(history(&resumed_state), history(&state));
    assert!(
        std::fs::read(a.join("final/model.safetensors")).unwrap()
            == std::fs::read(b.join("final/model.safetensors")).unwrap(),
        "final weights differ between the uninterrupted and the resumed run"
    );
    // Label smoothing keeps the loss from reaching 0; it still falls.
    let first = state.log_history[0].train_loss;
    let last = state.log_history.last().unwrap().train_loss;
    assert!(
        (first - std::f64::consts::LN_2).abs() < 1e-5 && last < first,
        "{first} -> {last}"
    );
}

/// With gradient checkpointing the policy's layers are recomputed in the backward
/// pass, each drawing its LoRA dropout masks from a seed of its own; a resumed run
/// must draw the same ones, for the DPO term and the SFT term alike.
#[test]
fn lora_dpo_with_dropout_and_gradient_checkpointing_resumes_bit_for_bit() {
    let _generator = crate::support::generator_turn();
    let yaml = r#"
apiVersion: anneal.dev/v1alpha1
kind: FineTuneJob
metadata: {name: prefer-recomputed}
spec:
  method: dpo
  baseModel: {name: anneal-tiny, source: "file://model"}
  dataset: {train: "file://pairs.jsonl", validationSplit: 0.25}
  hyperparameters:
    learningRate: 0.003
    epochs: 2
    batchSize: 4
    gradientAccumulation: 2
    maxTokens: 256
    seed: 5
    lora: {rank: 4, alpha: 8, dropout: 0.1}
    dpo: {beta: 0.1, sftWeight: 0.5}
    gradientCheckpointing: true
  checkpoints:
    everyEpoch: true
"#;
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    // 12 training pairs, 4 a step in micro-batches of 2: 3 steps an epoch, 6 in all.
    let (straight, _) = train(yaml, 16, &a, false, None);
    let RunOutcome::Finished { state, .. } = straight else {
        panic!("{straight:?}")
    };
    assert_eq!(state.step, 6);
    assert!(state.hyperparameters.gradient_checkpointing);
    let (stopped, _) = train(yaml, 16, &b, false, Some(2));
    assert!(
        matches!(stopped, RunOutcome::Stopped { step: 2, .. }),
        "{stopped:?}"
    );
    let (resumed, _) = train(yaml, 16, &b, true, None);
    let RunOutcome::Finished {
        state: resumed_state,
        ..
    } = resumed
    else {
        panic!("{resumed:?}")
    };
    let history = |s: &anneal_train::state::TrainerState| -> Vec<(f64, Option<f64>)> {
        s.log_history
            .iter()
            .map(|e| (e.train_loss, e.train_rewards.map(|r| r.reward_margin)))
            .collect()
    };
    assert_eq!(history(&resumed_state), history(&state));
    for file in ["adapter_model.safetensors", "optimizer.safetensors"] {
        assert!(
            std::fs::read(a.join("final").join(file)).unwrap()
                == std::fs::read(b.join("final").join(file)).unwrap(),
            "final/{file} differs between the uninterrupted and the resumed run"
        );
    }
    // The rewards moved apart: the steps trained.
    let margin = state.log_history.last().unwrap().train_rewards.unwrap();
    assert!(margin.reward_margin > 0.0, "{margin:?}");
}
