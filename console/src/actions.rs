//! What the console's actions on a job apply, shown before they are taken: suspending
//! or resuming it (a patch of `spec.suspend`), deleting it, deploying one of its
//! checkpoints as a ModelDeployment (a manifest, validated as `kubectl apply` would
//! have it), and publishing one to a model repository (a patch adding a
//! `spec.publish` entry). Pure: the operator checks the viewer's permissions and
//! applies them.

use anneal_crds::finetunejob::PublishSpec;
use anneal_crds::manifest::parse_modeldeployment;
use anneal_crds::validation::validate_finetunejob;
use anneal_crds::{FineTuneJob, ModelDeployment};
use serde_json::{Value, json};

/// What the viewer may do with a job, as the API server answered for them; all false
/// without sign-in (the console is then read-only).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Permitted {
    /// `patch finetunejobs`: suspend, resume, publish.
    pub patch: bool,
    /// `delete finetunejobs`.
    pub delete: bool,
    /// `create modeldeployments`.
    pub deploy: bool,
}

impl Permitted {
    pub fn any(&self) -> bool {
        self.patch || self.delete || self.deploy
    }
}

/// The merge patch that suspends (`true`) or resumes a job.
pub fn suspend_patch(suspend: bool) -> Value {
    json!({"spec": {"suspend": suspend}})
}

/// `patch` as YAML, for the page to show.
pub fn patch_yaml(patch: &Value) -> String {
    serde_yaml_ng::to_string(patch).unwrap_or_default()
}

/// The checkpoints a deployment of `job` may name: `final` once the job has a
/// result, `best`, then each saved checkpoint.
pub fn deployable_checkpoints(job: &FineTuneJob) -> Vec<String> {
    let status = job.status.clone().unwrap_or_default();
    let mut names = Vec::new();
    if status.result.is_some() {
        names.push("final".to_owned());
    }
    if !status.checkpoints.is_empty() {
        names.push("best".to_owned());
    }
    names.extend(status.checkpoints.into_iter().map(|c| c.name));
    names
}

/// The ModelDeployment serving `checkpoint` of `job` as `name` with `replicas` pods
/// (on the job's kind of node: as many GPUs as it trained on, at most one), as YAML,
/// and as the object it parses into; or what is wrong with it, by field.
pub fn deployment_manifest(
    job: &FineTuneJob,
    checkpoint: &str,
    name: &str,
    replicas: u32,
) -> Result<(String, ModelDeployment), String> {
    let namespace = job.metadata.namespace.clone().unwrap_or_default();
    let job_name = job.metadata.name.clone().unwrap_or_default();
    if !deployable_checkpoints(job).iter().any(|c| c == checkpoint) {
        return Err(format!(
            "checkpoint {checkpoint:?} is not one of the job's ({})",
            deployable_checkpoints(job).join(", ")
        ));
    }
    let manifest = json!({
        "apiVersion": "anneal.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": {"fineTuneJob": {"name": job_name, "checkpoint": checkpoint}},
            "replicas": replicas,
            "resources": {"gpus": job.spec.resources.gpus.min(1)},
        },
    });
    let yaml = serde_yaml_ng::to_string(&manifest).map_err(|e| e.to_string())?;
    let deployment = parse_modeldeployment(&yaml).map_err(|error| error.to_string())?;
    if !anneal_crds::validation::is_service_name(name) {
        return Err(format!(
            "metadata.name {name:?} must be a DNS label: lower-case letters, digits and '-', 63 at most, starting with a letter"
        ));
    }
    Ok((yaml, deployment))
}

/// Where the publish form's example points, and what its preview shows.
pub const PUBLISH_EXAMPLE: &str = "hf://ORG/NAME";

/// The merge patch that adds "publish `checkpoint` of `job` to `to`" to its
/// `spec.publish`; or what is wrong with it, by field. A merge patch replaces a list
/// whole, so the patch carries the resourceVersion the entries were read at: a
/// change made in between is refused (409), not lost.
pub fn publish_patch(
    job: &FineTuneJob,
    checkpoint: &str,
    to: &str,
    merge: bool,
) -> Result<Value, String> {
    if !deployable_checkpoints(job).iter().any(|c| c == checkpoint) {
        return Err(format!(
            "checkpoint {checkpoint:?} is not one of the job's ({})",
            deployable_checkpoints(job).join(", ")
        ));
    }
    let mut changed = job.clone();
    changed.spec.publish.push(PublishSpec {
        checkpoint: checkpoint.to_owned(),
        to: to.trim().to_owned(),
        merge,
    });
    validate_finetunejob(&changed).map_err(|errors| errors.to_string())?;
    let entries = serde_json::to_value(&changed.spec.publish).map_err(|e| e.to_string())?;
    Ok(json!({
        "metadata": {"resourceVersion": job.metadata.resource_version},
        "spec": {"publish": entries},
    }))
}

