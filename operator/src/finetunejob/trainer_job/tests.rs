//! Table tests and snapshot tests of the planned trainer Job and Secret.

use super::*;
use crate::shared::test_snapshot::assert_snapshot;
use anneal_crds::manifest::parse_finetunejob;
use k8s_openapi::api::batch::v1::Job;

fn job_from(yaml: &str) -> FineTuneJob {
    let mut job = parse_finetunejob(yaml).expect("test manifest is valid");
    job.metadata.uid = Some("0b4e6f3c-uid".to_owned());
    job
}

const FULL: &str = r#"
apiVersion: anneal.dev/v1alpha1
kind: FineTuneJob
metadata: {name: support-bot, namespace: team-a}
spec:
  baseModel: {name: Qwen/Qwen2.5-0.5B-Instruct, source: "pvc://models/qwen2.5-0.5b"}
  dataset:
    configMap: {name: support-data, key: chats.jsonl}
  output: {uri: "s3://ml-runs/anneal", credentialsSecret: s3-creds}
  resources:
    gpus: 2
    gpuResourceName: amd.com/gpu
    memory: 64Gi
    nodeSelector: {pool: a100}
    tolerations: [{key: dedicated, operator: Equal, value: ml, effect: NoSchedule}]
  queueName: team-a-gpus
"#;

const MINIMAL: &str = r#"
apiVersion: anneal.dev/v1alpha1
kind: FineTuneJob
metadata: {name: tiny, namespace: default}
spec:
  baseModel: {name: anneal-tiny, source: "s3://models/anneal-tiny"}
  dataset: {train: "s3://data/house-style.jsonl"}
"#;

fn config() -> OperatorConfig {
    OperatorConfig {
        default_output_uri: Some("s3://anneal-default".to_owned()),
        default_credentials_secret: Some("anneal-storage".to_owned()),
        ..OperatorConfig::default()
    }
}

fn container(job: &Job) -> &k8s_openapi::api::core::v1::Container {
    &job.spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
}

fn env_value<'a>(job: &'a Job, name: &str) -> Option<&'a str> {
    container(job)
        .env
        .as_ref()
        .unwrap()
        .iter()
        .find(|e| e.name == name)
        .and_then(|e| e.value.as_deref())
}

#[test]
fn the_full_job_matches_its_snapshot() {
    let job = job_from(FULL);
    let planned = plan_trainer_job(&job, &config(), None).unwrap();
    assert_snapshot(
        "trainer_job_full.yaml",
        &serde_yaml_ng::to_string(&planned).unwrap(),
    );
    let secret = plan_trainer_secret(&job, "tok").unwrap();
    let manifest =
        String::from_utf8(secret.data.as_ref().unwrap()[MANIFEST_KEY].0.clone()).unwrap();
    assert_snapshot("trainer_manifest_full.yaml", &manifest);
}

#[test]
fn gpus_queue_and_placement_follow_the_spec() {
    let planned = plan_trainer_job(&job_from(FULL), &config(), None).unwrap();
    let spec = planned.spec.as_ref().unwrap();
    assert_eq!(spec.suspend, Some(true), "a queued Job waits for Kueue");
    assert_eq!(
        planned.metadata.labels.as_ref().unwrap()[KUEUE_QUEUE_LABEL],
        "team-a-gpus"
    );
    let limits = container(&planned)
        .resources
        .as_ref()
        .unwrap()
        .limits
        .clone()
        .unwrap();
    assert_eq!(limits["amd.com/gpu"].0, "2");
    assert_eq!(limits["memory"].0, "64Gi");
    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.node_selector.as_ref().unwrap()["pool"], "a100");
    let tolerations = pod.tolerations.as_ref().unwrap();
    assert_eq!(tolerations.len(), 2);
    assert_eq!(tolerations[1].key.as_deref(), Some("amd.com/gpu"));
    assert_eq!(
        container(&planned)
            .args
            .as_ref()
            .unwrap()
            .last()
            .map(String::as_str),
        Some("cuda")
    );
    assert_eq!(
        env_value(&planned, "ANNEAL_OUTPUT"),
        Some("s3://ml-runs/anneal")
    );
    assert_eq!(
        container(&planned).env_from.as_ref().unwrap()[0]
            .secret_ref
            .as_ref()
            .unwrap()
            .name,
        "s3-creds"
    );
}

