//! Table tests and snapshot tests of the planned serving Deployment and Service.

use super::*;
use crate::modeldeployment::model_resolution::ServedAdapter;
use crate::shared::test_snapshot::assert_snapshot;
use anneal_crds::manifest::parse_modeldeployment;
use anneal_crds::memory_plan::ByteSize;

fn deployment_from(yaml: &str) -> ModelDeployment {
    let mut deployment = parse_modeldeployment(yaml).expect("test manifest is valid");
    deployment.metadata.uid = Some("7c1d-uid".to_owned());
    deployment
}

/// A fine-tuned checkpoint on GPUs, served by `trainer serve`.
const BUILTIN: &str = r#"
apiVersion: anneal.dev/v1alpha1
kind: ModelDeployment
metadata: {name: support-bot, namespace: team-a}
spec:
  model:
    fineTuneJob: {name: support, checkpoint: best}
  servedModelName: support-bot
  replicas: 2
  resources:
    gpus: 1
    memory: 24Gi
    nodeSelector: {pool: l4}
    tolerations: [{key: dedicated, operator: Equal, value: serving, effect: NoSchedule}]
"#;

/// A base model with two adapters on two GPUs, served by vLLM.
const VLLM: &str = r#"
apiVersion: anneal.dev/v1alpha1
kind: ModelDeployment
metadata: {name: adapters, namespace: team-a}
spec:
  model:
    baseModel: {name: Qwen/Qwen2.5-7B-Instruct, source: "s3://models/qwen2.5-7b"}
    adapters:
      - {name: support, uri: "s3://runs/team-a/support/u1/final"}
      - {name: sales, uri: "pvc://adapters/sales/final"}
  runtime: vllm
  resources: {gpus: 2, gpuResourceName: amd.com/gpu}
"#;

fn config() -> OperatorConfig {
    OperatorConfig {
        trainer_image: "anneal-trainer:1.2".to_owned(),
        fetch_image: "anneal-fetch:1.2".to_owned(),
        vllm_image: "vllm/vllm-openai:v0.11.0".to_owned(),
        ..OperatorConfig::default()
    }
}

fn source(uri: &str, field: &str) -> Source {
    Source {
        uri: uri.to_owned(),
        field: field.to_owned(),
    }
}

/// A LoRA checkpoint of a job, as resolution hands it over.
fn checkpoint_model(base_uri: &str) -> ServedModel {
    ServedModel {
        model_id: "ft:qwen2.5-0.5b-instruct:support:ckpt-18".to_owned(),
        base_name: "Qwen/Qwen2.5-0.5B-Instruct".to_owned(),
        base_model: "Qwen/Qwen2.5-0.5B-Instruct".to_owned(),
        base: source(base_uri, "FineTuneJob support spec.baseModel.source"),
        adapters: vec![ServedAdapter {
            name: "support-bot".to_owned(),
            source: source(
                "s3://runs/team-a/support/u1/checkpoints/ckpt-18",
                "FineTuneJob support status.checkpoints[ckpt-18].uri",
            ),
        }],
        credentials_secret: Some("s3-creds".to_owned()),
        image: false,
        summary: String::new(),
    }
}

fn adapters_model() -> ServedModel {
    ServedModel {
        model_id: "Qwen/Qwen2.5-7B-Instruct".to_owned(),
        base_name: "Qwen/Qwen2.5-7B-Instruct".to_owned(),
        base_model: "Qwen/Qwen2.5-7B-Instruct".to_owned(),
        base: source("s3://models/qwen2.5-7b", "spec.model.baseModel.source"),
        adapters: vec![
            ServedAdapter {
                name: "support".to_owned(),
                source: source(
                    "s3://runs/team-a/support/u1/final",
                    "spec.model.adapters[0].uri",
                ),
            },
            ServedAdapter {
                name: "sales".to_owned(),
                source: source("pvc://adapters/sales/final", "spec.model.adapters[1].uri"),
            },
        ],
        credentials_secret: Some("anneal-storage".to_owned()),
        image: false,
        summary: String::new(),
    }
}

