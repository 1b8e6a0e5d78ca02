//! A ModelDeployment's adapters change while its pod runs: the operator loads an added
//! adapter into the running `trainer serve` and unloads a removed one, the pod (the
//! same uid, never restarted) keeps serving throughout, a reply streaming on the
//! removed adapter runs to its end, and `status.replicas` says what the pod serves;
//! and a server restarted in its pod is Ready again only with the adapters it served.

use super::*;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::{Patch, PatchParams};

/// The deployment's adapters, as a merge patch of its spec sets them.
async fn set_adapters(deployments: &Api<ModelDeployment>, adapters: Value) {
    deployments
        .patch(
            "tutor",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"model": {"adapters": adapters}}})),
        )
        .await
        .unwrap();
}

/// Name and uid of the one serving pod.
async fn the_pod(world: &World) -> (String, String) {
    let pods: Api<Pod> = Api::namespaced(world.client(), NAMESPACE);
    let listed = pods
        .list(&ListParams::default().labels("anneal.dev/modeldeployment=tutor"))
        .await
        .unwrap()
        .items;
    assert_eq!(listed.len(), 1, "one serving pod");
    (listed[0].name_any(), listed[0].uid().unwrap())
}

async fn ask(url: &str, model: &str) -> reqwest::StatusCode {
    post_json(
        &format!("{url}/v1/chat/completions"),
        &json!({"model": model, "messages": [{"role": "user", "content": QUESTION}],
                "temperature": 0, "max_tokens": 4}),
    )
    .await
    .status()
}