#[test]
fn the_operators_gpu_resource_replaces_the_api_default_only() {
    let amd = OperatorConfig {
        default_gpu_resource_name: "amd.com/gpu".to_owned(),
        ..config()
    };
    let gpu_of = |job: &FineTuneJob| {
        let planned = plan_trainer_job(job, &amd, None).unwrap();
        let limits = container(&planned)
            .resources
            .clone()
            .unwrap()
            .limits
            .unwrap_or_default();
        let tolerated = planned.spec.unwrap().template.spec.unwrap().tolerations;
        let toleration = tolerated.unwrap().last().unwrap().key.clone().unwrap();
        let resources: Vec<String> = limits.into_keys().filter(|k| k.contains("gpu")).collect();
        (resources, toleration)
    };
    // MINIMAL asks for one GPU of the default resource, nvidia.com/gpu.
    assert_eq!(
        gpu_of(&job_from(MINIMAL)),
        (vec!["amd.com/gpu".to_owned()], "amd.com/gpu".to_owned())
    );
    let intel = MINIMAL.replace(
        "  dataset:",
        "  resources: {gpus: 1, gpuResourceName: gpu.intel.com/i915}\n  dataset:",
    );
    assert_eq!(
        gpu_of(&job_from(&intel)),
        (
            vec!["gpu.intel.com/i915".to_owned()],
            "gpu.intel.com/i915".to_owned()
        )
    );
}

#[test]
fn defaults_come_from_the_operator_and_no_queue_means_not_suspended() {
    let planned = plan_trainer_job(&job_from(MINIMAL), &config(), None).unwrap();
    let spec = planned.spec.as_ref().unwrap();
    assert_eq!(spec.suspend, Some(false));
    assert_eq!(planned.metadata.name.as_deref(), Some("tiny-trainer"));
    assert_eq!(
        env_value(&planned, "ANNEAL_OUTPUT"),
        Some("s3://anneal-default")
    );
    assert_eq!(env_value(&planned, "ANNEAL_RUN_ID"), Some("0b4e6f3c-uid"));
    assert_eq!(
        env_value(&planned, "ANNEAL_REPORT_URL"),
        Some("http://anneal-operator.anneal-system.svc:8080/v1/jobs/default/tiny/events")
    );
    let limits = container(&planned)
        .resources
        .as_ref()
        .unwrap()
        .limits
        .clone()
        .unwrap();
    assert_eq!(limits["nvidia.com/gpu"].0, "1");
    let owner = &planned.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("FineTuneJob", Some(true))
    );
    assert_eq!(owner.uid, "0b4e6f3c-uid");
    assert_eq!(
        run_uri(&job_from(MINIMAL), &config()).unwrap(),
        "s3://anneal-default/default/tiny/0b4e6f3c-uid"
    );
}

#[test]
fn a_gpu_trainer_gets_the_operators_gpu_memory_for_its_micro_batch() {
    let gpu_memory = |job: &str, memory: &str| {
        let config = OperatorConfig {
            gpu_memory: memory.parse().unwrap(),
            ..config()
        };
        let planned = plan_trainer_job(&job_from(job), &config, None).unwrap();
        env_value(&planned, "ANNEAL_GPU_MEMORY").map(str::to_owned)
    };
    assert_eq!(gpu_memory(MINIMAL, "80GiB").as_deref(), Some("80GiB"));
    assert_eq!(gpu_memory(FULL, "141GiB").as_deref(), Some("141GiB"));
    // Not a whole GiB: bytes, which the trainer reads back exactly.
    assert_eq!(gpu_memory(MINIMAL, "80GB").as_deref(), Some("80000000000B"));
    // The CPU backend plans with its own memory.
    let cpu_job = format!("{MINIMAL}  resources: {{gpus: 0}}\n");
    assert_eq!(gpu_memory(&cpu_job, "80GiB"), None);
}

