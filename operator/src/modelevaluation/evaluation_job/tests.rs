//! The planned evaluation Job and Secret: a GPU pod for weights, a CPU pod for
//! servers only, the keys mounted where `trainer evaluate` reads them, the run id and
//! the FineTuneJobs' runs passed on, and sources a pod cannot read refused by field.

use super::*;
use crate::shared::test_snapshot::assert_snapshot;
use anneal_crds::manifest::parse_modelevaluation;
use k8s_openapi::api::core::v1::Container;

fn evaluation_from(yaml: &str) -> ModelEvaluation {
    let mut evaluation = parse_modelevaluation(yaml).expect("test manifest is valid");
    evaluation.metadata.uid = Some("7c1d-uid".to_owned());
    evaluation
}

const WITH_WEIGHTS: &str = r#"
apiVersion: anneal.dev/v1alpha1
kind: ModelEvaluation
metadata: {name: house-style, namespace: team-a}
spec:
  models:
    - {name: base, baseModel: {name: Qwen/Qwen2.5-7B-Instruct}}
    - {name: tuned, fineTuneJob: {name: support-bot, checkpoint: best}}
    - {name: hosted, endpoint: {url: "https://api.example.com/v1", model: big, credentialsSecret: hosted-key}}
  dataset:
    configMap: {name: held-out, key: chats.jsonl}
  metrics:
    - regex: {pattern: "^Good question!"}
    - judge:
        model: {endpoint: {url: "https://judge.example.com/v1", model: judge, credentialsSecret: judge-key}}
        rubric: House style?
  output: {uri: "s3://ml-runs/anneal", credentialsSecret: s3-creds}
  resources: {gpus: 1}
"#;

const SERVED_ONLY: &str = r#"
apiVersion: anneal.dev/v1alpha1
kind: ModelEvaluation
metadata: {name: served, namespace: team-a}
spec:
  models:
    - {name: live, modelDeployment: {name: support-bot}}
    - {name: hosted, endpoint: {url: "https://api.example.com/v1", model: big, credentialsSecret: hosted-key}}
  dataset: {uri: "s3://data/held-out.jsonl"}
  metrics: [{judge: {model: {endpoint: {url: "https://api.example.com/v1", model: judge, credentialsSecret: hosted-key}}, rubric: Good?}}]
  resources: {gpus: 1}
"#;

fn config() -> OperatorConfig {
    OperatorConfig {
        default_output_uri: Some("s3://anneal-default".to_owned()),
        default_credentials_secret: Some("anneal-storage".to_owned()),
        ..OperatorConfig::default()
    }
}

fn pod(job: &Job) -> &PodSpec {
    job.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
}

fn container(job: &Job) -> &Container {
    &pod(job).containers[0]
}

fn env_value<'a>(job: &'a Job, name: &str) -> Option<&'a str> {
    container(job)
        .env
        .as_ref()?
        .iter()
        .find(|e| e.name == name)?
        .value
        .as_deref()
}

fn mounted_at<'a>(job: &'a Job, path: &str) -> Option<&'a Volume> {
    let mount = container(job)
        .volume_mounts
        .as_ref()?
        .iter()
        .find(|m| m.mount_path == path)?;
    pod(job)
        .volumes
        .as_ref()?
        .iter()
        .find(|v| v.name == mount.name)
}