fn pod(planned: &Deployment) -> &PodSpec {
    planned
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
}

fn server(planned: &Deployment) -> &Container {
    &pod(planned).containers[0]
}

fn args(container: &Container) -> Vec<&str> {
    container
        .args
        .as_ref()
        .unwrap()
        .iter()
        .map(String::as_str)
        .collect()
}

fn mounts(container: &Container) -> Vec<(&str, bool)> {
    container
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .map(|m| (m.mount_path.as_str(), m.read_only == Some(true)))
        .collect()
}

#[test]
fn the_builtin_deployment_and_the_service_match_their_snapshots() {
    let deployment = deployment_from(BUILTIN);
    let planned = plan_deployment(
        &deployment,
        &checkpoint_model("s3://models/qwen2.5-0.5b"),
        &config(),
    )
    .unwrap();
    assert_snapshot(
        "serving_deployment_builtin.yaml",
        &serde_yaml_ng::to_string(&planned).unwrap(),
    );
    let service = plan_service(&deployment).unwrap();
    assert_snapshot(
        "serving_service.yaml",
        &serde_yaml_ng::to_string(&service).unwrap(),
    );
}

#[test]
fn the_vllm_deployment_matches_its_snapshot() {
    let planned = plan_deployment(&deployment_from(VLLM), &adapters_model(), &config()).unwrap();
    assert_snapshot(
        "serving_deployment_vllm.yaml",
        &serde_yaml_ng::to_string(&planned).unwrap(),
    );
}

/// The builtin deployment of a job's LoRA checkpoint, its model, and their plan.
fn builtin_checkpoint_plan() -> (ModelDeployment, ServedModel, Deployment) {
    let deployment = deployment_from(BUILTIN);
    let model = checkpoint_model("s3://models/qwen2.5-0.5b");
    let planned = plan_deployment(&deployment, &model, &config()).unwrap();
    (deployment, model, planned)
}

#[test]
fn builtin_runs_trainer_serve_with_the_adapter_loaded_at_runtime_on_gpus() {
    let (deployment, model, planned) = builtin_checkpoint_plan();
    let spec = planned.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(2));
    let server = server(&planned);
    assert_eq!(server.image.as_deref(), Some("anneal-trainer:1.2"));
    assert_eq!(server.command, None, "the image's entrypoint is trainer");
    assert_eq!(
        args(server),
        [
            "serve",
            "--model",
            "s3://models/qwen2.5-0.5b",
            "--enable-runtime-lora",
            "--max-loras",
            "8",
            "--adapters-file",
            "/etc/anneal/adapters/adapters.json",
            "--served-model-name",
            "Qwen/Qwen2.5-0.5B-Instruct",
            "--host",
            "0.0.0.0",
            "--port",
            "8000",
            "--work-dir",
            "/work",
            "--device",
            "cuda",
        ]
    );
    assert_eq!(
        server.env_from.as_ref().unwrap()[0]
            .secret_ref
            .as_ref()
            .unwrap()
            .name,
        "s3-creds",
        "trainer serve downloads s3:// itself"
    );
    // The adapter is the operator's to load, with the token from the deployment's
    // Secret, and the pod joins the Service once it has.
    assert_eq!(
        runtime_adapters(&deployment, &model).unwrap(),
        [RuntimeAdapter {
            name: "support-bot".to_owned(),
            path: "s3://runs/team-a/support/u1/checkpoints/ckpt-18".to_owned(),
            field: model.adapters[0].source.field.clone(),
        }]
    );
    let token_source = server.env_from.as_ref().unwrap()[1]
        .secret_ref
        .as_ref()
        .unwrap();
    assert_eq!(token_source.name, "support-bot-runtime-lora");
    let secret = plan_runtime_lora_secret(&deployment, "t0ken").unwrap();
    assert_eq!(
        secret.metadata.name.as_deref(),
        Some("support-bot-runtime-lora")
    );
    assert_eq!(
        secret.data.unwrap()["ANNEAL_RUNTIME_LORA_TOKEN"].0,
        b"t0ken",
        "the name trainer serve reads the token from"
    );
    assert_eq!(
        secret.metadata.owner_references.unwrap()[0].uid,
        "7c1d-uid",
        "deleted with the deployment"
    );
}

