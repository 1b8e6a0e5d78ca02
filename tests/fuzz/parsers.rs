//! Fuzzing of every parser that takes outside input, on stable Rust with bolero: each
//! target mutates a valid input (the fuzz bytes read as edits to it, so most inputs
//! stay near the shapes the parser knows) and also takes raw bytes, and asserts that
//! the parser answers with a value or an error, never a panic, and that what it
//! accepts keeps the parser's own promises.
//!
//! `cargo test -p anneal-fuzz` runs each target briefly (bolero's default iterations,
//! a second or so each); `scripts/fuzz.sh` runs them longer. A crash prints the seed
//! that repeats it (`BOLERO_RANDOM_SEED`); each one found becomes a case in
//! `regressions` below.

use std::path::Path;

use anneal_crds::dataset::{DatasetKind, DatasetLimits, validate_dataset};
use anneal_crds::events::TrainerEvent;
use anneal_crds::finetunejob::FineTuneJobStatus;
use anneal_crds::manifest::{parse_finetunejob, parse_modeldeployment};
use anneal_model::llm::ModelConfig;
use anneal_model::llm::weights::{SafetensorsFiles, WeightSource};
use anneal_operator::report::{FoldRules, ReportedStatus, fold_event, parse_events};
use anneal_serve::chat_request::parse_chat_request;

/// `seed` with the fuzz `edits` applied: each 4 bytes are a position (2 bytes), an
/// operation (replace, insert, delete, or copy a run of the seed elsewhere) and a byte.
fn mutate(seed: &[u8], edits: &[u8]) -> Vec<u8> {
    let mut out = seed.to_vec();
    for edit in edits.chunks_exact(4) {
        let position = usize::from(u16::from_le_bytes([edit[0], edit[1]]));
        let at = if out.is_empty() {
            0
        } else {
            position % (out.len() + 1)
        };
        match edit[2] % 4 {
            0 if at < out.len() => out[at] = edit[3],
            1 => out.insert(at, edit[3]),
            2 if at < out.len() => {
                out.remove(at);
            }
            3 => {
                let len = usize::from(edit[3]).min(seed.len());
                let from = position % (seed.len() - len + 1);
                out.splice(at..at, seed[from..from + len].iter().copied());
            }
            _ => {}
        }
    }
    out
}

const DATASET: &str = concat!(
    r#"{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}"#,
    "\n",
    r#"{"messages": [{"role": "user", "content": "2+2?"}], "chosen": {"role": "assistant", "content": "4"}, "rejected": {"role": "assistant", "content": "5"}}"#,
    "\r\n",
);

#[test]
fn dataset_lines() {
    let limits = DatasetLimits {
        max_line_bytes: 4096,
        max_errors: 5,
    };
    bolero::check!()
        .with_type::<Vec<u8>>()
        .for_each(|edits: &Vec<u8>| {
            for input in [mutate(DATASET.as_bytes(), edits), edits.clone()] {
                for kind in [DatasetKind::Sft, DatasetKind::Dpo] {
                    let report = validate_dataset(&input[..], kind, &limits)
                        .expect("reading from memory cannot fail");
                    assert!(report.problems.len() <= limits.max_errors);
                }
            }
        });
}

const JOB: &str = r#"apiVersion: anneal.dev/v1alpha1
kind: FineTuneJob
metadata: {name: support-bot, namespace: team-a}
spec:
  baseModel: {name: Qwen/Qwen2.5-7B-Instruct, source: "s3://models/qwen"}
  dataset: {train: "s3://data/train.jsonl", validationSplit: 0.1}
  hyperparameters: {preset: fast, learningRate: 0.0002, lora: {rank: 16, targetModules: [q_proj, v_proj]}}
  checkpoints: {everySteps: 50, keep: 3, earlyStopping: {patience: 2}, samplePrompts: [{messages: [{role: user, content: Hi}]}]}
  resources: {gpus: 1, memory: 64Gi}
"#;

const DEPLOYMENT: &str = r#"apiVersion: anneal.dev/v1alpha1
kind: ModelDeployment
metadata: {name: support-bot, namespace: team-a}
spec:
  model: {baseModel: {name: qwen, source: "s3://models/qwen"}, adapters: [{name: a, uri: "s3://adapters/a"}]}
  replicas: 2
"#;

#[test]
fn manifests() {
    bolero::check!()
        .with_type::<Vec<u8>>()
        .for_each(|edits: &Vec<u8>| {
            for (seed, is_job) in [(JOB, true), (DEPLOYMENT, false)] {
                let text = String::from_utf8_lossy(&mutate(seed.as_bytes(), edits)).into_owned();
                if is_job {
                    if let Ok(job) = parse_finetunejob(&text) {
                        // What local mode accepts names a storage-safe run folder.
                        let name = job.metadata.name.unwrap_or_default();
                        assert!(!name.contains('/') && !name.contains(".."), "{name:?}");
                    }
                } else {
                    let _ = parse_modeldeployment(&text);
                }
            }
        });
}

const CHAT_REQUEST: &str = r#"{"model": "house", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": [{"type": "text", "text": "Hi"}]}], "max_tokens": 16, "temperature": 0.7, "top_p": 0.9, "stop": ["\n\n"], "seed": 3, "stream": true, "stream_options": {"include_usage": true}}"#;