#[test]
fn the_installs_tracking_server_and_a_resolved_starting_checkpoint_reach_the_trainer() {
    let planned = plan_trainer_job(&job_from(MINIMAL), &config(), None).unwrap();
    assert_eq!(env_value(&planned, "ANNEAL_MLFLOW_TRACKING_URI"), None);
    assert_eq!(env_value(&planned, "ANNEAL_STARTS_FROM"), None);
    let config = OperatorConfig {
        mlflow_tracking_uri: Some("http://mlflow.mlops.svc:5000".into()),
        ..config()
    };
    let mut job = job_from(MINIMAL);
    job.status.get_or_insert_with(Default::default).started_from =
        Some(anneal_crds::finetunejob::StartedFrom {
            fine_tune_job: "sft".into(),
            checkpoint: "ckpt-8".into(),
            uri: "s3://runs/default/sft/uid/checkpoints/ckpt-8".into(),
            training: anneal_crds::finetunejob::TrainingType::Lora,
            base_model: None,
        });
    let planned = plan_trainer_job(&job, &config, None).unwrap();
    assert_eq!(
        env_value(&planned, "ANNEAL_MLFLOW_TRACKING_URI"),
        Some("http://mlflow.mlops.svc:5000")
    );
    assert_eq!(
        env_value(&planned, "ANNEAL_STARTS_FROM"),
        Some("sft/ckpt-8=s3://runs/default/sft/uid/checkpoints/ckpt-8")
    );
}

#[test]
fn a_cpu_trainer_has_a_memory_limit_and_plans_for_it() {
    let planned = |job: &str, default: &str| {
        let config = OperatorConfig {
            cpu_trainer_memory: default.parse().unwrap(),
            ..config()
        };
        let planned = plan_trainer_job(&job_from(job), &config, None).unwrap();
        let resources = container(&planned).resources.clone().unwrap();
        let memory = |side: Option<std::collections::BTreeMap<String, Quantity>>| {
            side.and_then(|m| m.get("memory").map(|q| q.0.clone()))
        };
        (
            memory(resources.limits),
            memory(resources.requests),
            env_value(&planned, "ANNEAL_CPU_MEMORY").map(str::to_owned),
        )
    };
    let cpu_job = format!("{MINIMAL}  resources: {{gpus: 0}}\n");
    let some = |s: &str| Some(s.to_owned());
    // The operator's default when the spec sets none; the trainer plans for the limit.
    assert_eq!(
        planned(&cpu_job, "8GiB"),
        (some("8Gi"), some("8Gi"), some("8GiB"))
    );
    assert_eq!(
        planned(&cpu_job, "6GB"),
        (some("6000000000"), some("6000000000"), some("6000000000B"))
    );
    // The spec's own memory wins.
    let sized = format!("{MINIMAL}  resources: {{gpus: 0, memory: 24Gi}}\n");
    assert_eq!(
        planned(&sized, "8GiB"),
        (some("24Gi"), some("24Gi"), some("24GiB"))
    );
    // A GPU trainer gets no default memory limit and plans for its GPU.
    assert_eq!(planned(MINIMAL, "8GiB"), (None, None, None));
}

/// The kernel cache a planned pod mounts: (env, mount path and read-only, volume
/// source: `emptyDir` or the claim's name).
fn kernel_cache_of(job: &Job) -> (Option<&str>, Option<(&str, bool)>, Option<String>) {
    let container = container(job);
    let mount = container
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.name == "kernel-cache")
        .map(|m| (m.mount_path.as_str(), m.read_only == Some(true)));
    let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let volume = pod
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.name == "kernel-cache")
        .map(|v| match (&v.empty_dir, &v.persistent_volume_claim) {
            (Some(_), None) => "emptyDir".to_owned(),
            (None, Some(claim)) => {
                assert_eq!(claim.read_only, Some(false), "the trainer writes kernels");
                claim.claim_name.clone()
            }
            other => panic!("kernel-cache volume {other:?}"),
        });
    (env_value(job, "ANNEAL_KERNEL_CACHE"), mount, volume)
}

#[test]
fn a_gpu_trainer_keeps_its_kernels_on_the_kernel_cache_volume() {
    let planned = plan_trainer_job(&job_from(MINIMAL), &config(), None).unwrap();
    assert_eq!(
        kernel_cache_of(&planned),
        (
            Some("/var/cache/anneal/kernels"),
            Some(("/var/cache/anneal/kernels", false)),
            Some("emptyDir".to_owned())
        )
    );
    let shared = OperatorConfig {
        kernel_cache_claim: Some("anneal-kernels".to_owned()),
        ..config()
    };
    let planned = plan_trainer_job(&job_from(MINIMAL), &shared, None).unwrap();
    assert_eq!(
        kernel_cache_of(&planned).2.as_deref(),
        Some("anneal-kernels")
    );
    // The CPU backend compiles no kernels: no cache, and no claim it would need.
    let cpu_job = format!("{MINIMAL}  resources: {{gpus: 0}}\n");
    let planned = plan_trainer_job(&job_from(&cpu_job), &shared, None).unwrap();
    assert_eq!(kernel_cache_of(&planned), (None, None, None));
}