#[test]
fn a_builtin_pod_has_its_gpus_probes_volumes_and_owner() {
    let (_, _, planned) = builtin_checkpoint_plan();
    let spec = planned.spec.as_ref().unwrap();
    let server = server(&planned);
    let gates = pod(&planned).readiness_gates.clone().unwrap();
    assert_eq!(gates[0].condition_type, "anneal.dev/adapters-loaded");
    let limits = server.resources.as_ref().unwrap().limits.clone().unwrap();
    assert_eq!(limits["nvidia.com/gpu"].0, "1");
    assert_eq!(limits["memory"].0, "24Gi");
    let pod = pod(&planned);
    assert_eq!(pod.node_selector.as_ref().unwrap()["pool"], "l4");
    let tolerations = pod.tolerations.as_ref().unwrap();
    assert_eq!(tolerations.len(), 2);
    assert_eq!(tolerations[1].key.as_deref(), Some("nvidia.com/gpu"));
    assert!(pod.init_containers.is_none());
    assert_eq!(pod.termination_grace_period_seconds, Some(60));
    let readiness = server.readiness_probe.as_ref().unwrap();
    assert_eq!(
        readiness.http_get.as_ref().unwrap().path.as_deref(),
        Some("/health")
    );
    let startup = server.startup_probe.as_ref().unwrap();
    assert!(
        startup.failure_threshold.unwrap() * startup.period_seconds.unwrap() >= 1800,
        "30 minutes to load a model"
    );
    let security = server.security_context.as_ref().unwrap();
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(
        pod.security_context.as_ref().unwrap().run_as_non_root,
        Some(true)
    );
    assert_eq!(
        mounts(server),
        [
            ("/etc/anneal/adapters", true),
            ("/tmp", false),
            ("/var/cache/anneal/kernels", false),
            ("/work", false)
        ]
    );
    assert_eq!(
        env_value(server, "ANNEAL_KERNEL_CACHE"),
        Some("/var/cache/anneal/kernels"),
        "burn-cuda's compiled kernels go to the cache volume"
    );
    assert_eq!(kernel_cache_volume(&planned).as_deref(), Some("emptyDir"));
    // The Deployment selects its pods by the labels the Service selects on.
    let selector = spec.selector.match_labels.as_ref().unwrap();
    assert_eq!(selector, &pod_labels("support-bot"));
    assert_eq!(
        spec.template.metadata.as_ref().unwrap().labels.as_ref(),
        Some(selector)
    );
    let owner = &planned.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("ModelDeployment", "7c1d-uid", Some(true))
    );
}