/// Drops `early` from the spec while a 900-token reply streams on it: the reply runs
/// to its end before the pod stops serving `early`. The status once it has.
async fn remove_while_streaming(
    world: &World,
    deployments: &Api<ModelDeployment>,
    url: &str,
    late: &str,
) -> ModelDeploymentStatus {
    let messages = json!([{"role": "user", "content": QUESTION}]);
    let reader = stream_in_background(url, "early", &messages, 900).await;
    let removed_at = Instant::now();
    set_adapters(deployments, json!([{"name": "late", "uri": late}])).await;
    let one = wait_for_deployment(world, "tutor", "serving the late adapter alone", |s| {
        s.observed_generation == Some(3)
            && s.replicas.len() == 1
            && s.replicas[0].adapters == ["late"]
    })
    .await;
    let unloaded_at = Instant::now();
    let (streamed, finished) = reader.await.unwrap();
    assert!(
        removed_at < finished,
        "the reply was no longer in flight when the adapter was removed; make it longer"
    );
    assert!(
        finished <= unloaded_at,
        "the adapter went before its reply ended"
    );
    assert!(streamed.trim_end().ends_with("data: [DONE]"), "{streamed}");
    assert!(
        streamed.contains(r#""completion_tokens":900"#),
        "the reply did not run to its end:\n{streamed}"
    );
    one
}

/// The adapters the deployment's ConfigMap lists for its pods to load at start.
async fn adapters_list(world: &World) -> Value {
    let config_maps: Api<ConfigMap> = Api::namespaced(world.client(), NAMESPACE);
    let listed = config_maps.get("tutor-adapters").await.unwrap();
    serde_json::from_str(&listed.data.unwrap()["adapters.json"]).unwrap()
}

/// Restarts `pod`'s container and waits until it has restarted once and is Ready.
async fn restart_until_ready(world: &World, pod: &str) {
    world.kubelet.restart_container(pod);
    let pods: Api<Pod> = Api::namespaced(world.client(), NAMESPACE);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = pods.get(pod).await.unwrap().status.unwrap_or_default();
        let restarted = (status.container_statuses.iter().flatten()).any(|c| c.restart_count == 1);
        let ready =
            (status.conditions.iter().flatten()).any(|c| c.type_ == "Ready" && c.status == "True");
        if restarted && ready {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the restarted pod never became Ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn adapters_are_added_and_removed_on_a_running_pod_after_its_reply_in_flight() {
    let world = World::start(&quickstart_lines(16)).await;
    world.kubelet.run_deployments();
    let operator = world.start_operator(None).await;
    // A short run that leaves a checkpoint per step: the adapters to serve.
    world.apply(&job_yaml("lessons", 1, 1, "")).await;
    let done = world
        .wait_for("lessons", TRAINING, "Succeeded", |s| {
            s.phase == Some(JobPhase::Succeeded) && s.result.is_some()
        })
        .await;
    let checkpoints = done.status.unwrap().checkpoints;
    assert!(checkpoints.len() >= 2, "{checkpoints:?}");
    let (early, late) = (&checkpoints[0].uri, &checkpoints.last().unwrap().uri);

    let deployments = deploy(
        &world,
        &format!(
            r#"apiVersion: anneal.dev/v1alpha1
kind: ModelDeployment
metadata: {{name: tutor, namespace: {NAMESPACE}}}
spec:
  model:
    baseModel: {{name: anneal-tiny, source: "s3://anneal-e2e/models/anneal-tiny"}}
    adapters:
      - {{name: early, uri: "{early}"}}
  replicas: 1
  runtime: builtin
  resources: {{gpus: 0}}
"#
        ),
    )
    .await;
    let ready = wait_for_deployment(&world, "tutor", "Ready with its adapter", |s| {
        s.phase == Some(DeploymentPhase::Ready) && s.replicas.iter().all(|r| r.in_sync)
    })
    .await;
    let (pod, uid) = the_pod(&world).await;
    assert_eq!(ready.replicas.len(), 1);
    assert_eq!(
        (
            ready.replicas[0].pod.as_str(),
            ready.replicas[0].adapters.as_slice()
        ),
        (pod.as_str(), ["early".to_owned()].as_slice())
    );
    assert_eq!(condition(&ready, "AdaptersLoaded"), ("True", "Loaded"));
    let url = world.kubelet.deployment_url("tutor").unwrap();
    assert_eq!(served_ids(&url).await, ["anneal-tiny", "early"]);
    assert_eq!(ask(&url, "early").await, 200);
    assert_eq!(ask(&url, "late").await, 404);

    // Added: loaded into the running pod.
    set_adapters(
        &deployments,
        json!([{"name": "early", "uri": early}, {"name": "late", "uri": late}]),
    )
    .await;
    let both = wait_for_deployment(&world, "tutor", "serving both adapters", |s| {
        s.observed_generation == Some(2)
            && s.replicas.len() == 1
            && s.replicas[0].adapters == ["early", "late"]
    })
    .await;
    assert!(both.replicas[0].in_sync);
    assert_eq!(
        the_pod(&world).await,
        (pod.clone(), uid.clone()),
        "the same pod"
    );
    assert_eq!(served_ids(&url).await, ["anneal-tiny", "early", "late"]);
    assert_eq!(ask(&url, "late").await, 200);

    // Removed while a long reply streams on it: the reply runs to its end, then the
    // adapter is gone.
    let one = remove_while_streaming(&world, &deployments, &url, late).await;
    assert_eq!(condition(&one, "AdaptersLoaded"), ("True", "Loaded"));
    assert_eq!(served_ids(&url).await, ["anneal-tiny", "late"]);
    assert_eq!(ask(&url, "early").await, 404);
    assert_eq!(ask(&url, "late").await, 200);
    assert_eq!(
        the_pod(&world).await,
        (pod.clone(), uid),
        "the same pod throughout"
    );
    assert_eq!(
        world.kubelet.exit_code(&pod),
        None,
        "its server never stopped"
    );

    // A server restarted in its pod (a crash, a failed liveness probe) comes back with
    // its adapters before it is Ready again, from the list the operator keeps in a
    // ConfigMap: shown with the operator stopped, so nothing loads them afterwards.
    assert_eq!(
        adapters_list(&world).await,
        json!([{"lora_name": "late", "lora_path": late}])
    );
    operator.stop().await;
    restart_until_ready(&world, &pod).await;
    assert_eq!(served_ids(&url).await, ["anneal-tiny", "late"]);
    assert_eq!(ask(&url, "late").await, 200);
    assert_eq!(
        the_pod(&world).await.0,
        pod,
        "the same pod, its container restarted"
    );
}
