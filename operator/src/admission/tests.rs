//! The webhook over its router with AdmissionReview payloads as the API server sends
//! them, and a fake access reviewer that knows which user may get which object.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use http::Request;
use k8s_openapi::api::authentication::v1::UserInfo;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::*;

/// One question asked: (user, namespace, resource, name).
type Question = (String, String, String, String);

/// Grants `get` on the (user, resource, name) triples it holds; records each question;
/// fails every question when `broken`.
#[derive(Clone, Default)]
struct FakeReviewer {
    grants: Arc<BTreeSet<(String, String, String)>>,
    asked: Arc<Mutex<Vec<Question>>>,
    broken: bool,
}

impl FakeReviewer {
    fn granting(grants: &[(&str, &str, &str)]) -> Self {
        Self {
            grants: Arc::new(
                grants
                    .iter()
                    .map(|(u, r, n)| ((*u).to_owned(), (*r).to_owned(), (*n).to_owned()))
                    .collect(),
            ),
            ..Self::default()
        }
    }
}

impl AccessReviewer for FakeReviewer {
    async fn may_get(
        &self,
        user: &UserInfo,
        namespace: &str,
        reference: &Reference,
    ) -> Result<bool, kube::Error> {
        let name = user.username.clone().unwrap_or_default();
        self.asked.lock().unwrap().push((
            name.clone(),
            namespace.to_owned(),
            reference.resource.to_owned(),
            reference.name.clone(),
        ));
        if self.broken {
            return Err(kube::Error::Service("the API server is away".into()));
        }
        Ok(self
            .grants
            .contains(&(name, reference.resource.to_owned(), reference.name.clone())))
    }
}

fn job(spec_extra: &str) -> Value {
    let yaml = format!(
        r#"
apiVersion: anneal.dev/v1alpha1
kind: FineTuneJob
metadata: {{name: support, namespace: team-a}}
spec:
  baseModel: {{name: anneal-tiny, source: "s3://models/tiny"}}
  dataset: {{train: "s3://data/chats.jsonl"}}
  output: {{uri: "s3://runs", credentialsSecret: team-creds}}
{spec_extra}"#
    );
    serde_yaml_ng::from_str(&yaml).unwrap()
}

fn review_of(kind: &str, operation: &str, user: &str, object: Value, old: Option<Value>) -> Value {
    let (resource, plural) = match kind {
        "FineTuneJob" => ("FineTuneJob", "finetunejobs"),
        "ModelEvaluation" => ("ModelEvaluation", "modelevaluations"),
        _ => ("ModelDeployment", "modeldeployments"),
    };
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "4f1c-review",
            "kind": {"group": "anneal.dev", "version": "v1alpha1", "kind": resource},
            "resource": {"group": "anneal.dev", "version": "v1alpha1", "resource": plural},
            "name": object["metadata"]["name"],
            "namespace": "team-a",
            "operation": operation,
            "userInfo": {"username": user, "groups": ["system:authenticated"]},
            "object": object,
            "oldObject": old,
            "dryRun": false,
        }
    })
}

