//! What the console's tests share: a job trained with a sample prompt and its final
//! checkpoint deployed, the API server's reviews answered (who a token is,
//! TokenReviews; what each viewer may do, SubjectAccessReviews), and a served model's
//! own greedy answer to compare the playground's with.

use std::time::{Duration, Instant};

use anneal_crds::ModelDeployment;
use anneal_crds::finetunejob::{FineTuneJobStatus, JobPhase};
use anneal_crds::modeldeployment::DeploymentPhase;
use anneal_fake_apiserver::ResourceType;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;

use crate::operator_harness::{NAMESPACE, World, job_yaml};

/// How long a tiny job may take to train, or its deployment to be ready.
pub const TRAINING: Duration = Duration::from_secs(240);

/// Trains the job `story` (`epochs`; at `learning_rate` when given) with one sample
/// prompt, `prompt`, and returns its status once it succeeded.
pub async fn train_story(
    world: &World,
    epochs: u32,
    learning_rate: Option<&str>,
    prompt: &str,
) -> FineTuneJobStatus {
    let mut yaml = job_yaml("story", epochs, 2, "").replace(
        "everySteps: 2}",
        &format!(
            "everySteps: 2, samplePrompts: [{{messages: [{{role: user, content: \"{prompt}\"}}]}}]}}"
        ),
    );
    if let Some(rate) = learning_rate {
        yaml = yaml.replace("learningRate: 0.003", &format!("learningRate: {rate}"));
    }
    assert!(yaml.contains("samplePrompts"));
    world.apply(&yaml).await;
    let job = world
        .wait_for("story", TRAINING, "Succeeded", |s| {
            s.phase == Some(JobPhase::Succeeded) && s.result.is_some()
        })
        .await;
    job.status.unwrap()
}

/// Deploys the final checkpoint of `story` as `chat` (the kubelet runs its pod when
/// told to run deployments) and returns its model id once it is ready.
pub async fn deploy_story(world: &World) -> String {
    deploy_final(world, "story", "chat").await
}

/// Deploys the final checkpoint of the job `job` as `name` and returns its model id
/// once it is ready.
pub async fn deploy_final(world: &World, job: &str, name: &str) -> String {
    let manifest = format!(
        "apiVersion: anneal.dev/v1alpha1\nkind: ModelDeployment\n\
         metadata: {{name: {name}, namespace: {NAMESPACE}}}\n\
         spec:\n  model:\n    fineTuneJob: {{name: {job}, checkpoint: final}}\n  \
         replicas: 1\n  runtime: builtin\n  resources: {{gpus: 0}}\n"
    );
    let deployments: Api<ModelDeployment> = Api::namespaced(world.client(), NAMESPACE);
    let deployment = anneal_crds::manifest::parse_modeldeployment(&manifest).unwrap();
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap();
    let started = Instant::now();
    loop {
        let status = deployments
            .get(name)
            .await
            .unwrap()
            .status
            .unwrap_or_default();
        if status.phase == Some(DeploymentPhase::Ready) {
            return status.model_id.unwrap();
        }
        assert!(started.elapsed() < TRAINING, "not ready: {status:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Answers the API server's reviews as a cluster would: `alice-token` is alice (group
/// `ml`), `bob-token` is bob. In the test namespace only, alice may get, list and
/// patch FineTuneJobs (not delete them) and get, list and create ModelDeployments;
/// bob may do nothing.
pub fn answer_reviews(world: &World) {
    world.api.register(ResourceType::cluster_scoped(
        "authentication.k8s.io",
        "v1",
        "tokenreviews",
        "TokenReview",
    ));
    world.api.register(ResourceType::cluster_scoped(
        "authorization.k8s.io",
        "v1",
        "subjectaccessreviews",
        "SubjectAccessReview",
    ));
    world.api.answer_reviews("tokenreviews", |review| {
        match review["spec"]["token"].as_str() {
            Some("alice-token") => {
                json!({"authenticated": true, "user": {"username": "alice", "groups": ["ml"]}})
            }
            Some("bob-token") => json!({"authenticated": true, "user": {"username": "bob"}}),
            _ => json!({"authenticated": false}),
        }
    });
    world.api.answer_reviews("subjectaccessreviews", |review| {
        let spec = &review["spec"];
        let attributes = &spec["resourceAttributes"];
        let verbs: &[&str] = match attributes["resource"].as_str() {
            Some("finetunejobs") => &["get", "list", "patch"],
            Some("modeldeployments") => &["get", "list", "create"],
            _ => &[],
        };
        let allowed = spec["user"] == "alice"
            && spec["groups"] == json!(["ml"])
            && attributes["group"] == "anneal.dev"
            && attributes["namespace"] == NAMESPACE
            && verbs.contains(&attributes["verb"].as_str().unwrap_or_default());
        json!({"allowed": allowed})
    });
}

/// What the server at `server` answers `model`, greedily, to `messages` (an OpenAI
/// `messages` array), in at most `max_tokens`.
pub async fn greedy_answer(
    server: &str,
    model: &str,
    messages: serde_json::Value,
    max_tokens: u32,
) -> String {
    let body = json!({"model": model, "temperature": 0, "top_p": 1,
        "max_tokens": max_tokens, "messages": messages});
    let reply = reqwest::Client::new()
        .post(format!("{server}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let reply: serde_json::Value = serde_json::from_str(&reply).unwrap();
    let answer = reply["choices"][0]["message"]["content"].as_str();
    answer
        .unwrap_or_else(|| panic!("no answer: {reply}"))
        .to_owned()
}
