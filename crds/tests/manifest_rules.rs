//! Bad manifests, judged the way an apiserver would (the generated openAPIV3Schema
//! with strict field validation, then the CEL rules) and the way local mode does
//! (`manifest::parse_*`). Every row asserts the exact errors of both.

mod support;

use anneal_crds::limits::{
    ADAPTER_URI_PATTERN, PUBLISH_URI_PATTERN, SOURCE_URI_PATTERN, STORAGE_URI_PATTERN,
};
use anneal_crds::manifest::{parse_finetunejob, parse_modeldeployment};
use anneal_crds::{FineTuneJob, ModelDeployment};
use serde_json::{Value, json};
use support::{ApiServerRules, merge_patch};

fn base_job() -> Value {
    json!({
        "apiVersion": "anneal.dev/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": "support-bot", "namespace": "team-a"},
        "spec": {
            "baseModel": {"name": "Qwen/Qwen2.5-7B-Instruct", "source": "s3://models/qwen2.5-7b-instruct"},
            "dataset": {"train": "s3://data/support.jsonl"},
            "hyperparameters": {"preset": "standard", "lora": {"rank": 16}},
            "checkpoints": {"samplePrompts": [{"messages": [{"role": "user", "content": "Hi"}]}]},
        }
    })
}

fn base_deployment() -> Value {
    json!({
        "apiVersion": "anneal.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "support-bot", "namespace": "team-a"},
        "spec": {"model": {"fineTuneJob": {"name": "support-bot"}}},
    })
}

/// (what is wrong, merge patch onto the base, apiserver errors, local-mode errors)
type Case = (
    &'static str,
    Value,
    &'static [&'static str],
    &'static [&'static str],
);

/// Every FineTuneJob case, each group a function of its own.
fn job_cases() -> Vec<Case> {
    [
        checkpoint_and_deadline_cases(),
        hyperparameter_cases(),
        source_cases(),
        dataset_and_publishing_cases(),
        field_and_method_cases(),
        batch_name_and_resource_cases(),
    ]
    .concat()
}

/// Early stopping, checkpoint evaluation and the deadline.
fn checkpoint_and_deadline_cases() -> Vec<Case> {
    vec![
        (
            "early stopping with patience 0",
            json!({"spec": {"checkpoints": {"earlyStopping": {"patience": 0}}}}),
            &["/spec/checkpoints/earlyStopping/patience: 0 is less than the minimum of 1.0"],
            &["spec.checkpoints.earlyStopping.patience: must be between 1 and 100, got 0"],
        ),
        (
            "early stopping without validation data",
            json!({"spec": {"dataset": {"validationSplit": 0.0}, "checkpoints": {"earlyStopping": {"patience": 2}}}}),
            // A rule across spec.dataset and spec.checkpoints: the operator's Validating
            // phase and its admission webhook apply it, as local mode does.
            &[],
            &[
                "spec.checkpoints.earlyStopping: needs something to judge by: set spec.dataset.validation, a validationSplit above 0, or spec.checkpoints.evaluation",
            ],
        ),
        (
            "a judge at every checkpoint",
            json!({"spec": {"checkpoints": {"evaluation": {
                "dataset": {"uri": "s3://data/held-out.jsonl"},
                "metrics": [{"rougeL": {}}, {"judge": {"model": {"endpoint": {"url": "https://api.example.com/v1", "model": "judge"}}, "rubric": "Good?"}}],
            }}}}),
            &[
                "spec.checkpoints.evaluation.metrics: a judge scores in a ModelEvaluation (fineTuneJob checkpoint: all), not at every checkpoint",
            ],
            &[
                "spec.checkpoints.evaluation.metrics[1].judge: a judge scores in a ModelEvaluation (fineTuneJob checkpoint: all), not at every checkpoint",
            ],
        ),
        (
            "a checkpoint evaluation without metrics or a dataset",
            json!({"spec": {"checkpoints": {"evaluation": {"dataset": {"maxSamples": 0}, "metrics": []}}}}),
            &[
                "/spec/checkpoints/evaluation/dataset/maxSamples: 0 is less than the minimum of 1.0",
                "/spec/checkpoints/evaluation/metrics: [] has less than 1 item",
            ],
            &[
                "spec.checkpoints.evaluation.dataset: set exactly one of dataset.uri and dataset.configMap",
                "spec.checkpoints.evaluation.dataset.maxSamples: must be between 1 and 4294967295, got 0",
                "spec.checkpoints.evaluation.metrics: must list 1 to 16 metrics, got 0",
            ],
        ),
        (
            "a checkpoint evaluation's regular expression that does not compile",
            json!({"spec": {"checkpoints": {"evaluation": {"dataset": {"uri": "s3://data/held-out.jsonl"}, "metrics": [{"regex": {"pattern": "(unclosed"}}]}}}}),
            &[],
            &[
                "spec.checkpoints.evaluation.metrics[0].regex.pattern: is not a regular expression: unclosed group",
            ],
        ),
        (
            "a deadline shorter than a minute",
            json!({"spec": {"activeDeadlineSeconds": 30}}),
            &["/spec/activeDeadlineSeconds: 30 is less than the minimum of 60.0"],
            &["spec.activeDeadlineSeconds: must be between 60 and 31536000, got 30"],
        ),
    ]
}