/// The name a deployment of `checkpoint` of `job` gets unless the viewer gives one.
pub fn default_deployment_name(job: &FineTuneJob, checkpoint: &str) -> String {
    let job_name = job.metadata.name.clone().unwrap_or_default();
    let mut name = format!("{job_name}-{checkpoint}");
    name.truncate(63);
    name.trim_end_matches('-').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> FineTuneJob {
        serde_yaml_ng::from_str(
            r#"
apiVersion: anneal.dev/v1alpha1
kind: FineTuneJob
metadata: {name: story, namespace: team-a}
spec:
  baseModel: {name: anneal-tiny, source: "s3://models/anneal-tiny"}
  dataset: {train: "s3://data/train.jsonl"}
  resources: {gpus: 0}
status:
  result: {modelId: "ft:anneal-tiny:story:ckpt-4", uri: "s3://runs/final"}
  checkpoints:
    - {name: ckpt-2, step: 2, epoch: 0.5, uri: "s3://runs/checkpoints/ckpt-2"}
    - {name: ckpt-4, step: 4, epoch: 1.0, uri: "s3://runs/checkpoints/ckpt-4"}
"#,
        )
        .unwrap()
    }

    #[test]
    fn a_checkpoint_deploys_as_the_manifest_shown() {
        assert_eq!(
            deployable_checkpoints(&job()),
            ["final", "best", "ckpt-2", "ckpt-4"]
        );
        assert_eq!(default_deployment_name(&job(), "ckpt-2"), "story-ckpt-2");
        let (yaml, deployment) = deployment_manifest(&job(), "ckpt-2", "story-ckpt-2", 2).unwrap();
        assert!(yaml.contains("kind: ModelDeployment"), "{yaml}");
        assert!(yaml.contains("checkpoint: ckpt-2"), "{yaml}");
        let source = deployment.spec.model.fine_tune_job.unwrap();
        assert_eq!(
            (source.name.as_str(), source.checkpoint.as_str()),
            ("story", "ckpt-2")
        );
        assert_eq!(deployment.spec.replicas, 2);
        assert_eq!(deployment.spec.resources.gpus, 0, "as the job trained");
        assert_eq!(deployment.metadata.namespace.as_deref(), Some("team-a"));
    }

    #[test]
    fn a_bad_deployment_is_refused_by_field() {
        let error = deployment_manifest(&job(), "ckpt-9", "x", 1).unwrap_err();
        assert!(
            error.starts_with(
                "checkpoint \"ckpt-9\" is not one of the job's (final, best, ckpt-2, ckpt-4)"
            ),
            "{error}"
        );
        for bad in ["Story", "-x", "x-", "a.b", "", &"x".repeat(64)] {
            let error = deployment_manifest(&job(), "best", bad, 1).unwrap_err();
            assert!(error.contains("name"), "{bad}: {error}");
        }
        let error = deployment_manifest(&job(), "best", "ok", 10_000).unwrap_err();
        assert!(error.contains("replicas"), "{error}");
    }

    #[test]
    fn publishing_adds_an_entry_at_the_version_read() {
        let mut job = job();
        job.metadata.resource_version = Some("41".into());
        job.spec.publish.push(PublishSpec {
            checkpoint: "final".into(),
            to: "s3://models/story".into(),
            merge: false,
        });
        let patch = publish_patch(&job, "ckpt-2", " hf://acme/story-ckpt-2 ", true).unwrap();
        assert_eq!(patch["metadata"]["resourceVersion"], "41");
        assert_eq!(
            patch["spec"]["publish"],
            json!([
                {"checkpoint": "final", "to": "s3://models/story", "merge": false},
                {"checkpoint": "ckpt-2", "to": "hf://acme/story-ckpt-2", "merge": true},
            ])
        );
        let error = publish_patch(&job, "ckpt-9", "hf://acme/x", false).unwrap_err();
        assert!(
            error.starts_with("checkpoint \"ckpt-9\" is not one of the job's"),
            "{error}"
        );
        let error = publish_patch(&job, "final", "gs://bucket/x", false).unwrap_err();
        assert!(error.starts_with("spec.publish[1].to"), "{error}");
        let error = publish_patch(&job, "final", "s3://models/story", false).unwrap_err();
        assert!(
            error.starts_with("spec.publish[1]"),
            "the same entry twice: {error}"
        );
    }

    #[test]
    fn suspending_is_a_patch_of_spec_suspend() {
        assert_eq!(patch_yaml(&suspend_patch(true)), "spec:\n  suspend: true\n");
        assert_eq!(suspend_patch(false)["spec"]["suspend"], false);
    }
}
