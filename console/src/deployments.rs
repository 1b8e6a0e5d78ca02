//! A cluster's ModelDeployments as the console shows them: a row of the deployments
//! list, and what the playground needs (the served models, and the `curl` and
//! OpenAI SDK snippets of a chat request). Pure: the operator reads the objects.

use anneal_crds::ModelDeployment;
use anneal_crds::modeldeployment::DeploymentPhase;
use serde_json::{Value, json};

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

/// What the playground sends: the chat request's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatSettings {
    pub model: String,
    pub system: String,
    pub message: String,
    pub temperature: f64,
    pub top_p: f64,
    pub max_tokens: u32,
}

impl ChatSettings {
    /// The `/v1/chat/completions` body, streamed.
    pub fn request_body(&self) -> Value {
        let mut messages = Vec::new();
        if !self.system.trim().is_empty() {
            messages.push(json!({"role": "system", "content": self.system}));
        }
        messages.push(json!({"role": "user", "content": self.message}));
        json!({
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "stream": true,
        })
    }
}

/// The same request with `curl`, against the deployment's endpoint (in the cluster,
/// or through `kubectl port-forward`).
pub fn curl_snippet(endpoint: &str, settings: &ChatSettings) -> String {
    let body = serde_json::to_string_pretty(&settings.request_body()).unwrap_or_default();
    format!(
        "curl -N {endpoint}/chat/completions \\\n  -H 'Content-Type: application/json' \\\n  -d '{}'",
        body.replace('\'', r"'\''")
    )
}

/// The same request with the OpenAI Python SDK.
pub fn openai_snippet(endpoint: &str, settings: &ChatSettings) -> String {
    let messages = settings.request_body()["messages"].clone();
    let messages = serde_json::to_string(&messages).unwrap_or_default();
    format!(
        "from openai import OpenAI\n\n\
         client = OpenAI(base_url=\"{endpoint}\", api_key=\"unused\")\n\
         stream = client.chat.completions.create(\n    \
         model={model},\n    messages={messages},\n    \
         temperature={temperature}, top_p={top_p}, max_tokens={max_tokens}, stream=True,\n)\n\
         for chunk in stream:\n    print(chunk.choices[0].delta.content or \"\", end=\"\")\n",
        model = serde_json::to_string(&settings.model).unwrap_or_default(),
        temperature = settings.temperature,
        top_p = settings.top_p,
        max_tokens = settings.max_tokens,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn settings() -> ChatSettings {
        ChatSettings {
            model: "ft:anneal-tiny:story:ckpt-12".into(),
            system: "Be brief.".into(),
            message: "It's \"windy\"?".into(),
            temperature: 0.0,
            top_p: 1.0,
            max_tokens: 32,
        }
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

    #[test]
    fn the_snippets_send_the_playgrounds_request() {
        let body = settings().request_body();
        assert_eq!(
            body["messages"][0],
            json!({"role": "system", "content": "Be brief."})
        );
        assert_eq!(body["messages"][1]["content"], "It's \"windy\"?");
        assert_eq!(body["stream"], true);
        let no_system = ChatSettings {
            system: " ".into(),
            ..settings()
        };
        assert_eq!(
            no_system.request_body()["messages"]
                .as_array()
                .unwrap()
                .len(),
            1
        );

        let curl = curl_snippet("http://chat.team-a.svc:8000/v1", &settings());
        assert!(curl.starts_with("curl -N http://chat.team-a.svc:8000/v1/chat/completions"));
        // The shell gets the body back whole: the quote is closed, escaped, reopened.
        assert!(curl.contains(r#"It'\''s \"windy\"?"#), "{curl}");
        let python = openai_snippet("http://chat.team-a.svc:8000/v1", &settings());
        assert!(python.contains(r#"base_url="http://chat.team-a.svc:8000/v1""#));
        assert!(
            python.contains(r#"model="ft:anneal-tiny:story:ckpt-12""#),
            "{python}"
        );
        assert!(python.contains("max_tokens=32, stream=True"), "{python}");
    }
}