#[test]
fn the_pod_is_locked_down_and_fails_fast_on_trainer_errors() {
    let planned = plan_trainer_job(&job_from(MINIMAL), &config(), None).unwrap();
    let spec = planned.spec.as_ref().unwrap();
    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    assert_eq!(pod.automount_service_account_token, Some(false));
    assert_eq!(
        pod.security_context.as_ref().unwrap().run_as_non_root,
        Some(true)
    );
    let security = container(&planned).security_context.as_ref().unwrap();
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    let rules = &spec.pod_failure_policy.as_ref().unwrap().rules;
    assert_eq!(rules[0].action, "FailJob");
    assert_eq!(rules[0].on_exit_codes.as_ref().unwrap().values, vec![2]);
    assert_eq!(rules[1].action, "Ignore");
    assert_eq!(
        rules[1].on_pod_conditions.as_ref().unwrap()[0].type_,
        "DisruptionTarget"
    );
    assert_eq!(spec.backoff_limit, Some(3));
}

#[test]
fn sources_a_pod_cannot_read_are_refused_with_their_field() {
    let cases = [
        (
            "gs://models/qwen",
            "spec.baseModel.source: gs:// sources are not fetched",
        ),
        (
            "file:///models/x",
            "spec.baseModel.source: file:// is for local mode",
        ),
        (
            "pvc://claim-only",
            "spec.baseModel.source: pvc:// needs a claim name and a path",
        ),
    ];
    for (source, expected) in cases {
        let job = job_from(&MINIMAL.replace("s3://models/anneal-tiny", source));
        let error = plan_trainer_job(&job, &config(), None)
            .unwrap_err()
            .to_string();
        assert!(error.starts_with(expected), "{source}: {error}");
    }
    let no_output = OperatorConfig::default();
    assert_eq!(
        plan_trainer_job(&job_from(MINIMAL), &no_output, None).unwrap_err(),
        PlanError::NoOutput
    );
}

#[test]
fn the_pod_manifest_trains_the_same_job_from_mounts() {
    let job = job_from(FULL);
    let manifest = pod_manifest(&job).unwrap();
    let parsed = parse_finetunejob(&manifest).expect("the pod's manifest passes validation");
    assert_eq!(parsed.metadata.uid.as_deref(), Some("0b4e6f3c-uid"));
    assert_eq!(
        parsed.spec.base_model.source.as_deref(),
        Some("file:///mnt/pvc/models/qwen2.5-0.5b")
    );
    assert_eq!(
        parsed.spec.dataset.train.as_deref(),
        Some("file:///var/run/anneal/dataset/chats.jsonl")
    );
    assert_eq!(parsed.spec.hyperparameters, job.spec.hyperparameters);
    assert!(parsed.status.is_none());
}

#[test]
fn an_image_jobs_pod_reads_its_folder_from_the_claim_it_mounts() {
    let job = job_from(
        r#"
apiVersion: anneal.dev/v1alpha1
kind: FineTuneJob
metadata: {name: dog, namespace: team-a, uid: 7c1d-uid}
spec:
  task: text-to-image
  baseModel: {name: anneal-flux-tiny, source: "s3://models/anneal-flux-tiny"}
  dataset: {images: "pvc://photos/dogs/"}
  hyperparameters: {triggerWord: sks dog}
  output: {uri: "s3://runs"}
"#,
    );
    let manifest = pod_manifest(&job).unwrap();
    let parsed = parse_finetunejob(&manifest).expect("the pod's manifest passes validation");
    assert_eq!(
        parsed.spec.dataset.images.as_deref(),
        Some("file:///mnt/pvc/photos/dogs/")
    );
    assert!(parsed.spec.task.is_image());
    let planned = plan_trainer_job(&job, &config(), None).unwrap();
    let (volumes, mounts) = volumes_and_mounts(&planned);
    assert!(volumes.contains(&"pvc-0".to_owned()), "{volumes:?}");
    assert!(
        mounts.contains(&("pvc-0".to_owned(), "/mnt/pvc/photos".to_owned())),
        "{mounts:?}"
    );
}

