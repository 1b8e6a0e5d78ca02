//! Answers per second of `trainer evaluate` on the bundled tiny model, and its cost
//! over plain generation of the same answers in the same process: the quick start's
//! 20 held-out questions, greedy, 96 tokens at most, on the CPU.
//!
//! The reference is the generation loop alone (chat template, `generate`), timed
//! before and after the evaluations. Two evaluations of one model follow: with the
//! text metrics only (regex, contains, ROUGE-L, chrF), and with `referenceLoss` too,
//! which adds a forward pass over each reference answer. Both include what evaluating
//! adds around the answers: reading the manifest and dataset, loading the model,
//! keeping every answer in the run folder, scoring, the bootstrap intervals and the
//! report.
//!
//! cargo bench -p anneal-trainer --bench evaluate [-- --write]

mod common;
#[path = "../../benches/results_section.rs"]
mod results_section;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anneal_eval::samples::read_eval_samples;
use anneal_model::backend::CpuBackend;
use anneal_model::chat::ModelTokenizer;
use anneal_model::generate::{SamplingParams, generate};
use anneal_model::llm::load_model;
use anneal_trainer::device_arg::DeviceArg;
use anneal_trainer::evaluate_command::{self, EvaluateArgs};
use burn::tensor::DType;

const MAX_TOKENS: usize = 96;

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Seconds to answer every held-out question with the generation loop alone.
fn plain_generation(model_dir: &Path, held_out: &Path) -> (f64, usize) {
    let samples = read_eval_samples(std::fs::File::open(held_out).unwrap(), None).unwrap();
    let started = Instant::now();
    let device = Default::default();
    let (config, model) = load_model::<CpuBackend>(model_dir, &device, DType::F32).unwrap();
    let tokenizer = ModelTokenizer::from_model_dir(model_dir, &config.architecture).unwrap();
    let params = SamplingParams {
        max_new_tokens: MAX_TOKENS,
        temperature: 0.0,
        top_p: 1.0,
        seed: 0,
        stop: Vec::new(),
    };
    let decode = |ids: &[u32]| tokenizer.decode(ids, true).unwrap_or_default();
    let mut tokens = 0;
    for sample in &samples {
        let prompt = tokenizer.encode_chat(&sample.prompt, true).unwrap();
        let generation = generate(
            &model,
            &prompt.ids,
            tokenizer.eos_token_ids(),
            &params,
            decode,
            |_| {},
        );
        tokens += generation.token_ids.len();
    }
    (started.elapsed().as_secs_f64(), tokens)
}

/// Seconds for `trainer evaluate` on a manifest of the base model with `metrics`.
fn evaluation(work: &Path, metrics: &str) -> f64 {
    let quickstart = repository().join("examples/quickstart");
    let manifest = work.join("evaluation.yaml");
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: anneal.dev/v1alpha1\nkind: ModelEvaluation\nmetadata: {{name: bench}}\nspec:\n  models:\n    - {{name: base, baseModel: {{name: anneal-tiny, source: \"file://{}\"}}}}\n  dataset: {{uri: \"file://{}\"}}\n  metrics: {metrics}\n  generation: {{temperature: 0, maxTokens: {MAX_TOKENS}}}\n",
            repository().join("examples/models/anneal-tiny").display(),
            quickstart.join("house-style-heldout.jsonl").display(),
        ),
    )
    .unwrap();
    let started = Instant::now();
    let code = evaluate_command::run(EvaluateArgs {
        manifest,
        runs: None,
        output: Some(format!("file://{}", work.join("out").display())),
        device: DeviceArg::Cpu,
        secrets_dir: work.join("secrets"),
        deployments: Vec::new(),
        job_runs: Vec::new(),
        run_id: None,
    });
    assert_eq!(code, ExitCode::SUCCESS, "the evaluation ran");
    started.elapsed().as_secs_f64()
}

fn main() {
    let write = std::env::args().any(|a| a == "--write");
    let model_dir = repository().join("examples/models/anneal-tiny");
    let held_out = repository().join("examples/quickstart/house-style-heldout.jsonl");
    let work = tempfile::tempdir().unwrap();

    // Untimed: first-touch allocation of the model's buffers.
    plain_generation(&model_dir, &held_out);
    let (before, tokens) = plain_generation(&model_dir, &held_out);
    let text = evaluation(
        work.path(),
        "[{regex: {pattern: \"^Good question!\"}}, {contains: {text: \"In short: \"}}, {rougeL: {}}, {chrf: {}}]",
    );
    let with_loss = evaluation(
        work.path(),
        "[{regex: {pattern: \"^Good question!\"}}, {contains: {text: \"In short: \"}}, {rougeL: {}}, {chrf: {}}, {referenceLoss: {}}]",
    );
    let (after, _) = plain_generation(&model_dir, &held_out);
    let plain = (before + after) / 2.0;
    let answers = 20.0;

    let rows = [
        ("plain generation (reference)", plain),
        ("trainer evaluate, text metrics", text),
        ("trainer evaluate, text metrics + referenceLoss", with_loss),
    ];
    let mut table = String::from(
        "| run | seconds | answers/s | time / plain generation |\n|---|---|---|---|\n",
    );
    for (name, seconds) in rows {
        table.push_str(&format!(
            "| {name} | {seconds:.2} | {:.1} | {:.2}x |\n",
            answers / seconds,
            seconds / plain
        ));
    }
    let section = format!(
        "## evaluation on the tiny model (CPU)\n\n\
         Command: `cargo bench -p anneal-trainer --bench evaluate -- --write` \
         (trainer/benches/evaluate.rs). The bundled tiny model answers the quick \
         start's 20 held-out questions, greedy, at most {MAX_TOKENS} tokens \
         ({tokens} tokens in all), on the CPU, in one process. The reference is the \
         generation loop alone (chat template and `generate`), timed before the \
         evaluations ({before:.2} s) and after them ({after:.2} s), and averaged. \
         Each evaluation is a whole `trainer evaluate`: reading the manifest and the \
         set, loading the model, keeping every answer in the run folder, scoring, the \
         bootstrap intervals, and `report.json` and `report.html`.\n\n{table}\n\
         Peak RSS of the process: {:.0} MiB.\n",
        common::peak_rss_mib()
    );
    print!("{section}");
    if write {
        results_section::write_section(&repository().join("benches/RESULTS.md"), &section);
    }
}