/// Hyperparameters, methods, presets and targets.
fn hyperparameter_cases() -> Vec<Case> {
    vec![
        (
            "learning rate above 0.1",
            json!({"spec": {"hyperparameters": {"learningRate": 0.5}}}),
            &["/spec/hyperparameters/learningRate: 0.5 is greater than the maximum of 0.1"],
            &["spec.hyperparameters.learningRate: must be greater than 0 and at most 0.1, got 0.5"],
        ),
        (
            "learning rate of zero",
            json!({"spec": {"hyperparameters": {"learningRate": 0.0}}}),
            &[
                "/spec/hyperparameters/learningRate: 0.0 is less than or equal to the minimum of 0.0",
            ],
            &["spec.hyperparameters.learningRate: must be greater than 0 and at most 0.1, got 0"],
        ),
        (
            "zero epochs",
            json!({"spec": {"hyperparameters": {"epochs": 0}}}),
            &["/spec/hyperparameters/epochs: 0 is less than the minimum of 1.0"],
            &["spec.hyperparameters.epochs: must be between 1 and 10, got 0"],
        ),
        (
            "eleven epochs",
            json!({"spec": {"hyperparameters": {"epochs": 11}}}),
            &["/spec/hyperparameters/epochs: 11 is greater than the maximum of 10.0"],
            &["spec.hyperparameters.epochs: must be between 1 and 10, got 11"],
        ),
        (
            "batch size 64",
            json!({"spec": {"hyperparameters": {"batchSize": 64}}}),
            &["/spec/hyperparameters/batchSize: 64 is greater than the maximum of 32.0"],
            &["spec.hyperparameters.batchSize: must be between 1 and 32, got 64"],
        ),
        (
            "max tokens 0",
            json!({"spec": {"hyperparameters": {"maxTokens": 0}}}),
            &["/spec/hyperparameters/maxTokens: 0 is less than the minimum of 1.0"],
            &["spec.hyperparameters.maxTokens: must be between 1 and 131072, got 0"],
        ),
        (
            "max tokens past 131072",
            json!({"spec": {"hyperparameters": {"maxTokens": 200000}}}),
            &["/spec/hyperparameters/maxTokens: 200000 is greater than the maximum of 131072.0"],
            &["spec.hyperparameters.maxTokens: must be between 1 and 131072, got 200000"],
        ),
        (
            "lora rank 128",
            json!({"spec": {"hyperparameters": {"lora": {"rank": 128}}}}),
            &["/spec/hyperparameters/lora/rank: 128 is greater than the maximum of 64.0"],
            &["spec.hyperparameters.lora.rank: must be between 1 and 64, got 128"],
        ),
        (
            "lora alpha 0",
            json!({"spec": {"hyperparameters": {"lora": {"alpha": 0}}}}),
            &["/spec/hyperparameters/lora/alpha: 0 is less than the minimum of 1.0"],
            &["spec.hyperparameters.lora.alpha: must be between 1 and 128, got 0"],
        ),
        (
            "lora dropout 1.5",
            json!({"spec": {"hyperparameters": {"lora": {"dropout": 1.5}}}}),
            &["/spec/hyperparameters/lora/dropout: 1.5 is greater than the maximum of 1.0"],
            &["spec.hyperparameters.lora.dropout: must be between 0 and 1, got 1.5"],
        ),
        (
            "validation split 0.9",
            json!({"spec": {"dataset": {"validationSplit": 0.9}}}),
            &["/spec/dataset/validationSplit: 0.9 is greater than the maximum of 0.5"],
            &["spec.dataset.validationSplit: must be between 0 and 0.5, got 0.9"],
        ),
        (
            "unknown method",
            json!({"spec": {"method": "ppo"}}),
            &[r#"/spec/method: "ppo" is not one of "sft" or "dpo""#],
            &["spec.method: unknown variant `ppo`, expected `sft` or `dpo`"],
        ),
        (
            "unknown training",
            json!({"spec": {"training": "qlora"}}),
            &[r#"/spec/training: "qlora" is not one of "lora" or "full""#],
            &["spec.training: unknown variant `qlora`, expected `lora` or `full`"],
        ),
        (
            "unknown preset",
            json!({"spec": {"hyperparameters": {"preset": "turbo"}}}),
            &[
                r#"/spec/hyperparameters/preset: "turbo" is not one of "standard", "quality" or "fast""#,
            ],
            &[
                "spec.hyperparameters.preset: unknown variant `turbo`, expected one of `standard`, `quality`, `fast`",
            ],
        ),
        (
            "unknown target module",
            json!({"spec": {"hyperparameters": {"lora": {"targetModules": ["lm_head"]}}}}),
            &[
                r#"/spec/hyperparameters/lora/targetModules/0: "lm_head" is not one of "q_proj", "k_proj" or 5 other candidates"#,
            ],
            &[
                "spec.hyperparameters.lora.targetModules[0]: unknown variant `lm_head`, expected one of `q_proj`, `k_proj`, `v_proj`, `o_proj`, `gate_proj`, `up_proj`, `down_proj`",
            ],
        ),
    ]
}

/// Model sources and starting points.
fn source_cases() -> Vec<Case> {
    vec![
        (
            "unsupported source scheme",
            json!({"spec": {"baseModel": {"source": "ftp://models/qwen"}}}),
            &[
                r#"/spec/baseModel/source: "ftp://models/qwen" does not match "{SOURCE_URI_PATTERN}""#,
            ],
            &[
                r#"spec.baseModel.source: must start with one of s3://, gs://, az://, pvc://, file://, hf://, modelscope://, got "ftp://models/qwen""#,
            ],
        ),
        (
            "a base model without a source whose name is no hub repository",
            json!({"spec": {"baseModel": {"name": "tiny-chat", "source": null}}}),
            &[
                "spec.baseModel.source: source is required unless name is a hub repository (ORG/NAME)",
            ],
            &[
                r#"spec.baseModel.source: required unless spec.baseModel.name is a hub repository (ORG/NAME, fetched from Hugging Face), got name "tiny-chat""#,
            ],
        ),
        (
            "a base model from a source and from another job",
            json!({"spec": {"baseModel": {"fineTuneJob": {"name": "sft"}}}}),
            &["spec.baseModel.fineTuneJob: set source or fineTuneJob, not both"],
            &["spec.baseModel.fineTuneJob: set source or fineTuneJob, not both"],
        ),
        (
            "starting from a checkpoint that is no checkpoint's name",
            json!({"spec": {"baseModel": {"source": null, "fineTuneJob": {"name": "sft", "checkpoint": "latest"}}}}),
            // The operator's Validating phase and its webhook apply it, as local mode does.
            &[],
            &[
                r#"spec.baseModel.fineTuneJob.checkpoint: must be final, best or a checkpoint's name (ckpt-N), got "latest""#,
            ],
        ),
    ]
}

/// Packing and mixing, tracking and notification, a job's own checkpoint and hub
/// revisions, publishing.
fn dataset_and_publishing_cases() -> Vec<Case> {
    vec![
        (
            "packing preference pairs",
            json!({"spec": {"method": "dpo", "dataset": {"packing": true}}}),
            &[],
            &[
                "spec.dataset.packing: packs chats for method: sft; a DPO pair's chosen and rejected replies are compared row by row, unpacked",
            ],
        ),
        (
            "a mixed dataset that adds nothing",
            json!({"spec": {"dataset": {"mix": [{"uri": "s3://data/general.jsonl", "weight": 0.0}]}}}),
            &["/spec/dataset/mix/0/weight: 0.0 is less than the minimum of 0.001"],
            &["spec.dataset.mix[0].weight: must be between 0.001 and 10, got 0"],
        ),
        (
            "a tracking server that is no web address",
            json!({"spec": {"tracking": {"mlflow": {"uri": "mlflow.mlops.svc:5000"}}}}),
            &[],
            &[
                r#"spec.tracking.mlflow.uri: must start with one of https://, http://, got "mlflow.mlops.svc:5000""#,
            ],
        ),
        (
            "a notification receiver that is no web address",
            json!({"spec": {"notify": [{"url": "ftp://hooks.example/x"}]}}),
            // The operator also posts only to hosts the install allows.
            &[],
            &[
                r#"spec.notify[0].url: must start with one of https://, http://, got "ftp://hooks.example/x""#,
            ],
        ),
        (
            "starting from its own checkpoint",
            json!({"spec": {"baseModel": {"source": null, "fineTuneJob": {"name": "support-bot"}}}}),
            &[],
            &["spec.baseModel.fineTuneJob.name: a job cannot start from its own checkpoint"],
        ),
        (
            "a hub source with a path in its revision",
            json!({"spec": {"baseModel": {"source": "hf://Qwen/Qwen2.5-7B-Instruct@refs/pr/1"}}}),
            &[
                r#"/spec/baseModel/source: "hf://Qwen/Qwen2.5-7B-Instruct@refs/pr/1" does not match "{SOURCE_URI_PATTERN}""#,
            ],
            &[
                r#"spec.baseModel.source: hf://: the revision after @ must be a branch, tag or commit (letters, digits, '.', '_', '-'), got "refs/pr/1""#,
            ],
        ),
        (
            "publishing to a bucket of another cloud",
            json!({"spec": {"publish": [{"to": "gs://models/bot"}]}}),
            &[r#"/spec/publish/0/to: "gs://models/bot" does not match "{PUBLISH_URI_PATTERN}""#],
            &[
                r#"spec.publish[0].to: must start with one of hf://, modelscope://, s3://, got "gs://models/bot""#,
            ],
        ),
        (
            "merging a fully trained job",
            json!({"spec": {"training": "full", "hyperparameters": {"lora": null}, "publish": [{"to": "hf://team/bot", "merge": true}]}}),
            &[],
            &[
                "spec.publish[0].merge: a fully trained job's checkpoints are whole models already; leave merge unset",
            ],
        ),
    ]
}

/// Misspelled and missing fields, DPO settings, training and validation files.
fn field_and_method_cases() -> Vec<Case> {
    vec![
        (
            "misspelled field",
            json!({"spec": {"hyperparameters": {"learningrate": 0.001}}}),
            &[
                "/spec/hyperparameters: Additional properties are not allowed ('learningrate' was unexpected)",
            ],
            &["spec.hyperparameters.learningrate: unknown field (check its spelling and nesting)"],
        ),
        (
            "missing base model",
            json!({"spec": {"baseModel": null}}),
            &[r#"/spec: "baseModel" is a required property"#],
            &["spec: missing field `baseModel`"],
        ),
        (
            "dpo settings on an sft job",
            json!({"spec": {"hyperparameters": {"dpo": {"beta": 0.2}}}}),
            &["spec.hyperparameters.dpo: hyperparameters.dpo is only allowed with method: dpo"],
            &["spec.hyperparameters.dpo: hyperparameters.dpo is only allowed with method: dpo"],
        ),
        (
            "dpo beta of zero",
            json!({"spec": {"method": "dpo", "hyperparameters": {"dpo": {"beta": 0.0}}}}),
            &["/spec/hyperparameters/dpo/beta: 0.0 is less than or equal to the minimum of 0.0"],
            &["spec.hyperparameters.dpo.beta: must be greater than 0 and at most 10, got 0"],
        ),
        (
            "dpo sftWeight over 10",
            json!({"spec": {"method": "dpo", "hyperparameters": {"dpo": {"sftWeight": 10.5}}}}),
            &["/spec/hyperparameters/dpo/sftWeight: 10.5 is greater than the maximum of 10.0"],
            &["spec.hyperparameters.dpo.sftWeight: must be between 0 and 10, got 10.5"],
        ),
        (
            "both train file and configMap",
            json!({"spec": {"dataset": {"configMap": {"name": "support-data"}}}}),
            &[
                "spec.dataset: set exactly one of dataset.train, dataset.configMap and dataset.images",
            ],
            &[
                "spec.dataset: set exactly one of dataset.train, dataset.configMap and dataset.images",
            ],
        ),
        (
            "neither train file nor configMap",
            json!({"spec": {"dataset": {"train": null}}}),
            &[
                "spec.dataset: set exactly one of dataset.train, dataset.configMap and dataset.images",
            ],
            &[
                "spec.dataset: set exactly one of dataset.train, dataset.configMap and dataset.images",
            ],
        ),
        (
            "validation file and split together",
            json!({"spec": {"dataset": {"validation": "s3://data/valid.jsonl", "validationSplit": 0.2}}}),
            &["spec.dataset: set at most one of dataset.validation and dataset.validationSplit"],
            &["spec.dataset: set at most one of dataset.validation and dataset.validationSplit"],
        ),
    ]
}

/// Batch arithmetic, names, sample prompts, storage URIs and resources.
fn batch_name_and_resource_cases() -> Vec<Case> {
    vec![
        (
            "accumulation not dividing the batch",
            json!({"spec": {"hyperparameters": {"batchSize": 8, "gradientAccumulation": 3}}}),
            &[
                "spec.hyperparameters.gradientAccumulation: hyperparameters.gradientAccumulation must divide the batch size (hyperparameters.batchSize, or the preset's)",
            ],
            &["spec.hyperparameters.gradientAccumulation: must divide the batch size (8), got 3"],
        ),
        (
            "accumulation not dividing the preset batch",
            json!({"spec": {"hyperparameters": {"preset": "quality", "gradientAccumulation": 3}}}),
            &[
                "spec.hyperparameters.gradientAccumulation: hyperparameters.gradientAccumulation must divide the batch size (hyperparameters.batchSize, or the preset's)",
            ],
            &["spec.hyperparameters.gradientAccumulation: must divide the batch size (16), got 3"],
        ),
        (
            "name too long for the children",
            json!({"metadata": {"name": "a-very-long-fine-tune-job-name-that-goes-on-and-on"}}),
            &[
                "metadata.name must be at most 48 characters, so that the names of the trainer Job and its Secret fit",
            ],
            &[
                "metadata.name: must be at most 48 characters, so that the names of the trainer Job and its Secret fit",
            ],
        ),
        (
            "sample prompt ending on assistant",
            json!({"spec": {"checkpoints": {"samplePrompts": [{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}]}}}),
            &[
                "spec.checkpoints.samplePrompts[0].messages: a sample prompt must end on a user message",
            ],
            &[
                "spec.checkpoints.samplePrompts[0].messages: a sample prompt must end on a user message",
            ],
        ),
        (
            "s3 uri without bucket",
            json!({"spec": {"dataset": {"train": "s3:///support.jsonl"}}}),
            &[
                r#"/spec/dataset/train: "s3:///support.jsonl" does not match "{SOURCE_URI_PATTERN}""#,
            ],
            &[r#"spec.dataset.train: s3:// needs a bucket name, got "s3:///support.jsonl""#],
        ),
        (
            "pvc uri with a bad claim name",
            json!({"spec": {"baseModel": {"source": "pvc://Models_1/qwen"}}}),
            &[
                r#"/spec/baseModel/source: "pvc://Models_1/qwen" does not match "{SOURCE_URI_PATTERN}""#,
            ],
            &[
                r#"spec.baseModel.source: pvc://CLAIM/path needs a PersistentVolumeClaim name (lowercase letters, digits and '-'), got "Models_1""#,
            ],
        ),
        (
            "too many gpus",
            json!({"spec": {"resources": {"gpus": 16}}}),
            &["/spec/resources/gpus: 16 is greater than the maximum of 8.0"],
            &["spec.resources.gpus: must be between 0 and 8, got 16"],
        ),
        (
            "a scratch size that is not one",
            json!({"spec": {"resources": {"scratch": "lots"}}}),
            &[],
            &[r#"spec.resources.scratch: "lots" is not a size (no number); write it like 300Gi"#],
        ),
    ]
}

fn deployment_cases() -> Vec<Case> {
    vec![
        (
            "both a job and a base model",
            json!({"spec": {"model": {"baseModel": {"name": "Qwen/Qwen2.5-7B-Instruct", "source": "s3://models/qwen"}}}}),
            &["spec.model: set exactly one of model.fineTuneJob and model.baseModel"],
            &["spec.model: set exactly one of model.fineTuneJob and model.baseModel"],
        ),
        (
            "a base model that starts from a job",
            json!({"spec": {"model": {"fineTuneJob": null, "baseModel": {"name": "Qwen/Qwen2.5-7B-Instruct", "fineTuneJob": {"name": "sft"}}}}}),
            &[],
            &[
                "spec.model.baseModel.fineTuneJob: only a FineTuneJob's baseModel starts from another job (here, name the job's checkpoint with model.fineTuneJob)",
            ],
        ),
        (
            "no model at all",
            json!({"spec": {"model": {"fineTuneJob": null}}}),
            &["spec.model: set exactly one of model.fineTuneJob and model.baseModel"],
            &["spec.model: set exactly one of model.fineTuneJob and model.baseModel"],
        ),
        (
            "adapters beside a job",
            json!({"spec": {"model": {"adapters": [{"name": "a", "uri": "s3://adapters/a"}]}}}),
            &[
                "spec.model.adapters: model.adapters go with model.baseModel; a fineTuneJob brings its own adapter",
            ],
            &[
                "spec.model.adapters: model.adapters go with model.baseModel; a fineTuneJob brings its own adapter",
            ],
        ),
        (
            "unknown runtime",
            json!({"spec": {"runtime": "tgi"}}),
            &[r#"/spec/runtime: "tgi" is not one of "builtin" or "vllm""#],
            &["spec.runtime: unknown variant `tgi`, expected `builtin` or `vllm`"],
        ),
        (
            "trainer serve on two GPUs, one of them idle",
            json!({"spec": {"runtime": "builtin", "resources": {"gpus": 2}}}),
            &[],
            &[
                "spec.resources.gpus: runtime builtin serves on one GPU, got 2: use runtime: vllm to shard a model across GPUs (--tensor-parallel-size), or gpus: 1",
            ],
        ),
        (
            "too many replicas",
            json!({"spec": {"replicas": 100}}),
            &["/spec/replicas: 100 is greater than the maximum of 64.0"],
            &["spec.replicas: must be between 0 and 64, got 100"],
        ),
        (
            "adapter over ftp",
            json!({"spec": {"model": {"fineTuneJob": null, "baseModel": {"name": "m", "source": "s3://models/m"}, "adapters": [{"name": "a", "uri": "ftp://org/a"}]}}}),
            &[
                r#"/spec/model/adapters/0/uri: "ftp://org/a" does not match "{ADAPTER_URI_PATTERN}""#,
            ],
            &[
                r#"spec.model.adapters[0].uri: must start with one of s3://, gs://, az://, pvc://, file://, hf://, modelscope://, got "ftp://org/a""#,
            ],
        ),
    ]
}

fn check_cases(
    cases: Vec<Case>,
    base: Value,
    rules: &ApiServerRules,
    local: impl Fn(&str) -> Vec<String>,
) {
    let mut failures = Vec::new();
    for (what, patch, want_apiserver, want_local) in cases {
        let manifest = merge_patch(base.clone(), patch);
        let got_apiserver = rules.create(&manifest);
        let want_apiserver: Vec<String> = want_apiserver.iter().map(|w| with_patterns(w)).collect();
        let yaml = serde_yaml_ng::to_string(&manifest).unwrap();
        let got_local = local(&yaml);
        if got_apiserver != want_apiserver || got_local != want_local {
            failures.push(format!(
                "{what}:\n  apiserver want {want_apiserver:?}\n            got  {got_apiserver:?}\n  local     want {want_local:?}\n            got  {got_local:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// Expected texts name the URI patterns rather than spell out their regular expressions.
fn with_patterns(text: &str) -> String {
    text.replace("{SOURCE_URI_PATTERN}", SOURCE_URI_PATTERN)
        .replace("{PUBLISH_URI_PATTERN}", PUBLISH_URI_PATTERN)
        .replace("{ADAPTER_URI_PATTERN}", ADAPTER_URI_PATTERN)
        .replace("{STORAGE_URI_PATTERN}", STORAGE_URI_PATTERN)
}

fn local_job_errors(yaml: &str) -> Vec<String> {
    match parse_finetunejob(yaml) {
        Ok(_) => vec![],
        Err(err) => err.to_string().lines().map(str::to_owned).collect(),
    }
}

fn local_deployment_errors(yaml: &str) -> Vec<String> {
    match parse_modeldeployment(yaml) {
        Ok(_) => vec![],
        Err(err) => err.to_string().lines().map(str::to_owned).collect(),
    }
}

#[test]
fn the_base_manifests_pass_everywhere() {
    let rules = ApiServerRules::for_crd::<FineTuneJob>();
    assert_eq!(rules.create(&base_job()), Vec::<String>::new());
    assert_eq!(
        local_job_errors(&serde_yaml_ng::to_string(&base_job()).unwrap()),
        Vec::<String>::new()
    );
    let rules = ApiServerRules::for_crd::<ModelDeployment>();
    assert_eq!(rules.create(&base_deployment()), Vec::<String>::new());
}

#[test]
fn hub_models_by_name_or_uri_pass_everywhere() {
    let rules = ApiServerRules::for_crd::<FineTuneJob>();
    for base_model in [
        json!({"name": "Qwen/Qwen2.5-7B-Instruct", "source": null}),
        json!({"source": "modelscope://qwen/Qwen2.5-7B-Instruct@v1.0.0"}),
        json!({"source": "hf://meta-llama/Llama-3.1-8B-Instruct@0e9e39f249a16976918f6564b8830bc894c89659"}),
    ] {
        let job = merge_patch(base_job(), json!({"spec": {"baseModel": base_model}}));
        assert_eq!(rules.create(&job), Vec::<String>::new(), "{base_model}");
        let yaml = serde_yaml_ng::to_string(&job).unwrap();
        assert_eq!(
            local_job_errors(&yaml),
            Vec::<String>::new(),
            "{base_model}"
        );
    }
    let named = merge_patch(base_job(), json!({"spec": {"baseModel": {"source": null}}}));
    let parsed = parse_finetunejob(&serde_yaml_ng::to_string(&named).unwrap()).unwrap();
    assert_eq!(
        parsed.spec.base_model.source_uri().as_deref(),
        Some("hf://Qwen/Qwen2.5-7B-Instruct")
    );
}

/// An image job: the base job turned into `task: text-to-image` on a folder.
fn image_job() -> Value {
    merge_patch(
        base_job(),
        json!({"spec": {
            "task": "text-to-image",
            "method": null,
            "baseModel": {"name": "anneal-flux-tiny", "source": "file://models/anneal-flux-tiny"},
            "dataset": {"train": null, "validation": null, "validationSplit": null, "images": "s3://data/dog-photos/"},
            "hyperparameters": {"maxTokens": null, "dpo": null, "lora": null, "gradientAccumulation": null, "triggerWord": "sks dog", "repeats": 5, "resolution": 512},
            "checkpoints": {"samplePrompts": [{"prompt": "a photo of sks dog", "seed": 3, "steps": 20, "guidance": 3.5}], "earlyStopping": null},
        }}),
    )
}

#[test]
fn an_image_job_passes_everywhere_and_its_cross_field_rules_hold_in_cel_too() {
    let rules = ApiServerRules::for_crd::<FineTuneJob>();
    let job = image_job();
    assert_eq!(rules.create(&job), Vec::<String>::new());
    let yaml = serde_yaml_ng::to_string(&job).unwrap();
    assert_eq!(local_job_errors(&yaml), Vec::<String>::new());
    let cases: Vec<Case> = vec![
        (
            "an image job on a JSONL file",
            json!({"spec": {"dataset": {"images": null, "train": "s3://data/train.jsonl"}}}),
            &["spec.dataset: dataset.images is what task: text-to-image trains on, and only it"],
            &[
                "spec.dataset.images: required by task: text-to-image (a folder of images with .txt captions)",
                "spec.dataset.train: a chat job's field: an image job (task: text-to-image) has no JSONL data",
            ],
        ),
        (
            "an image job with dpo",
            json!({"spec": {"method": "dpo"}}),
            &[
                "spec.task: task: text-to-image trains a LoRA with the flow-matching loss: leave method and training unset",
            ],
            &[
                "spec.method: an image job (task: text-to-image) trains with the flow-matching loss: leave method unset",
            ],
        ),
        (
            "an image folder with a validation split",
            json!({"spec": {"dataset": {"validationSplit": 0.2}}}),
            &[
                "spec.dataset: an image dataset has no validation data: leave dataset.validation and dataset.validationSplit unset",
            ],
            &[
                "spec.dataset.validationSplit: a chat job's field: an image job (task: text-to-image) has no JSONL data",
            ],
        ),
        (
            "a conversation as an image prompt, with an image prompt beside it",
            json!({"spec": {"checkpoints": {"samplePrompts": [{"prompt": "a dog", "messages": [{"role": "user", "content": "hi"}]}]}}}),
            &[
                "spec.checkpoints.samplePrompts[0]: set messages (a chat job's conversation) or prompt (an image job's), not both",
            ],
            &[
                "spec.checkpoints.samplePrompts[0].messages: an image job's sample prompt is text: set prompt",
            ],
        ),
        (
            "a resolution off the 64 grid",
            json!({"spec": {"hyperparameters": {"resolution": 1000}}}),
            &["/spec/hyperparameters/resolution: 1000 is not a multiple of 64"],
            &[
                "spec.hyperparameters.resolution: must be a multiple of 64 between 64 and 2048, got 1000",
            ],
        ),
        (
            "gradientAccumulation against the image preset's batch of 1",
            json!({"spec": {"hyperparameters": {"gradientAccumulation": 2}}}),
            &[
                "spec.hyperparameters.gradientAccumulation: hyperparameters.gradientAccumulation must divide the batch size (hyperparameters.batchSize, or the preset's)",
            ],
            &["spec.hyperparameters.gradientAccumulation: must divide the batch size (1), got 2"],
        ),
    ];
    check_cases(cases, job, &rules, local_job_errors);
}

#[test]
fn bad_finetunejobs_are_refused_with_the_exact_errors() {
    check_cases(
        job_cases(),
        base_job(),
        &ApiServerRules::for_crd::<FineTuneJob>(),
        local_job_errors,
    );
}

#[test]
fn bad_modeldeployments_are_refused_with_the_exact_errors() {
    check_cases(
        deployment_cases(),
        base_deployment(),
        &ApiServerRules::for_crd::<ModelDeployment>(),
        local_deployment_errors,
    );
}

/// (what changes, merge patch from the base to the new object, apiserver errors)
type UpdateCase = (&'static str, Value, &'static [&'static str]);

fn job_update_cases() -> Vec<UpdateCase> {
    vec![
        ("suspend", json!({"spec": {"suspend": true}}), &[]),
        (
            "node selector and GPU count",
            json!({"spec": {"resources": {"gpus": 2, "nodeSelector": {"gpu": "h100"}}}}),
            &[],
        ),
        ("queue name", json!({"spec": {"queueName": "team-a"}}), &[]),
        (
            "epochs",
            json!({"spec": {"hyperparameters": {"epochs": 5}}}),
            &["spec.hyperparameters: hyperparameters are immutable once the job is created"],
        ),
        (
            "training data",
            json!({"spec": {"dataset": {"train": "s3://data/other.jsonl"}}}),
            &["spec.dataset: dataset is immutable once the job is created"],
        ),
        (
            "base model",
            json!({"spec": {"baseModel": {"source": "s3://models/other"}}}),
            &["spec.baseModel: baseModel is immutable once the job is created"],
        ),
        (
            "method",
            json!({"spec": {"method": "dpo"}}),
            &["spec.method: method is immutable once the job is created"],
        ),
        (
            "training type",
            json!({"spec": {"training": "full"}}),
            &["spec.training: training is immutable once the job is created"],
        ),
        (
            "sample prompts",
            json!({"spec": {"checkpoints": {"samplePrompts": null}}}),
            &["spec.checkpoints: checkpoints are immutable once the job is created"],
        ),
        (
            "output added after creation",
            json!({"spec": {"output": {"uri": "s3://ckpts/team-a"}}}),
            &["spec.output: output is immutable once the job is created"],
        ),
    ]
}

#[test]
fn the_training_spec_is_immutable_and_suspend_is_not() {
    let rules = ApiServerRules::for_crd::<FineTuneJob>();
    let mut failures = Vec::new();
    for (what, patch, want) in job_update_cases() {
        let new = merge_patch(base_job(), patch);
        let got = rules.update(&base_job(), &new);
        if got != want {
            failures.push(format!("changing {what}: want {want:?}\n  got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn an_output_can_not_be_changed_either() {
    let rules = ApiServerRules::for_crd::<FineTuneJob>();
    let old = merge_patch(
        base_job(),
        json!({"spec": {"output": {"uri": "s3://ckpts/a"}}}),
    );
    let new = merge_patch(
        old.clone(),
        json!({"spec": {"output": {"uri": "s3://ckpts/b"}}}),
    );
    assert_eq!(
        rules.update(&old, &new),
        vec!["spec.output: output is immutable once the job is created"]
    );
    let removed = merge_patch(old.clone(), json!({"spec": {"output": null}}));
    assert_eq!(
        rules.update(&old, &removed),
        vec!["spec.output: output is immutable once the job is created"]
    );
}

/// Names the API server would refuse as object names (and one it allows for other
/// kinds but that nests folders), refused locally before they reach a storage path.
#[test]
fn names_that_are_not_kubernetes_names_are_refused_locally() {
    let rule = "must be a Kubernetes name: lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters";
    for (metadata, field, value) in [
        (json!({"name": "../../x"}), "metadata.name", "../../x"),
        (json!({"name": "a/b"}), "metadata.name", "a/b"),
        (json!({"name": "Support"}), "metadata.name", "Support"),
        (json!({"name": "a.b"}), "metadata.name", "a.b"),
        (
            json!({"namespace": "../team"}),
            "metadata.namespace",
            "../team",
        ),
    ] {
        let want = vec![format!("{field}: {value:?} {rule}")];
        let job = merge_patch(base_job(), json!({"metadata": metadata.clone()}));
        let yaml = serde_yaml_ng::to_string(&job).unwrap();
        assert_eq!(local_job_errors(&yaml), want, "FineTuneJob {metadata}");
        let deployment = merge_patch(base_deployment(), json!({"metadata": metadata.clone()}));
        let yaml = serde_yaml_ng::to_string(&deployment).unwrap();
        assert_eq!(
            local_deployment_errors(&yaml),
            want,
            "ModelDeployment {metadata}"
        );
    }
}
