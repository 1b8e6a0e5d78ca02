//! `trainer evaluate` with served models and an LLM judge: the bundled model's
//! weights here, the same model behind `trainer serve` (as a ModelDeployment) and a
//! hosted endpoint with a key, judged by a fake OpenAI-compatible judge on loopback
//! (scores, both orders of each pairwise comparison, replies it garbles counted as
//! unscored); and what it refuses, each time naming the field and exiting before any
//! model is loaded.

use std::path::Path;
use std::process::Command;

use std::sync::atomic::Ordering;

use serde_json::Value;

use crate::support::fake_openai::{API_KEY, FakeOpenAi, STYLED_ANSWER};
use crate::support::serve::Server;

fn evaluate(dir: &Path, spec: &str) -> (Option<i32>, String) {
    let manifest = dir.join("eval.yaml");
    let tiny = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/models/anneal-tiny");
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: anneal.dev/v1alpha1\nkind: ModelEvaluation\nmetadata: {{name: e}}\nspec:\n  models:\n    - {{name: base, baseModel: {{name: anneal-tiny, source: \"file://{}\"}}}}\n{spec}",
            tiny.display()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("held-out.jsonl"),
        "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi?\"}, {\"role\": \"assistant\", \"content\": \"Hello.\"}]}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("prompts-only.jsonl"),
        "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi?\"}]}\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .arg("evaluate")
        .arg(&manifest)
        .arg("--runs")
        .arg(dir.join("runs"))
        .arg("--output")
        .arg(dir.join("out"))
        .args(["--device", "cpu"])
        .arg("--job-run")
        .arg(format!(
            "named-run=file://{}/runs/team/named-run/uid-1",
            dir.display()
        ))
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn what_cannot_be_evaluated_is_refused_by_field_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = "  dataset: {uri: file://held-out.jsonl}\n";
    let cases = [
        (
            format!(
                "    - {{name: hosted, endpoint: {{url: \"https://api.example.com/v1\", model: m, credentialsSecret: absent}}}}\n{dataset}  metrics: [{{chrf: {{}}}}]\n"
            ),
            "trainer evaluate: spec.models[1].endpoint.credentialsSecret: reading the key of Secret absent at ",
        ),
        (
            format!(
                "    - {{name: hosted, endpoint: {{url: \"https://api.example.com/v1\", model: m}}}}\n{dataset}  metrics: [{{referenceLoss: {{}}}}]\n"
            ),
            "trainer evaluate: spec.metrics[0].referenceLoss: model hosted is served: its loss on the references needs its weights here",
        ),
        (
            format!(
                "{dataset}  metrics: [{{judge: {{model: {{evaluatedModel: tuned}}, rubric: Good?}}}}]\n"
            ),
            "eval.yaml: spec.metrics[0].judge.model.evaluatedModel: \"tuned\" is not the name of one of the models",
        ),
        (
            "  dataset: {uri: file://prompts-only.jsonl}\n  metrics: [{regex: {pattern: x}}, {rougeL: {}}]\n".to_owned(),
            "trainer evaluate: spec.metrics[1]: rougeL compares each answer with a reference answer, and dataset line 1 has none",
        ),
        (
            format!(
                "    - {{name: tuned, fineTuneJob: {{name: never-trained}}}}\n{dataset}  metrics: [{{chrf: {{}}}}]\n"
            ),
            "no run of FineTuneJob never-trained under file://",
        ),
        (
            "  dataset: {uri: file://missing.jsonl}\n  metrics: [{chrf: {}}]\n".to_owned(),
            "spec.dataset.uri",
        ),
        (
            // The run the operator names (--job-run), which has no final checkpoint.
            format!(
                "    - {{name: tuned, fineTuneJob: {{name: named-run}}}}\n{dataset}  metrics: [{{chrf: {{}}}}]\n"
            ),
            "spec.models[1].fineTuneJob: file://",
        ),
    ];
    for (spec, expected) in cases {
        let (code, stderr) = evaluate(dir.path(), &spec);
        if spec.contains("named-run") {
            assert!(
                stderr.contains("/runs/team/named-run/uid-1 has no job.yaml"),
                "{stderr}"
            );
        }
        assert_eq!(code, Some(2), "{spec}\n{stderr}");
        assert!(
            stderr.contains(expected),
            "{spec}\nexpected {expected:?} in {stderr:?}"
        );
    }
    assert!(!dir.path().join("out").exists(), "nothing was written");
}

/// A held-out set of four chats: two with references, one prompt-only, and one the
/// fake judge garbles its verdicts on.
const HELD_OUT: &str = concat!(
    r#"{"messages": [{"role": "user", "content": "Why is the sky blue?"}, {"role": "assistant", "content": "Good question! Sunlight scatters.\nIn short: scattering."}]}"#,
    "\n",
    r#"{"messages": [{"role": "user", "content": "Can I return a gift?"}, {"role": "assistant", "content": "Good question! Within 30 days.\nIn short: yes."}]}"#,
    "\n",
    r#"{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Is tea better than coffee?"}]}"#,
    "\n",
    r#"{"messages": [{"role": "user", "content": "garbage-please: what is 2+2?"}, {"role": "assistant", "content": "Good question! 4.\nIn short: 4."}]}"#,
    "\n",
);

fn judged_manifest(dir: &Path, fake: &FakeOpenAi) -> std::path::PathBuf {
    let tiny = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/models/anneal-tiny");
    std::fs::write(dir.join("held-out.jsonl"), HELD_OUT).unwrap();
    let manifest = dir.join("eval.yaml");
    std::fs::write(
        &manifest,
        format!(
            r#"apiVersion: anneal.dev/v1alpha1
kind: ModelEvaluation
metadata: {{name: judged, namespace: team-a}}
spec:
  models:
    - {{name: base, baseModel: {{name: anneal-tiny, source: "file://{tiny}"}}}}
    - {{name: served, modelDeployment: {{name: tiny-served}}}}
    - {{name: hosted, endpoint: {{url: "{url}", model: styled, credentialsSecret: hosted-key}}}}
  dataset: {{uri: file://held-out.jsonl}}
  metrics:
    - judge:
        model: {{endpoint: {{url: "{url}", model: fake-judge, credentialsSecret: hosted-key}}}}
        rubric: Does it answer in the house style?
        scale: 10
    - regex: {{pattern: "^Good question!"}}
  generation: {{temperature: 0, maxTokens: 24, seed: 7}}
"#,
            tiny = tiny.display(),
            url = fake.url,
        ),
    )
    .unwrap();
    manifest
}

fn run_evaluate(
    dir: &Path,
    manifest: &Path,
    served: &Server,
    secrets: &Path,
    extra: &[&str],
) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_trainer"))
        .arg("evaluate")
        .arg(manifest)
        .args(extra)
        .arg("--output")
        .arg(dir.join("out"))
        .args(["--device", "cpu"])
        .arg("--secrets-dir")
        .arg(secrets)
        .arg("--deployment")
        .arg(format!("tiny-served={}", served.base_url()))
        .output()
        .unwrap()
}

/// Secret `hosted-key` as a pod mounts it.
fn key_folder(dir: &Path) -> std::path::PathBuf {
    let secrets = dir.join("secrets");
    std::fs::create_dir_all(secrets.join("hosted-key")).unwrap();
    std::fs::write(secrets.join("hosted-key/apiKey"), format!("{API_KEY}\n")).unwrap();
    secrets
}

/// The one run folder of the evaluation `judged`.
fn only_run(dir: &Path) -> std::path::PathBuf {
    let runs: Vec<_> = std::fs::read_dir(dir.join("out/team-a/judged"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 1);
    runs[0].clone()
}

fn only_report(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(only_run(dir).join("report.json")).unwrap())
        .unwrap()
}

#[test]
fn served_models_are_judged_in_both_orders_and_garbled_verdicts_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeOpenAi::start();
    let served = Server::start(&[]);
    let secrets = key_folder(dir.path());
    let manifest = judged_manifest(dir.path(), &fake);

    let output = run_evaluate(dir.path(), &manifest, &served, &secrets, &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    let report = only_report(dir.path());
    check_answers(&report);
    check_judge_scores(&report);
    check_run_files(&only_run(dir.path()));
    check_both_orders(&report);
    check_requests(&fake);
    check_printed(&stdout, &stderr, &only_run(dir.path()));

    // A wrong key: the endpoint's refusal, with the model's name; no report, and the
    // answers already made are kept for the next try.
    std::fs::write(secrets.join("hosted-key/apiKey"), "sk-wrong").unwrap();
    std::fs::remove_dir_all(dir.path().join("out")).unwrap();
    let output = run_evaluate(dir.path(), &manifest, &served, &secrets, &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("trainer evaluate: model hosted: ") && stderr.contains("401"),
        "{stderr}"
    );
    let run = only_run(dir.path());
    assert!(!run.join("report.json").exists());
    assert!(run.join("answers/base.json").exists());
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The models in order; the same weights asked here and through trainer serve answer
/// alike (greedy); the hosted model in the house style; the prompt-only line.
fn check_answers(report: &Value) {
    let names: Vec<&str> = report["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["model"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["base", "served", "hosted"]);
    for sample in report["samples"].as_array().unwrap() {
        let answers = sample["answers"].as_array().unwrap();
        assert_eq!(answers[0]["answer"], answers[1]["answer"], "{sample}");
        assert_eq!(answers[2]["answer"], STYLED_ANSWER);
    }
    assert_eq!(
        report["samples"][2]["reference"],
        Value::Null,
        "prompt-only line"
    );
}

/// The judge: 9 for the house style, 2 without; the garbled sample unscored; the
/// pairwise rates against the baseline; the regex metric beside it.
fn check_judge_scores(report: &Value) {
    let models = &report["models"];
    let judge = |m: usize| &models[m]["scores"][0];
    assert_eq!(judge(0)["metric"], "judge 1-10");
    assert_eq!(judge(0)["score"]["mean"], 2.0);
    assert_eq!(judge(2)["score"]["mean"], 9.0);
    for m in 0..3 {
        assert_eq!(judge(m)["unscored"], 1, "{}", judge(m));
    }
    // Pairwise against the baseline: the hosted model wins every readable pair; the
    // served model's answers are the baseline's, so every pair is a tie.
    assert_eq!(judge(2)["pairwise"]["wins"], 1.0);
    assert_eq!(judge(2)["pairwise"]["unscored"], 1);
    assert_eq!(judge(1)["pairwise"]["ties"], 1.0);
    assert!(
        judge(0).get("pairwise").is_none(),
        "the baseline is not compared with itself"
    );
    assert_eq!(report["best"], "hosted");
    assert_eq!(models[2]["scores"][1]["score"]["mean"], 1.0);
    assert_eq!(models[0]["scores"][1]["score"]["mean"], 0.0);
}

/// The status the operator copies (scores per model and the pairwise rates), and the
/// progress file.
fn check_run_files(run: &Path) {
    let status = read_json(&run.join("status.json"));
    assert_eq!(status["best"]["model"], "hosted");
    assert_eq!(status["results"][2]["metrics"][0]["score"], 9.0);
    assert_eq!(status["results"][2]["metrics"][0]["unscored"], 1);
    assert_eq!(status["results"][2]["judgePairwise"]["wins"], 1.0);
    // Every reply counted: 3 models x 4 answers, 12 scores and 16 comparisons.
    let progress = read_json(&run.join("progress.json"));
    assert_eq!(progress, serde_json::json!({"answered": 40, "total": 40}));
}

/// Each pair was asked in both orders: the hosted answer as A, then as B.
fn check_both_orders(report: &Value) {
    let hosted = &report["samples"][0]["answers"][2]["judge"][0];
    let replies = &hosted["pairwise"]["replies"];
    assert!(
        replies[0].as_str().unwrap().ends_with("Winner: A"),
        "{hosted}"
    );
    assert!(
        replies[1].as_str().unwrap().ends_with("Winner: B"),
        "{hosted}"
    );
    assert_eq!(hosted["pairwise"]["outcome"], "win");
    assert_eq!(report["samples"][3]["answers"][2]["scores"][0], Value::Null);
}

/// What the servers were asked: 4 answers from the hosted model with the manifest's
/// generation settings; 3 x 4 scores and 2 x 2 x 4 comparisons from the judge, greedy.
fn check_requests(fake: &FakeOpenAi) {
    let requests = fake.requests.lock().unwrap();
    let (hosted, judged): (Vec<&Value>, Vec<&Value>) =
        requests.iter().partition(|r| r["model"] == "styled");
    assert_eq!(hosted.len(), 4);
    assert_eq!(
        (
            hosted[0]["temperature"].as_f64(),
            hosted[0]["max_tokens"].as_u64(),
            hosted[0]["seed"].as_u64()
        ),
        (Some(0.0), Some(24), Some(7))
    );
    assert_eq!(judged.len(), 12 + 16);
    assert!(
        judged
            .iter()
            .all(|r| r["temperature"] == 0.0 && r["max_tokens"] == 512)
    );
}

/// The table and log lines, and the judge's replies on the page.
fn check_printed(stdout: &str, stderr: &str, run: &Path) {
    assert!(
        stdout.contains("win/tie/loss 1.00/0.00/0.00 (1 unscored)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("best:    hosted (by judge 1-10)"),
        "{stdout}"
    );
    assert!(
        stderr.contains("judge (judge-0): 1 of 4 replies about hosted had no score line"),
        "{stderr}"
    );
    let page = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(
        page.contains("judge 1-10: the judge's reasons"),
        "the judge's replies are on the page"
    );
    assert!(page.contains("Judged by the house style.\nScore: 9"));
}

#[test]
fn an_interrupted_evaluation_continues_from_the_answers_it_kept() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeOpenAi::start();
    let served = Server::start(&[]);
    let secrets = key_folder(dir.path());
    let manifest = judged_manifest(dir.path(), &fake);
    let resume = ["--run-id", "r1"];

    // The hosted model answers twice, then its server is down for good: the try
    // fails with exit 1 (a retry may pass) after its retries, keeping what came.
    fake.answer_at_most.store(2, Ordering::SeqCst);
    let output = run_evaluate(dir.path(), &manifest, &served, &secrets, &resume);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("to continue after an interruption: --run-id r1"),
        "{stderr}"
    );
    assert!(stderr.contains("503"), "{stderr}");
    let run = dir.path().join("out/team-a/judged/r1");
    let kept = |file: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(run.join(file)).unwrap()).unwrap()
    };
    assert_eq!(
        kept("answers/base.json")["replies"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    assert_eq!(
        kept("answers/hosted.json")["replies"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert!(!run.join("report.json").exists());

    // The server is back: the next try asks the hosted model the two it lacks, the
    // judge everything, and the models with kept answers nothing.
    fake.answer_at_most.store(usize::MAX, Ordering::SeqCst);
    let before = fake.requests.lock().unwrap().len();
    let served_before = served.metric("anneal_serve_requests_total");
    let output = run_evaluate(dir.path(), &manifest, &served, &secrets, &resume);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("base: 4 of 4 replies kept from an earlier try"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hosted: 2 of 4 replies kept from an earlier try"),
        "{stderr}"
    );
    let requests = fake.requests.lock().unwrap();
    let asked_again: Vec<&Value> = requests[before..].iter().collect();
    assert_eq!(
        asked_again
            .iter()
            .filter(|r| r["model"] == "styled")
            .count(),
        2
    );
    assert_eq!(asked_again.len(), 2 + 12 + 16);
    drop(requests);
    assert_eq!(
        served.metric("anneal_serve_requests_total"),
        served_before,
        "the served model was not asked again"
    );
    let report = only_report(dir.path());
    assert_eq!(report["models"][2]["scores"][0]["score"]["mean"], 9.0);
    for sample in report["samples"].as_array().unwrap() {
        assert_eq!(sample["answers"][2]["answer"], STYLED_ANSWER);
    }

    // A third try finds everything kept, the judge's verdicts too: nothing is asked.
    std::fs::remove_file(run.join("report.json")).unwrap();
    let before = fake.requests.lock().unwrap().len();
    let output = run_evaluate(dir.path(), &manifest, &served, &secrets, &resume);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(fake.requests.lock().unwrap().len(), before);
    assert!(run.join("report.json").exists());
}