#[test]
fn vllm_fetches_remote_sources_first_and_mounts_claims() {
    let planned = plan_deployment(&deployment_from(VLLM), &adapters_model(), &config()).unwrap();
    let server = server(&planned);
    assert_eq!(server.image.as_deref(), Some("vllm/vllm-openai:v0.11.0"));
    assert_eq!(
        server.command.as_deref().unwrap(),
        ["python3", "-m", "vllm.entrypoints.openai.api_server"]
    );
    assert_eq!(
        args(server),
        [
            "--model",
            "/models/base",
            "--served-model-name",
            "Qwen/Qwen2.5-7B-Instruct",
            "--host",
            "0.0.0.0",
            "--port",
            "8000",
            "--tensor-parallel-size",
            "2",
            "--enable-lora",
            "--max-lora-rank",
            "64",
            "--max-loras",
            "2",
            "--lora-modules",
            "support=/models/adapters/0",
            "sales=/mnt/pvc/adapters/sales/final",
        ]
    );
    assert!(
        server.env_from.is_none(),
        "vLLM reads only what the init containers fetched"
    );
    let fetches: Vec<(&str, Vec<&str>, &str)> = pod(&planned)
        .init_containers
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c.name.as_str(),
                args(c),
                c.env_from.as_ref().unwrap()[0]
                    .secret_ref
                    .as_ref()
                    .unwrap()
                    .name
                    .as_str(),
            )
        })
        .collect();
    assert_eq!(
        fetches,
        [
            (
                "fetch-base",
                vec!["fetch", "s3://models/qwen2.5-7b", "/models/base"],
                "anneal-storage"
            ),
            (
                "fetch-adapter-0",
                vec![
                    "fetch",
                    "s3://runs/team-a/support/u1/final",
                    "/models/adapters/0"
                ],
                "anneal-storage"
            ),
        ]
    );
    for init in pod(&planned).init_containers.as_ref().unwrap() {
        assert_eq!(
            init.image.as_deref(),
            Some("anneal-fetch:1.2"),
            "trainer fetch needs no CUDA: the small image"
        );
    }
    let init = &pod(&planned).init_containers.as_ref().unwrap()[0];
    assert_eq!(
        mounts(init),
        [("/models", false), ("/work", false), ("/tmp", false)]
    );
    assert_eq!(
        mounts(server),
        [
            ("/dev/shm", false),
            ("/mnt/pvc/adapters", true),
            ("/models", true),
            ("/tmp", false),
            ("/work", false),
        ]
    );
    let claim = pod(&planned)
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find_map(|v| v.persistent_volume_claim.as_ref())
        .unwrap();
    assert_eq!(
        (claim.claim_name.as_str(), claim.read_only),
        ("adapters", Some(true))
    );
    let limits = server.resources.as_ref().unwrap().limits.clone().unwrap();
    assert_eq!(limits["amd.com/gpu"].0, "2");
}

#[test]
fn an_image_models_builtin_pod_takes_its_adapters_at_start() {
    let deployment = deployment_from(BUILTIN);
    let model = ServedModel {
        image: true,
        ..checkpoint_model("s3://models/flux.1-dev")
    };
    let planned = plan_deployment(&deployment, &model, &config()).unwrap();
    let args = args(server(&planned));
    assert_eq!(
        args[3..5],
        [
            "--adapter",
            "support-bot=s3://runs/team-a/support/u1/checkpoints/ckpt-18"
        ]
    );
    assert!(!args.contains(&"--enable-runtime-lora"), "{args:?}");
    assert!(!loads_adapters_at_runtime(&deployment, &model));
    assert_eq!(runtime_adapters(&deployment, &model).unwrap(), []);
    assert!(
        pod(&planned).readiness_gates.is_none(),
        "no gate to wait for"
    );
    assert_eq!(container_secrets(server(&planned)), ["s3-creds"]);
}

#[test]
fn a_pvc_model_is_mounted_and_zero_gpus_runs_on_the_cpu() {
    let deployment = deployment_from(&BUILTIN.replace(
        "gpus: 1\n    memory: 24Gi\n    nodeSelector: {pool: l4}\n    tolerations: [{key: dedicated, operator: Equal, value: serving, effect: NoSchedule}]",
        "gpus: 0",
    ));
    let mut model = checkpoint_model("pvc://models/qwen/0.5b");
    model.adapters[0].source.uri = "pvc://models/runs/ckpt-18".to_owned();
    let planned = plan_deployment(&deployment, &model, &config()).unwrap();
    let server = server(&planned);
    let args = args(server);
    assert_eq!(args[2], "/mnt/pvc/models/qwen/0.5b");
    assert_eq!(
        runtime_adapters(&deployment, &model).unwrap()[0].path,
        "/mnt/pvc/models/runs/ckpt-18"
    );
    assert_eq!(args.last(), Some(&"cpu"));
    assert_eq!(
        container_secrets(server),
        ["support-bot-runtime-lora"],
        "nothing read from object storage: only the adapter-change token"
    );
    assert_eq!(
        mounts(server),
        [
            ("/etc/anneal/adapters", true),
            ("/mnt/pvc/models", true),
            ("/tmp", false),
            ("/work", false)
        ],
        "one mount per claim, and the list of adapters"
    );
    assert!(server.resources.as_ref().unwrap().limits.is_none());
    assert!(pod(&planned).tolerations.is_none());
    assert_eq!(
        env_value(server, "ANNEAL_KERNEL_CACHE"),
        None,
        "no kernels on the CPU"
    );
    assert_eq!(kernel_cache_volume(&planned), None);
}

