//! A cluster's ModelDeployments as the console shows them: a row of the deployments
//! list, and the models its playground offers. Pure: the operator reads the objects.

use anneal_crds::ModelDeployment;
use anneal_crds::modeldeployment::DeploymentPhase;
use serde_json::Value;

/// One ModelDeployment in the list.
#[derive(Clone, Debug, PartialEq)]
pub struct DeploymentRow {
    pub namespace: String,
    pub name: String,
    pub href: String,
    pub phase: Option<DeploymentPhase>,
    pub ready_replicas: u32,
    pub replicas: u32,
    pub endpoint: Option<String>,
    pub model_id: Option<String>,
    /// What it serves: `FineTuneJob story (best)`, or the base model's name.
    pub source: String,
    pub message: Option<String>,
    /// What each serving pod serves (`status.replicas`, runtime `builtin`).
    pub pods: Vec<anneal_crds::modeldeployment::ReplicaStatus>,
}

/// The path of a deployment's page.
pub fn deployment_href(namespace: &str, name: &str) -> String {
    format!("/deployments/{namespace}/{name}")
}

/// The deployments list's row of `deployment`.
pub fn deployment_row(deployment: &ModelDeployment) -> DeploymentRow {
    let namespace = deployment.metadata.namespace.clone().unwrap_or_default();
    let name = deployment.metadata.name.clone().unwrap_or_default();
    let status = deployment.status.clone().unwrap_or_default();
    let model = &deployment.spec.model;
    let source = match (&model.fine_tune_job, &model.base_model) {
        (Some(job), _) => format!("FineTuneJob {} ({})", job.name, job.checkpoint),
        (None, Some(base)) => base.name.clone(),
        (None, None) => "-".to_owned(),
    };
    DeploymentRow {
        href: deployment_href(&namespace, &name),
        phase: status.phase,
        ready_replicas: status.ready_replicas,
        replicas: deployment.spec.replicas,
        endpoint: status.endpoint,
        model_id: status.model_id,
        source,
        message: status.message,
        pods: status.replicas,
        namespace,
        name,
    }
}

/// The models a deployment answers to: the model id its status names first (what it
/// was made to serve), then the rest its server lists at `/v1/models` (the JSON
/// `listing`, when it could be read), such as the base model.
pub fn served_models(deployment: &ModelDeployment, listing: Option<&Value>) -> Vec<String> {
    let status = deployment.status.clone().unwrap_or_default();
    let mut models: Vec<String> = status.model_id.into_iter().collect();
    let listed = (listing
        .and_then(|l| l["data"].as_array())
        .into_iter()
        .flatten())
    .filter_map(|m| m["id"].as_str().map(str::to_owned));
    for model in listed {
        if !models.contains(&model) {
            models.push(model);
        }
    }
    models
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> ModelDeployment {
        serde_yaml_ng::from_str(
            r#"
apiVersion: anneal.dev/v1alpha1
kind: ModelDeployment
metadata: {name: chat, namespace: team-a}
spec:
  model: {fineTuneJob: {name: story, checkpoint: best}}
  replicas: 2
status:
  phase: Ready
  readyReplicas: 1
  endpoint: http://chat.team-a.svc:8000/v1
  modelId: "ft:anneal-tiny:story:ckpt-12"
"#,
        )
        .unwrap()
    }

    #[test]
    fn a_row_says_what_is_served_where() {
        let row = deployment_row(&deployment());
        assert_eq!(row.href, "/deployments/team-a/chat");
        assert_eq!(row.source, "FineTuneJob story (best)");
        assert_eq!((row.ready_replicas, row.replicas), (1, 2));
        assert_eq!(
            row.endpoint.as_deref(),
            Some("http://chat.team-a.svc:8000/v1")
        );
    }

    #[test]
    fn the_served_models_are_the_status_model_first_then_the_servers_listing() {
        let listing =
            json!({"data": [{"id": "anneal-tiny"}, {"id": "ft:anneal-tiny:story:ckpt-12"}]});
        assert_eq!(
            served_models(&deployment(), Some(&listing)),
            ["ft:anneal-tiny:story:ckpt-12", "anneal-tiny"]
        );
        assert_eq!(
            served_models(&deployment(), None),
            ["ft:anneal-tiny:story:ckpt-12"]
        );
    }
}