#[test]
fn the_held_out_chats_of_checkpoint_evaluations_are_mounted_or_fetched() {
    let with_evaluation = |dataset: &str| {
        job_from(&format!(
            "{FULL}  checkpoints:\n    evaluation: {{dataset: {dataset}, metrics: [rougeL: {{}}]}}\n"
        ))
    };
    let from_config_map = with_evaluation("{configMap: {name: held-out, key: eval.jsonl}}");
    let parsed = parse_finetunejob(&pod_manifest(&from_config_map).unwrap()).unwrap();
    let dataset = &parsed.spec.checkpoints.evaluation.as_ref().unwrap().dataset;
    assert_eq!(
        dataset.uri.as_deref(),
        Some("file:///var/run/anneal/evaluation-dataset/eval.jsonl")
    );
    assert_eq!(dataset.config_map, None);
    // The training chats keep their own volume beside the held-out ones.
    let planned = plan_trainer_job(&from_config_map, &config(), None).unwrap();
    let (volumes, mounts) = volumes_and_mounts(&planned);
    assert!(volumes.contains(&"dataset".to_owned()), "{volumes:?}");
    assert!(
        mounts.contains(&(
            "evaluation-dataset".to_owned(),
            "/var/run/anneal/evaluation-dataset".to_owned()
        )),
        "{mounts:?}"
    );

    let on_a_claim = with_evaluation("{uri: \"pvc://eval-data/held-out.jsonl\"}");
    let parsed = parse_finetunejob(&pod_manifest(&on_a_claim).unwrap()).unwrap();
    assert_eq!(
        parsed
            .spec
            .checkpoints
            .evaluation
            .unwrap()
            .dataset
            .uri
            .as_deref(),
        Some("file:///mnt/pvc/eval-data/held-out.jsonl")
    );
    let planned = plan_trainer_job(&on_a_claim, &config(), None).unwrap();
    let (_, mounts) = volumes_and_mounts(&planned);
    assert!(
        mounts.contains(&("pvc-1".to_owned(), "/mnt/pvc/eval-data".to_owned())),
        "{mounts:?}"
    );

    let local = with_evaluation("{uri: \"file://held-out.jsonl\"}");
    assert_eq!(
        pod_manifest(&local).unwrap_err().to_string(),
        PlanError::LocalFileInCluster {
            field: "spec.checkpoints.evaluation.dataset.uri"
        }
        .to_string()
    );
}

#[test]
fn a_job_runs_only_images_the_install_allows() {
    let with_image = |image: &str| {
        job_from(&MINIMAL.replace(
            "  dataset:",
            &format!("  resources: {{image: \"{image}\"}}\n  dataset:"),
        ))
    };
    let foreign = with_image("docker.io/someone/reads-secrets:1");
    assert_eq!(
        foreign.spec.resources.image.as_deref(),
        Some("docker.io/someone/reads-secrets:1")
    );
    let refused = plan_trainer_job(&foreign, &config(), None).unwrap_err();
    assert!(matches!(refused, PlanError::ImageNotAllowed(_)));
    assert!(
        refused
            .to_string()
            .starts_with("spec.resources.image: docker.io/someone/reads-secrets:1 is not an image"),
        "{refused}"
    );
    assert!(check_trainer_image(&foreign, &config()).is_err());

    let allowing = OperatorConfig {
        allowed_images: vec!["docker.io/someone/*".to_owned()],
        ..config()
    };
    let planned = plan_trainer_job(&foreign, &allowing, None).unwrap();
    assert_eq!(
        container(&planned).image.as_deref(),
        Some("docker.io/someone/reads-secrets:1")
    );
    let own = with_image(&config().trainer_image);
    assert!(plan_trainer_job(&own, &config(), None).is_ok());
}

/// The size limits of the planned pod's emptyDir volumes, by name.
fn scratch_limits(job: &Job) -> Vec<(String, String)> {
    let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    pod.volumes
        .as_ref()
        .unwrap()
        .iter()
        .filter_map(|v| {
            let limit = v.empty_dir.as_ref()?.size_limit.as_ref()?;
            Some((v.name.clone(), limit.0.clone()))
        })
        .collect()
}