#[test]
fn the_operators_kernel_cache_claim_replaces_the_empty_dir_of_builtin_gpu_pods() {
    let config = OperatorConfig {
        kernel_cache_claim: Some("anneal-kernels".to_owned()),
        ..config()
    };
    let builtin = plan_deployment(
        &deployment_from(BUILTIN),
        &checkpoint_model("s3://models/qwen2.5-0.5b"),
        &config,
    )
    .unwrap();
    assert_eq!(
        kernel_cache_volume(&builtin).as_deref(),
        Some("anneal-kernels")
    );
    // vLLM compiles with its own toolchain: neither the claim nor the variable.
    let vllm = plan_deployment(&deployment_from(VLLM), &adapters_model(), &config).unwrap();
    assert_eq!(kernel_cache_volume(&vllm), None);
    assert_eq!(env_value(server(&vllm), "ANNEAL_KERNEL_CACHE"), None);
}

fn env_value<'a>(container: &'a Container, name: &str) -> Option<&'a str> {
    container
        .env
        .as_ref()?
        .iter()
        .find(|e| e.name == name)
        .and_then(|e| e.value.as_deref())
}

/// The pod's `kernel-cache` volume: `emptyDir`, or the name of its (writable) claim.
fn kernel_cache_volume(planned: &Deployment) -> Option<String> {
    let volume = pod(planned)
        .volumes
        .as_ref()?
        .iter()
        .find(|v| v.name == "kernel-cache")?;
    Some(match (&volume.empty_dir, &volume.persistent_volume_claim) {
        (Some(_), None) => "emptyDir".to_owned(),
        (None, Some(claim)) => {
            assert_eq!(claim.read_only, Some(false), "the server writes kernels");
            claim.claim_name.clone()
        }
        other => panic!("kernel-cache volume {other:?}"),
    })
}

/// The env of `container` as (name, value).
fn env_of(container: &Container) -> Vec<(String, String)> {
    container
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
        .collect()
}

#[test]
fn hub_models_are_fetched_through_the_model_cache_by_either_runtime() {
    let cached = OperatorConfig {
        model_cache_claim: Some("anneal-models".to_owned()),
        hf_endpoint: Some("https://hf-mirror.corp.example".to_owned()),
        ..config()
    };
    let cache_env = (
        "ANNEAL_MODEL_CACHE".to_owned(),
        "/var/cache/anneal/models".to_owned(),
    );
    let mirror = (
        "HF_ENDPOINT".to_owned(),
        "https://hf-mirror.corp.example".to_owned(),
    );

    // builtin: the server fetches it, with the credentials Secret for a token.
    let planned = plan_deployment(
        &deployment_from(BUILTIN),
        &checkpoint_model("hf://Qwen/Qwen2.5-0.5B@main"),
        &cached,
    )
    .unwrap();
    let builtin_server = server(&planned);
    assert_eq!(
        args(builtin_server)[1..3],
        ["--model", "hf://Qwen/Qwen2.5-0.5B@main"]
    );
    let env = env_of(builtin_server);
    assert!(env.contains(&cache_env) && env.contains(&mirror), "{env:?}");
    assert!(
        builtin_server.env_from.is_some(),
        "HF_TOKEN comes from the credentials Secret"
    );
    let mounts: Vec<&str> = builtin_server
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| m.mount_path.as_str())
        .collect();
    assert!(mounts.contains(&"/var/cache/anneal/models"), "{mounts:?}");

    // vllm: an init container fetches it into the cache and links the models folder.
    let planned = plan_deployment(
        &deployment_from(VLLM),
        &checkpoint_model("modelscope://qwen/Qwen2.5-0.5B-Instruct"),
        &config(),
    )
    .unwrap();
    let fetch = &pod(&planned).init_containers.as_ref().unwrap()[0];
    assert_eq!(
        fetch.args.as_deref().unwrap(),
        [
            "fetch",
            "modelscope://qwen/Qwen2.5-0.5B-Instruct",
            "/models/base"
        ]
    );
    let scratch_cache = (
        "ANNEAL_MODEL_CACHE".to_owned(),
        "/work/model-cache".to_owned(),
    );
    assert!(env_of(fetch).contains(&scratch_cache));
    assert_eq!(args(server(&planned))[..2], ["--model", "/models/base"]);
}

