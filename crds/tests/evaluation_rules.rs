//! ModelEvaluation manifests judged the way an apiserver would (the generated
//! openAPIV3Schema with strict field validation, then the CEL rules) and the way
//! `trainer evaluate` and the operator do (`manifest::parse_modelevaluation`). Every
//! row asserts the exact errors of both.

mod support;

use anneal_crds::manifest::parse_modelevaluation;
use anneal_crds::modelevaluation::ModelEvaluation;
use serde_json::{Value, json};
use support::{ApiServerRules, merge_patch};

/// The base model, its fine-tuned adapter and a hosted model, scored by two metrics
/// and a judge.
fn base_evaluation() -> Value {
    json!({
        "apiVersion": "anneal.dev/v1alpha1",
        "kind": "ModelEvaluation",
        "metadata": {"name": "house-style", "namespace": "team-a"},
        "spec": {
            "models": [
                {"name": "base", "baseModel": {"name": "Qwen/Qwen2.5-7B-Instruct"}},
                {"name": "tuned", "fineTuneJob": {"name": "support-bot", "checkpoint": "best"}},
                {"name": "hosted", "endpoint": {"url": "https://api.example.com/v1", "model": "big-model", "credentialsSecret": "hosted-key"}},
            ],
            "dataset": {"uri": "s3://data/held-out.jsonl", "maxSamples": 200},
            "metrics": [
                {"rougeL": {}},
                {"regex": {"pattern": "(?m)^In short: "}},
                {"judge": {"model": {"evaluatedModel": "hosted"}, "rubric": "Is the answer correct and in the house style?", "scale": 10}},
            ],
            "baseline": "base",
            "generation": {"temperature": 0.0, "maxTokens": 256},
        }
    })
}

fn local_errors(yaml: &str) -> Vec<String> {
    match parse_modelevaluation(yaml) {
        Ok(_) => vec![],
        Err(err) => err.to_string().lines().map(str::to_owned).collect(),
    }
}

/// (what is wrong, merge patch onto the base, apiserver errors, local errors)
type Case = (
    &'static str,
    Value,
    &'static [&'static str],
    &'static [&'static str],
);

fn cases() -> Vec<Case> {
    vec![
        (
            "a model with two sources",
            json!({"spec": {"models": [{"name": "base", "baseModel": {"name": "Qwen/Qwen2.5-7B-Instruct"}, "endpoint": {"url": "https://x.example/v1", "model": "m"}}, {"name": "hosted", "endpoint": {"url": "https://api.example.com/v1", "model": "big-model"}}]}}),
            &[
                "spec.models[0]: set exactly one of fineTuneJob, baseModel, modelDeployment and endpoint",
            ],
            &[
                "spec.models[0]: set exactly one of fineTuneJob, baseModel, modelDeployment and endpoint",
            ],
        ),
        (
            "a model with none",
            json!({"spec": {"models": [{"name": "base"}, {"name": "hosted", "endpoint": {"url": "https://api.example.com/v1", "model": "big-model"}}]}}),
            &[
                "spec.models[0]: set exactly one of fineTuneJob, baseModel, modelDeployment and endpoint",
            ],
            &[
                "spec.models[0]: set exactly one of fineTuneJob, baseModel, modelDeployment and endpoint",
            ],
        ),
        (
            "two models of one name",
            json!({"spec": {"models": [
                {"name": "base", "baseModel": {"name": "Qwen/Qwen2.5-7B-Instruct"}},
                {"name": "base", "fineTuneJob": {"name": "support-bot"}},
                {"name": "hosted", "endpoint": {"url": "https://api.example.com/v1", "model": "big-model"}},
            ]}}),
            &["spec.models: models[].name: each model needs a name of its own"],
            &[
                "spec.models[1].name: \"base\" names an earlier model too; each model needs a name of its own",
            ],
        ),
        (
            "a baseline that is no model",
            json!({"spec": {"baseline": "nobody"}}),
            &["spec.baseline: baseline must be the name of one of the models"],
            &["spec.baseline: \"nobody\" is not the name of one of the models"],
        ),
        (
            "a baseline that is every checkpoint",
            json!({"spec": {"models": [
                {"name": "base", "fineTuneJob": {"name": "support-bot", "checkpoint": "all"}},
                {"name": "hosted", "endpoint": {"url": "https://api.example.com/v1", "model": "big-model"}},
            ]}}),
            &[
                "spec.baseline: baseline must be one model, not every checkpoint of a job (checkpoint: all)",
            ],
            &[
                "spec.baseline: \"base\" is every checkpoint of a job (checkpoint: all); the baseline must be one model",
            ],
        ),
        (
            "a dataset with both a URI and a ConfigMap",
            json!({"spec": {"dataset": {"configMap": {"name": "held-out", "key": "chats.jsonl"}}}}),
            &["spec.dataset: set exactly one of dataset.uri and dataset.configMap"],
            &["spec.dataset: set exactly one of dataset.uri and dataset.configMap"],
        ),
        (
            "a metric of two kinds",
            json!({"spec": {"metrics": [{"rougeL": {}, "chrf": {}}]}}),
            &[
                "spec.metrics[0]: set exactly one of exactMatch, contains, regex, rougeL, chrf, referenceLoss and judge",
            ],
            &[
                "spec.metrics[0]: set exactly one of exactMatch, contains, regex, rougeL, chrf, referenceLoss and judge",
            ],
        ),
        (
            "no metrics",
            json!({"spec": {"metrics": []}}),
            &["/spec/metrics: [] has less than 1 item"],
            &["spec.metrics: must list 1 to 16 metrics, got 0"],
        ),
        (
            "a regular expression that does not compile",
            json!({"spec": {"metrics": [{"regex": {"pattern": "(unclosed"}}]}}),
            &[],
            &["spec.metrics[0].regex.pattern: is not a regular expression: unclosed group"],
        ),
        (
            "a judge that names no model",
            json!({"spec": {"metrics": [{"judge": {"model": {"evaluatedModel": "oracle"}, "rubric": "Good?"}}]}}),
            &[
                "spec.metrics: a judge's evaluatedModel must be the name of one of the models, and one model (not checkpoint: all)",
            ],
            &[
                "spec.metrics[0].judge.model.evaluatedModel: \"oracle\" is not the name of one of the models",
            ],
        ),
        (
            "a judge scale of 1",
            json!({"spec": {"metrics": [{"judge": {"model": {"evaluatedModel": "hosted"}, "rubric": "Good?", "scale": 1}}]}}),
            &["/spec/metrics/0/judge/scale: 1 is less than the minimum of 2.0"],
            &["spec.metrics[0].judge.scale: must be between 2 and 100, got 1"],
        ),
        (
            "an endpoint that is not a web URL",
            json!({"spec": {"models": [{"name": "base", "baseModel": {"name": "Qwen/Qwen2.5-7B-Instruct"}}, {"name": "hosted", "endpoint": {"url": "ftp://x/v1", "model": "m"}}]}}),
            &["/spec/models/1/endpoint/url: \"ftp://x/v1\" does not match \"^https?://[^\\s]+$\""],
            &[
                "spec.models[1].endpoint.url: must be an http:// or https:// URL, got \"ftp://x/v1\"",
            ],
        ),
        (
            "a temperature of 3",
            json!({"spec": {"generation": {"temperature": 3.0}}}),
            &["/spec/generation/temperature: 3.0 is greater than the maximum of 2.0"],
            &["spec.generation.temperature: must be between 0 and 2, got 3"],
        ),
        (
            "a model name with a slash",
            json!({"spec": {"models": [{"name": "a/b", "baseModel": {"name": "Qwen/Qwen2.5-7B-Instruct"}}, {"name": "hosted", "endpoint": {"url": "https://api.example.com/v1", "model": "big-model"}}], "baseline": "hosted"}}),
            &["/spec/models/0/name: \"a/b\" does not match \"^[A-Za-z0-9][A-Za-z0-9._-]*$\""],
            &[
                "spec.models[0].name: \"a/b\": letters, digits, '.', '_' and '-', starting with a letter or digit",
            ],
        ),
    ]
}

