//! `trainer evaluate` refusing what it cannot do, each time naming the field and
//! exiting 2 before any model is loaded: a metric this version does not compute, a
//! served model, a FineTuneJob that has no run, a dataset line that is not a chat.

use std::path::Path;
use std::process::Command;

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
    let output = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .arg("evaluate")
        .arg(&manifest)
        .arg("--runs")
        .arg(dir.join("runs"))
        .arg("--output")
        .arg(dir.join("out"))
        .args(["--device", "cpu"])
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
                "{dataset}  metrics: [{{rougeL: {{}}}}, {{judge: {{model: {{evaluatedModel: base}}, rubric: Good?}}}}]\n"
            ),
            "trainer evaluate: spec.metrics[1].judge: not computed by this version of trainer evaluate yet; exactMatch, contains, regex, rougeL, chrf and referenceLoss are\n",
        ),
        (
            format!(
                "    - {{name: hosted, endpoint: {{url: \"https://api.example.com/v1\", model: m}}}}\n{dataset}  metrics: [{{chrf: {{}}}}]\n"
            ),
            "trainer evaluate: spec.models[1].endpoint: this version of trainer evaluate does not ask served models yet; evaluate models whose weights this machine can load\n",
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
    ];
    for (spec, expected) in cases {
        let (code, stderr) = evaluate(dir.path(), &spec);
        assert_eq!(code, Some(2), "{spec}\n{stderr}");
        assert!(
            stderr.contains(expected),
            "{spec}\nexpected {expected:?} in {stderr:?}"
        );
    }
    assert!(!dir.path().join("out").exists(), "nothing was written");
}