#[test]
fn hub_adapters_are_fetched_through_the_cache_by_either_runtime() {
    let mut model = adapters_model();
    model.adapters[0].source = source("hf://team/support-lora@v2", "spec.model.adapters[0].uri");
    let planned = plan_deployment(&deployment_from(BUILTIN), &model, &config()).unwrap();
    let builtin = server(&planned);
    assert_eq!(
        runtime_adapters(&deployment_from(BUILTIN), &model).unwrap()[0].path,
        "hf://team/support-lora@v2"
    );
    assert!(
        env_of(builtin)
            .iter()
            .any(|(name, _)| name == "ANNEAL_MODEL_CACHE")
    );

    let planned = plan_deployment(&deployment_from(VLLM), &model, &config()).unwrap();
    let fetches: Vec<Vec<String>> = pod(&planned)
        .init_containers
        .iter()
        .flatten()
        .map(|c| c.args.clone().unwrap())
        .collect();
    assert!(
        fetches.contains(&vec![
            "fetch".to_owned(),
            "hf://team/support-lora@v2".to_owned(),
            "/models/adapters/0".to_owned()
        ]),
        "{fetches:?}"
    );
}

#[test]
fn sources_and_names_the_pods_cannot_use_are_refused_with_their_field() {
    let builtin = deployment_from(BUILTIN);
    let vllm = deployment_from(VLLM);
    let cases = [
        (
            &builtin,
            "file:///models/x",
            "FineTuneJob support spec.baseModel.source: file:// is for local mode",
        ),
        (
            &builtin,
            "gs://bucket/model",
            "FineTuneJob support spec.baseModel.source: gs:// sources are not read by runtime builtin",
        ),
        (
            &builtin,
            "pvc://claim-only",
            "FineTuneJob support spec.baseModel.source: pvc:// needs a claim name and a path",
        ),
        (
            &vllm,
            "az://container/model",
            "FineTuneJob support spec.baseModel.source: az:// sources are not read by runtime vllm",
        ),
    ];
    for (deployment, uri, expected) in cases {
        let error = check_servable(deployment, &checkpoint_model(uri), &config()).unwrap_err();
        assert!(error.to_string().starts_with(expected), "{uri}: {error}");
        assert_eq!(error.user_reason(), Some("UnsupportedSource"));
    }
    let mut dotted = deployment_from(BUILTIN);
    dotted.metadata.name = Some("support.bot".to_owned());
    let error = check_servable(&dotted, &checkpoint_model("s3://m/x"), &config()).unwrap_err();
    assert_eq!(
        error,
        ServingPlanError::InvalidName("support.bot".to_owned())
    );
    assert_eq!(error.user_reason(), Some("InvalidName"));

    // An image the install does not allow is refused before anything is planned.
    let mut foreign = deployment_from(BUILTIN);
    foreign.spec.resources.image = Some("docker.io/someone/reads-secrets:1".to_owned());
    let model = checkpoint_model("s3://m/x");
    let error = check_servable(&foreign, &model, &config()).unwrap_err();
    assert_eq!(error.user_reason(), Some("ImageNotAllowed"));
    assert!(
        error
            .to_string()
            .starts_with("spec.resources.image: docker.io/someone/reads-secrets:1")
    );
    assert!(plan_deployment(&foreign, &model, &config()).is_err());
    assert_eq!(
        endpoint("support-bot", "team-a"),
        "http://support-bot.team-a.svc:8000/v1"
    );
}