#[test]
fn the_base_evaluation_passes_everywhere_and_parses_with_its_defaults() {
    let rules = ApiServerRules::for_crd::<ModelEvaluation>();
    assert_eq!(rules.create(&base_evaluation()), Vec::<String>::new());
    let yaml = serde_yaml_ng::to_string(&base_evaluation()).unwrap();
    let parsed = parse_modelevaluation(&yaml).unwrap();
    assert_eq!(parsed.spec.models.len(), 3);
    assert_eq!(parsed.spec.generation.seed, 42);
    let names: Vec<&str> = parsed.spec.metrics.iter().map(|m| m.name()).collect();
    assert_eq!(names, ["rougeL", "regex", "judge"]);
    let judge = parsed.spec.metrics[2].judge.as_ref().unwrap();
    assert!(judge.pairwise);
    // A checkpoint defaults to final.
    let minimal = merge_patch(
        base_evaluation(),
        json!({"spec": {"models": [{"name": "tuned", "fineTuneJob": {"name": "support-bot"}}], "baseline": null, "metrics": [{"exactMatch": {}}]}}),
    );
    assert_eq!(rules.create(&minimal), Vec::<String>::new());
    let parsed = parse_modelevaluation(&serde_yaml_ng::to_string(&minimal).unwrap()).unwrap();
    assert_eq!(
        parsed.spec.models[0]
            .fine_tune_job
            .as_ref()
            .unwrap()
            .checkpoint,
        "final"
    );
}

#[test]
fn bad_evaluations_are_refused_with_the_same_words_by_the_apiserver_and_locally() {
    let rules = ApiServerRules::for_crd::<ModelEvaluation>();
    let mut failures = Vec::new();
    for (what, patch, want_apiserver, want_local) in cases() {
        let manifest = merge_patch(base_evaluation(), patch);
        let got_apiserver = rules.create(&manifest);
        let got_local = local_errors(&serde_yaml_ng::to_string(&manifest).unwrap());
        if got_apiserver != want_apiserver || got_local != want_local {
            failures.push(format!(
                "{what}:\n  apiserver want {want_apiserver:?}\n            got  {got_apiserver:?}\n  local     want {want_local:?}\n            got  {got_local:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}