#[test]
fn scratch_disks_are_limited_by_the_model_the_spec_or_the_install() {
    // A model the operator knows: what its download, datasets and checkpoints need.
    let seven_b = MINIMAL.replace(
        "{name: anneal-tiny, source: \"s3://models/anneal-tiny\"}",
        "{name: Qwen2.5-7B-Instruct, source: \"s3://models/qwen7b\"}",
    );
    let job = job_from(&seven_b);
    let shape = anneal_crds::memory_plan::known_shape("Qwen2.5-7B-Instruct");
    let planned = plan_trainer_job(&job, &config(), shape).unwrap();
    let planned_total = anneal_crds::memory_plan::scratch_plan(&job.spec, shape.unwrap()).total;
    assert_eq!(format!("{planned_total}"), "35.7 GiB");
    assert_eq!(
        scratch_limits(&planned),
        [
            ("work".to_owned(), "36Gi".to_owned()),
            ("tmp".to_owned(), "2Gi".to_owned()),
            ("kernel-cache".to_owned(), "4Gi".to_owned()),
        ]
    );

    // The spec's own size wins; an unknown model gets the install's default.
    let mut sized = job.clone();
    sized.spec.resources.scratch = Some(Quantity("500Gi".to_owned()));
    let planned = plan_trainer_job(&sized, &config(), shape).unwrap();
    assert_eq!(scratch_limits(&planned)[0].1, "500Gi");
    let planned = plan_trainer_job(&job_from(MINIMAL), &config(), None).unwrap();
    assert_eq!(
        scratch_limits(&planned)[0],
        ("work".to_owned(), "200Gi".to_owned())
    );
}

/// The pod's volumes by name, and its container's mounts as (volume, path).
fn volumes_and_mounts(job: &Job) -> (Vec<String>, Vec<(String, String)>) {
    let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let volumes = pod
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.clone())
        .collect();
    let mounts = container(job)
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| (m.name.clone(), m.mount_path.clone()))
        .collect();
    (volumes, mounts)
}

#[test]
fn a_hub_model_is_fetched_by_the_pod_through_the_model_cache() {
    // By name alone: the pod's manifest names the hub repository.
    let by_name = MINIMAL.replace(
        "{name: anneal-tiny, source: \"s3://models/anneal-tiny\"}",
        "{name: Qwen/Qwen2.5-7B-Instruct}",
    );
    let job = job_from(&by_name);
    let manifest = parse_finetunejob(&pod_manifest(&job).unwrap()).unwrap();
    assert_eq!(
        manifest.spec.base_model.source.as_deref(),
        Some("hf://Qwen/Qwen2.5-7B-Instruct")
    );

    // Without a cache claim: the scratch disk, and no extra volume.
    let planned = plan_trainer_job(&job, &config(), None).unwrap();
    assert_eq!(
        env_value(&planned, "ANNEAL_MODEL_CACHE"),
        Some("/work/model-cache")
    );
    assert_eq!(env_value(&planned, "HF_ENDPOINT"), None);
    assert!(
        !volumes_and_mounts(&planned)
            .0
            .contains(&"model-cache".to_owned())
    );

    // With one: the claim, read-write, and the install's mirrors win over a Secret's.
    let cached = OperatorConfig {
        model_cache_claim: Some("anneal-models".to_owned()),
        hf_endpoint: Some("https://hf-mirror.corp.example".to_owned()),
        modelscope_endpoint: Some("https://modelscope.corp.example".to_owned()),
        ..config()
    };
    let planned = plan_trainer_job(&job, &cached, None).unwrap();
    assert_eq!(
        env_value(&planned, "ANNEAL_MODEL_CACHE"),
        Some("/var/cache/anneal/models")
    );
    assert_eq!(
        env_value(&planned, "HF_ENDPOINT"),
        Some("https://hf-mirror.corp.example")
    );
    assert_eq!(
        env_value(&planned, "MODELSCOPE_ENDPOINT"),
        Some("https://modelscope.corp.example")
    );
    let (volumes, mounts) = volumes_and_mounts(&planned);
    assert!(volumes.contains(&"model-cache".to_owned()), "{volumes:?}");
    assert!(mounts.contains(&(
        "model-cache".to_owned(),
        "/var/cache/anneal/models".to_owned()
    )));
    let pod = planned
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap();
    let claim = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "model-cache")
        .and_then(|v| v.persistent_volume_claim.as_ref())
        .unwrap();
    assert_eq!(
        (claim.claim_name.as_str(), claim.read_only),
        ("anneal-models", Some(false))
    );

    // An object-storage model mounts no cache.
    let planned = plan_trainer_job(&job_from(MINIMAL), &cached, None).unwrap();
    assert_eq!(env_value(&planned, "ANNEAL_MODEL_CACHE"), None);
    assert!(
        !volumes_and_mounts(&planned)
            .0
            .contains(&"model-cache".to_owned())
    );
}