#[test]
fn the_cluster_examples_are_servable() {
    use crate::modeldeployment::model_resolution::{Resolution, resolve_model};
    use anneal_crds::finetunejob::{CheckpointStatus, FineTuneJobStatus, JobPhase};
    let read = |name: &str| {
        std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../examples/cluster")
                .join(name),
        )
        .unwrap()
    };
    let adapters = deployment_from(&read("base-with-adapters.yaml"));
    let Resolution::Resolved(model) = resolve_model(&adapters, None, &config()) else {
        panic!("base-with-adapters.yaml does not resolve");
    };
    let planned = plan_deployment(&adapters, &model, &config()).unwrap();
    assert_eq!(
        pod(&planned).init_containers.as_ref().unwrap().len(),
        3,
        "the base model and two adapters are fetched"
    );

    let mut job = anneal_crds::manifest::parse_finetunejob(&read("support-sft-s3.yaml")).unwrap();
    job.metadata.uid = Some("u".to_owned());
    job.status = Some(FineTuneJobStatus {
        phase: Some(JobPhase::Succeeded),
        checkpoints: [("ckpt-200", 0.71), ("ckpt-400", 0.64), ("ckpt-600", 0.66)]
            .map(|(name, loss)| CheckpointStatus {
                name: name.to_owned(),
                uri: format!(
                    "s3://checkpoints/anneal/team-support/pedalhop-support/u/checkpoints/{name}"
                ),
                valid_loss: Some(loss),
                ..CheckpointStatus::default()
            })
            .to_vec(),
        ..FineTuneJobStatus::default()
    });
    let support = deployment_from(&read("support-deployment.yaml"));
    let Resolution::Resolved(model) = resolve_model(&support, Some(&job), &config()) else {
        panic!("support-deployment.yaml does not resolve");
    };
    assert_eq!(
        model.model_id,
        "ft:qwen2.5-7b-instruct:pedalhop-support:ckpt-400"
    );
    let planned = plan_deployment(&support, &model, &config()).unwrap();
    let loaded = runtime_adapters(&support, &model).unwrap();
    assert_eq!(
        (loaded[0].name.as_str(), loaded[0].path.as_str()),
        (
            "pedalhop-support",
            "s3://checkpoints/anneal/team-support/pedalhop-support/u/checkpoints/ckpt-400"
        )
    );
    assert_eq!(
        container_secret(server(&planned)),
        Some("anneal-storage"),
        "the job's credentials"
    );
}

fn container_secrets(container: &Container) -> Vec<&str> {
    (container.env_from.iter().flatten())
        .filter_map(|from| Some(from.secret_ref.as_ref()?.name.as_str()))
        .collect()
}

fn container_secret(container: &Container) -> Option<&str> {
    container
        .env_from
        .as_ref()?
        .first()?
        .secret_ref
        .as_ref()
        .map(|s| s.name.as_str())
}

