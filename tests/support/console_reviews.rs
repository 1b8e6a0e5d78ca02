//! The API server's reviews as the console's tests need them answered: who a token
//! is (TokenReviews) and what each viewer may do (SubjectAccessReviews).

use anneal_fake_apiserver::ResourceType;
use serde_json::json;

use crate::operator_harness::{NAMESPACE, World};

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