async fn send(router: &Router, path: &str, review: &Value) -> Value {
    let response = router
        .clone()
        .oneshot(
            Request::post(path)
                .header("content-type", "application/json")
                .body(Body::from(review.to_string()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), http::StatusCode::OK);
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let answer: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(answer["kind"], "AdmissionReview");
    assert_eq!(
        answer["response"]["uid"], "4f1c-review",
        "the request's uid comes back"
    );
    answer["response"].clone()
}

fn message(response: &Value) -> &str {
    response["status"]["message"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn a_job_naming_a_secret_its_author_may_not_read_is_refused() {
    let reviewer = FakeReviewer::granting(&[("alice", "secrets", "team-creds")]);
    let router = admission_router(reviewer.clone(), OperatorConfig::default());

    let allowed = send(
        &router,
        "/validate/finetunejobs",
        &review_of("FineTuneJob", "CREATE", "alice", job(""), None),
    )
    .await;
    assert_eq!(allowed["allowed"], true, "{allowed}");

    let refused = send(
        &router,
        "/validate/finetunejobs",
        &review_of("FineTuneJob", "CREATE", "mallory", job(""), None),
    )
    .await;
    assert_eq!(refused["allowed"], false);
    assert_eq!(
        message(&refused),
        "spec.output.credentialsSecret: mallory may not get secrets team-creds in namespace team-a, so this spec may not name it"
    );
    let asked = reviewer.asked.lock().unwrap().clone();
    assert_eq!(
        asked.last().unwrap(),
        &(
            "mallory".to_owned(),
            "team-a".to_owned(),
            "secrets".to_owned(),
            "team-creds".to_owned()
        )
    );
}

#[tokio::test]
async fn every_field_error_and_refusal_comes_back_at_once() {
    let router = admission_router(FakeReviewer::default(), OperatorConfig::default());
    let bad = job(
        "  hyperparameters: {learningRate: 5, epochs: 0}\n  resources: {image: \"docker.io/x/y:1\"}\n",
    );
    let refused = send(
        &router,
        "/validate/finetunejobs",
        &review_of("FineTuneJob", "CREATE", "bob", bad, None),
    )
    .await;
    assert_eq!(refused["allowed"], false);
    let message = message(&refused);
    for expected in [
        "spec.hyperparameters.learningRate",
        "spec.hyperparameters.epochs",
        "spec.resources.image: docker.io/x/y:1 is not an image this operator runs",
        "spec.output.credentialsSecret: bob may not get secrets team-creds",
    ] {
        assert!(
            message.contains(expected),
            "{expected} missing from: {message}"
        );
    }
}

#[tokio::test]
async fn an_access_check_that_cannot_be_made_refuses() {
    let reviewer = FakeReviewer {
        broken: true,
        ..FakeReviewer::default()
    };
    let router = admission_router(reviewer, OperatorConfig::default());
    let refused = send(
        &router,
        "/validate/finetunejobs",
        &review_of("FineTuneJob", "CREATE", "alice", job(""), None),
    )
    .await;
    assert_eq!(refused["allowed"], false);
    assert!(
        message(&refused).contains("could not check whether alice may get secrets team-creds"),
        "{}",
        message(&refused)
    );
}

#[tokio::test]
async fn updates_check_only_what_they_name_anew_and_deletes_pass() {
    let reviewer = FakeReviewer::default();
    let router = admission_router(reviewer.clone(), OperatorConfig::default());
    // The operator adding its finalizer: the spec is unchanged.
    let mut with_finalizer = job("");
    with_finalizer["metadata"]["finalizers"] = json!(["anneal.dev/cleanup"]);
    let unchanged = send(
        &router,
        "/validate/finetunejobs",
        &review_of(
            "FineTuneJob",
            "UPDATE",
            "system:serviceaccount:anneal-system:anneal-operator",
            with_finalizer,
            Some(job("")),
        ),
    )
    .await;
    assert_eq!(unchanged["allowed"], true, "{unchanged}");
    // Suspending: the spec changes, but names nothing new.
    let suspended = send(
        &router,
        "/validate/finetunejobs",
        &review_of(
            "FineTuneJob",
            "UPDATE",
            "carol",
            job("  suspend: true\n"),
            Some(job("")),
        ),
    )
    .await;
    assert_eq!(suspended["allowed"], true, "{suspended}");
    assert!(
        reviewer.asked.lock().unwrap().is_empty(),
        "nothing new was named"
    );
    let deleted = send(
        &router,
        "/validate/finetunejobs",
        &review_of("FineTuneJob", "DELETE", "carol", job(""), None),
    )
    .await;
    assert_eq!(deleted["allowed"], true);
}

#[tokio::test]
async fn a_deployment_of_someone_elses_job_needs_read_access_to_it() {
    let reviewer = FakeReviewer::granting(&[("alice", "finetunejobs", "support")]);
    let router = admission_router(reviewer, OperatorConfig::default());
    let deployment: Value = serde_yaml_ng::from_str(
        r#"
apiVersion: anneal.dev/v1alpha1
kind: ModelDeployment
metadata: {name: chat, namespace: team-a}
spec:
  model: {fineTuneJob: {name: support}}
"#,
    )
    .unwrap();
    let allowed = send(
        &router,
        "/validate/modeldeployments",
        &review_of(
            "ModelDeployment",
            "CREATE",
            "alice",
            deployment.clone(),
            None,
        ),
    )
    .await;
    assert_eq!(allowed["allowed"], true, "{allowed}");
    let refused = send(
        &router,
        "/validate/modeldeployments",
        &review_of("ModelDeployment", "CREATE", "eve", deployment, None),
    )
    .await;
    assert_eq!(
        message(&refused),
        "spec.model.fineTuneJob.name: eve may not get finetunejobs.anneal.dev support in namespace team-a, so this spec may not name it"
    );
}

/// An evaluation sends an endpoint's key to the URL its author writes: naming the
/// key's Secret needs read access to it, as do the jobs and deployments it compares.
#[tokio::test]
async fn an_evaluation_may_name_only_the_secrets_and_jobs_its_author_may_read() {
    let reviewer = FakeReviewer::granting(&[
        ("alice", "secrets", "hosted-key"),
        ("alice", "finetunejobs", "support"),
        ("eve", "finetunejobs", "support"),
    ]);
    let router = admission_router(reviewer, OperatorConfig::default());
    let evaluation: Value = serde_yaml_ng::from_str(
        r#"
apiVersion: anneal.dev/v1alpha1
kind: ModelEvaluation
metadata: {name: compare, namespace: team-a}
spec:
  models:
    - {name: tuned, fineTuneJob: {name: support}}
  dataset: {uri: "s3://data/held-out.jsonl"}
  metrics:
    - judge:
        model: {endpoint: {url: "https://judge.example.com/v1", model: j, credentialsSecret: hosted-key}}
        rubric: Good?
"#,
    )
    .unwrap();
    let review =
        |user: &str, object: Value| review_of("ModelEvaluation", "CREATE", user, object, None);
    let allowed = send(
        &router,
        "/validate/modelevaluations",
        &review("alice", evaluation.clone()),
    )
    .await;
    assert_eq!(allowed["allowed"], true, "{allowed}");
    let refused = send(
        &router,
        "/validate/modelevaluations",
        &review("eve", evaluation.clone()),
    )
    .await;
    assert_eq!(
        message(&refused),
        "spec.metrics[0].judge.model.endpoint.credentialsSecret: eve may not get secrets hosted-key in namespace team-a, so this spec may not name it"
    );
    // Field errors come back all at once, as for the other kinds.
    let mut bad = evaluation;
    bad["spec"]["baseline"] = json!("nobody");
    let refused = send(&router, "/validate/modelevaluations", &review("alice", bad)).await;
    assert!(
        message(&refused).contains("spec.baseline"),
        "{}",
        message(&refused)
    );
}

#[tokio::test]
async fn an_object_that_does_not_parse_is_refused_under_its_uid() {
    let router = admission_router(FakeReviewer::default(), OperatorConfig::default());
    let mut broken = job("");
    broken["spec"]["hyperparameters"] = json!({"learningRate": "fast"});
    let refused = send(
        &router,
        "/validate/finetunejobs",
        &review_of("FineTuneJob", "CREATE", "alice", broken, None),
    )
    .await;
    assert_eq!(refused["allowed"], false);
    assert!(
        message(&refused).starts_with("the object does not parse: "),
        "{}",
        message(&refused)
    );
}

#[test]
fn the_access_review_asks_for_the_requesting_user() {
    let user = UserInfo {
        username: Some("alice".into()),
        uid: Some("u-1".into()),
        groups: Some(vec!["team-a-devs".into()]),
        extra: None,
    };
    let reference = Reference {
        field: "spec.output.credentialsSecret".into(),
        group: "",
        resource: "secrets",
        name: "team-creds".into(),
    };
    let review = access_review(&user, "team-a", &reference);
    let asked = serde_json::to_value(&review.spec).unwrap();
    assert_eq!(
        asked,
        json!({
            "user": "alice", "uid": "u-1", "groups": ["team-a-devs"],
            "resourceAttributes": {"namespace": "team-a", "verb": "get", "group": "", "resource": "secrets", "name": "team-creds"}
        })
    );
}

/// The kube-backed reviewer against a stand-in API server route: it posts the review
/// for the requesting user and reads `status.allowed`, and a refusal by the API server
/// is an error (which the webhook turns into a refusal), never a grant.
#[tokio::test]
async fn the_kube_reviewer_posts_the_review_and_reads_its_answer() {
    use axum::routing::post;

    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let recorded = seen.clone();
    let api = Router::new().route(
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        post(move |axum::Json(mut review): axum::Json<Value>| {
            let recorded = recorded.clone();
            async move {
                recorded.lock().unwrap().push(review.clone());
                let user = review["spec"]["user"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                if user == "broken" {
                    return (
                        http::StatusCode::INTERNAL_SERVER_ERROR,
                        axum::Json(json!({
                            "kind": "Status", "apiVersion": "v1", "status": "Failure",
                            "message": "etcd is away", "reason": "InternalError", "code": 500
                        })),
                    );
                }
                review["status"] = json!({"allowed": user == "alice"});
                (http::StatusCode::CREATED, axum::Json(review))
            }
        }),
    );
    let reviewer = KubeAccessReviewer::new(kube::Client::new(api, "default"));
    let reference = Reference {
        field: "spec.output.credentialsSecret".into(),
        group: "",
        resource: "secrets",
        name: "team-creds".into(),
    };
    let user = |name: &str| UserInfo {
        username: Some(name.into()),
        groups: Some(vec!["devs".into()]),
        ..UserInfo::default()
    };
    assert!(
        reviewer
            .may_get(&user("alice"), "team-a", &reference)
            .await
            .unwrap()
    );
    assert!(
        !reviewer
            .may_get(&user("mallory"), "team-a", &reference)
            .await
            .unwrap()
    );
    assert!(
        reviewer
            .may_get(&user("broken"), "team-a", &reference)
            .await
            .is_err()
    );
    let first = seen.lock().unwrap()[0].clone();
    assert_eq!(first["spec"]["groups"], json!(["devs"]));
    assert_eq!(
        first["spec"]["resourceAttributes"],
        json!({"namespace": "team-a", "verb": "get", "group": "", "resource": "secrets", "name": "team-creds"})
    );
}