#[test]
fn gpus_that_would_idle_or_cannot_hold_the_model_are_refused_before_any_pod() {
    // Written past the webhook: the operator refuses it too.
    let mut two = deployment_from(BUILTIN);
    two.spec.resources.gpus = 2;
    let error = check_servable(&two, &checkpoint_model("s3://m"), &config()).unwrap_err();
    assert_eq!(error.user_reason(), Some("InvalidSpec"));
    assert!(
        error
            .to_string()
            .starts_with("spec.resources.gpus: runtime builtin serves on one GPU, got 2"),
        "{error}"
    );
    // Qwen2.5-72B on one GPU of the install's 80 GiB.
    let large = ServedModel {
        base_model: "Qwen/Qwen2.5-72B-Instruct".to_owned(),
        ..checkpoint_model("s3://models/qwen2.5-72b")
    };
    let config = OperatorConfig {
        gpu_memory: ByteSize::gib(80),
        ..config()
    };
    let error = check_servable(&deployment_from(BUILTIN), &large, &config).unwrap_err();
    assert_eq!(error.user_reason(), Some("InsufficientGpuMemory"));
    assert!(
        error
            .to_string()
            .ends_with("use runtime: vllm with gpus: 2 (--tensor-parallel-size 2)"),
        "{error}"
    );
    // On vLLM across two GPUs it loads; an unknown model is not judged.
    let mut sharded = deployment_from(VLLM);
    sharded.spec.resources.gpus = 2;
    check_servable(&sharded, &large, &config).unwrap();
    let unknown = ServedModel {
        base_model: "acme/house-model-90b".to_owned(),
        ..large
    };
    check_servable(&deployment_from(BUILTIN), &unknown, &config).unwrap();
}

#[test]
fn a_flux_image_model_is_refused_on_vllm_and_planned_on_builtin() {
    let flux = VLLM.replace(
        "{name: Qwen/Qwen2.5-7B-Instruct, source: \"s3://models/qwen2.5-7b\"}",
        "{name: black-forest-labs/FLUX.1-dev, source: \"s3://models/flux1-dev\"}",
    );
    assert!(flux.contains("FLUX.1-dev"));
    let image_model = ServedModel {
        image: true,
        ..adapters_model()
    };
    let error = check_servable(&deployment_from(&flux), &image_model, &config()).unwrap_err();
    assert_eq!(error.user_reason(), Some("UnsupportedRuntime"));
    let message = error.to_string();
    assert!(
        message.starts_with(
            "spec.runtime vllm: the model is a FLUX image pipeline (spec.model.baseModel.name black-forest-labs/FLUX.1-dev)"
        ) && message.contains("use runtime: builtin"),
        "{message}"
    );
    // Told by spec.task, the message says so.
    let mut told = deployment_from(&flux);
    told.spec.task = Some(anneal_crds::finetunejob::Task::TextToImage);
    let message = check_servable(&told, &image_model, &config())
        .unwrap_err()
        .to_string();
    assert!(message.contains("(spec.task text-to-image)"), "{message}");
    let builtin =
        (flux.replace("runtime: vllm", "runtime: builtin")).replace("gpus: 2,", "gpus: 1,");
    check_servable(&deployment_from(&builtin), &image_model, &config()).unwrap();
    // A chat model on vLLM is planned, whatever its name.
    check_servable(&deployment_from(&flux), &adapters_model(), &config()).unwrap();
}

#[test]
fn the_adapters_list_is_what_the_operator_loads_into_running_pods() {
    let deployment = deployment_from(BUILTIN);
    let model = checkpoint_model("s3://models/qwen2.5-0.5b");
    // The pods mount it optionally, so a pod is not held back before the operator
    // first writes it.
    let pods = plan_deployment(&deployment, &model, &config()).unwrap();
    let mounted = (pod(&pods).volumes.iter().flatten())
        .find(|v| v.name == "adapters")
        .and_then(|v| v.config_map.as_ref())
        .unwrap();
    assert_eq!(
        (mounted.name.as_str(), mounted.optional),
        ("support-bot-adapters", Some(true))
    );
    let wanted = runtime_adapters(&deployment, &model).unwrap();
    let planned = plan_adapters_config_map(&deployment, &wanted).unwrap();
    assert_eq!(
        planned.metadata.name.as_deref(),
        Some("support-bot-adapters")
    );
    assert_eq!(
        planned.metadata.owner_references.as_ref().unwrap()[0].uid,
        "7c1d-uid"
    );
    let listed: serde_json::Value =
        serde_json::from_str(&planned.data.as_ref().unwrap()["adapters.json"]).unwrap();
    let expected: Vec<serde_json::Value> = (wanted.iter())
        .map(|a| serde_json::json!({"lora_name": a.name, "lora_path": a.path}))
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(listed, serde_json::Value::Array(expected));
}