#[test]
fn chat_requests() {
    bolero::check!()
        .with_type::<Vec<u8>>()
        .for_each(|edits: &Vec<u8>| {
            for input in [mutate(CHAT_REQUEST.as_bytes(), edits), edits.clone()] {
                if let Ok(request) = parse_chat_request(&input) {
                    assert!(!request.messages.is_empty());
                }
            }
        });
}

const EVENTS: &str = r#"[{"seq": 1, "time": "2026-12-04T10:00:00Z", "type": "phase", "phase": "Running"},
 {"seq": 2, "time": "2026-12-04T10:00:01Z", "type": "metrics", "step": 3, "epoch": 0.5, "trainLoss": 1.25, "validLoss": 1.5},
 {"seq": 3, "time": "2026-12-04T10:00:02Z", "type": "checkpoint", "name": "ckpt-3", "step": 3, "epoch": 0.5, "uri": "s3://b/team-a/job/uid/checkpoints/ckpt-3", "validLoss": 1.5, "samples": ["Hi"]},
 {"seq": 4, "time": "2026-12-04T10:00:03Z", "type": "log", "level": "warn", "message": "slow"},
 {"seq": 5, "time": "2026-12-04T10:00:04Z", "type": "phase", "phase": "Succeeded", "result": {"modelId": "ft:m:job:ckpt-3", "uri": "s3://b/team-a/job/uid/final", "stoppedEarly": "why"}}]"#;

#[test]
fn trainer_events_at_the_report_endpoint() {
    let rules = FoldRules::for_run("s3://b/team-a/job/uid");
    bolero::check!()
        .with_type::<Vec<u8>>()
        .for_each(|edits: &Vec<u8>| {
            let input = mutate(EVENTS.as_bytes(), edits);
            if let Ok(events) = parse_events(&input) {
                let mut status = ReportedStatus::from_status(&FineTuneJobStatus::default());
                for event in &events {
                    let _ = fold_event(&mut status, event, &rules);
                }
                // The status keeps its bounds whatever was folded.
                assert!(
                    status.checkpoints.len() <= 21,
                    "{}",
                    status.checkpoints.len()
                );
            }
            for line in String::from_utf8_lossy(&input).lines() {
                let _ = TrainerEvent::from_line(line);
            }
        });
}

const CONFIG: &str = r#"{"architectures": ["LlamaForCausalLM"], "hidden_size": 4096,
    "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
    "num_key_value_heads": 8, "vocab_size": 128256, "rms_norm_eps": 1e-5, "head_dim": 128,
    "attention_bias": false, "mlp_bias": false, "max_position_embeddings": 131072,
    "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
    "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}, "rope_theta": 500000.0}"#;

#[test]
fn model_configs() {
    bolero::check!()
        .with_type::<Vec<u8>>()
        .for_each(|edits: &Vec<u8>| {
            let text = String::from_utf8_lossy(&mutate(CONFIG.as_bytes(), edits)).into_owned();
            if let Ok(config) = ModelConfig::from_json(&text) {
                // What is accepted can be built: positive, bounded sizes and numbers.
                assert!(config.num_layers >= 1 && config.num_layers <= 1024);
                assert!(config.head_dim >= 1 && config.num_kv_heads >= 1);
                assert!(config.num_heads.is_multiple_of(config.num_kv_heads));
                assert!(config.rms_norm_eps > 0.0 && config.rope_theta > 0.0);
            }
        });
}

/// A small valid safetensors file: a bf16 matrix and an f32 vector.
fn safetensors_seed() -> Vec<u8> {
    let matrix: Vec<u8> = (0..12u16)
        .flat_map(|i| (0x3F80 + i).to_le_bytes())
        .collect();
    let vector: Vec<u8> = [1.0f32, -2.0, 0.5]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let views = [
        (
            "model.embed_tokens.weight",
            safetensors::tensor::TensorView::new(safetensors::Dtype::BF16, vec![4, 3], &matrix)
                .unwrap(),
        ),
        (
            "model.norm.weight",
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![3], &vector)
                .unwrap(),
        ),
    ];
    safetensors::serialize(views, None).unwrap()
}

#[test]
fn safetensors_files_of_model_folders() {
    let seed = safetensors_seed();
    let dir = tempfile::tempdir().unwrap();
    bolero::check!()
        .with_type::<Vec<u8>>()
        .for_each(|edits: &Vec<u8>| {
            let bytes = mutate(&seed, edits);
            read_weights(dir.path(), &bytes);
        });
}

/// Opens `bytes` as a model folder's only safetensors file and reads the tensors it
/// names: an error is fine, a panic or an out-of-bounds read is not.
fn read_weights(dir: &Path, bytes: &[u8]) {
    std::fs::write(dir.join("model.safetensors"), bytes).unwrap();
    let Ok(files) = SafetensorsFiles::open(dir) else {
        return;
    };
    for (name, shape) in [
        ("model.embed_tokens.weight", &[4usize, 3][..]),
        ("model.norm.weight", &[3][..]),
    ] {
        if let Ok(data) = files.tensor(name, shape, &|dtype| dtype) {
            assert_eq!(data.shape.to_vec(), shape.to_vec());
        }
    }
}

/// Inputs that once broke a parser; none yet (add each crash the fuzzers find).
#[test]
fn regressions() {
    let dir = tempfile::tempdir().unwrap();
    for bytes in [
        &b""[..],
        b"\xff\xff\xff\xff\xff\xff\xff\xff",
        b"\x08\0\0\0\0\0\0\0{}",
    ] {
        read_weights(dir.path(), bytes);
        let _ = parse_chat_request(bytes);
        let _ = parse_events(bytes);
    }
}