#[test]
fn a_gpu_pod_evaluates_weights_and_checkpoints_with_the_keys_mounted() {
    let evaluation = evaluation_from(WITH_WEIGHTS);
    let runs = [JobRun {
        job: "support-bot".to_owned(),
        run_uri: "s3://ml-runs/anneal/team-a/support-bot/0b4e-uid".to_owned(),
    }];
    let job = plan_evaluation_job(&evaluation, &runs, &config()).unwrap();
    assert_eq!(job.metadata.name.as_deref(), Some("house-style-evaluate"));
    let args = container(&job).args.clone().unwrap();
    assert_eq!(
        args,
        [
            "evaluate",
            "/var/run/anneal/evaluation/modelevaluation.yaml",
            "--device",
            "cuda",
            "--job-run",
            "support-bot=s3://ml-runs/anneal/team-a/support-bot/0b4e-uid",
        ]
    );
    // The run id is the evaluation's uid: a retried pod continues its answers.
    assert_eq!(env_value(&job, "ANNEAL_RUN_ID"), Some("7c1d-uid"));
    assert_eq!(
        env_value(&job, "ANNEAL_OUTPUT"),
        Some("s3://ml-runs/anneal")
    );
    assert_eq!(env_value(&job, "ANNEAL_SECRETS_DIR"), Some(SECRETS_DIR));
    let limits = container(&job)
        .resources
        .as_ref()
        .unwrap()
        .limits
        .clone()
        .unwrap();
    assert!(limits.contains_key("nvidia.com/gpu"), "{limits:?}");
    // Each key Secret where trainer evaluate reads it, the apiKey item only.
    for secret in ["hosted-key", "judge-key"] {
        let volume = mounted_at(&job, &format!("{SECRETS_DIR}/{secret}")).unwrap();
        let source = volume.secret.as_ref().unwrap();
        assert_eq!(source.secret_name.as_deref(), Some(secret));
        assert_eq!(source.items.as_ref().unwrap()[0].key, "apiKey");
    }
    let dataset = mounted_at(&job, "/var/run/anneal/dataset").unwrap();
    assert_eq!(dataset.config_map.as_ref().unwrap().name, "held-out");
    // A hub base model comes through the model cache.
    assert_eq!(
        env_value(&job, "ANNEAL_MODEL_CACHE"),
        Some("/work/model-cache")
    );
    assert_eq!(pod(&job).automount_service_account_token, Some(false));
    let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("ModelEvaluation", Some(true))
    );
    assert_snapshot(
        "evaluation_job_with_weights.yaml",
        &serde_yaml_ng::to_string(&job).unwrap(),
    );

    // The manifest the pod reads: the ConfigMap dataset is the mounted file.
    let manifest = pod_evaluation_manifest(&evaluation).unwrap();
    let planned = parse_modelevaluation(&manifest).unwrap();
    assert_eq!(
        planned.spec.dataset.uri.as_deref(),
        Some("file:///var/run/anneal/dataset/chats.jsonl")
    );
    assert_eq!(planned.spec.dataset.config_map, None);
    let secret = plan_evaluation_secret(&evaluation).unwrap();
    assert_eq!(
        secret.metadata.name.as_deref(),
        Some("house-style-evaluate")
    );
    assert!(secret.data.unwrap().contains_key(MANIFEST_KEY));
}

#[test]
fn an_evaluation_of_servers_only_is_a_small_cpu_pod() {
    let evaluation = evaluation_from(SERVED_ONLY);
    assert!(!loads_weights(&evaluation.spec));
    let job = plan_evaluation_job(&evaluation, &[], &config()).unwrap();
    let args = container(&job).args.clone().unwrap();
    assert_eq!(args[2..], ["--device", "cpu"]);
    let resources = container(&job).resources.clone().unwrap();
    let limits = resources.limits.unwrap_or_default();
    assert!(
        !limits.contains_key("nvidia.com/gpu"),
        "no GPU although gpus: 1"
    );
    assert!(limits.contains_key("memory"));
    assert_eq!(pod(&job).tolerations, None);
    // One Secret named twice (a model and the judge) is mounted once.
    let keys: Vec<&str> = container(&job)
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .filter(|m| m.mount_path.starts_with(SECRETS_DIR))
        .map(|m| m.mount_path.as_str())
        .collect();
    assert_eq!(keys, ["/var/run/secrets/anneal/hosted-key"]);
    // The operator's default output and storage credentials.
    assert_eq!(
        env_value(&job, "ANNEAL_OUTPUT"),
        Some("s3://anneal-default")
    );
    assert_eq!(
        evaluation_run_uri(&evaluation, &config()).unwrap(),
        "s3://anneal-default/team-a/served/7c1d-uid"
    );
}

#[test]
fn sources_a_pod_cannot_read_are_refused_by_field() {
    let local = WITH_WEIGHTS.replace(
        "{name: base, baseModel: {name: Qwen/Qwen2.5-7B-Instruct}}",
        "{name: base, baseModel: {name: tiny, source: \"file://models/tiny\"}}",
    );
    let error = plan_evaluation_job(&evaluation_from(&local), &[], &config()).unwrap_err();
    assert!(
        error.to_string().starts_with(
            "spec.models[0].baseModel.source: \"file://models/tiny\": an evaluation pod reads s3://"
        ),
        "{error}"
    );
    let no_output = OperatorConfig::default();
    let error = plan_evaluation_job(&evaluation_from(SERVED_ONLY), &[], &no_output).unwrap_err();
    assert_eq!(error, EvaluationPlanError::Plan(PlanError::NoOutput));
    let image = WITH_WEIGHTS.replace(
        "resources: {gpus: 1}",
        "resources: {gpus: 1, image: evil/miner}",
    );
    let error = plan_evaluation_job(&evaluation_from(&image), &[], &config()).unwrap_err();
    assert!(error.to_string().contains("evil/miner"), "{error}");
}
