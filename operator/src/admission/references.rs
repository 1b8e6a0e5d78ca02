//! The objects a spec names that its author must be allowed to read: the Secret its
//! credentials come from, the ConfigMap its dataset is in, the PersistentVolumeClaims
//! its `pvc://` sources and output are on, and, for a ModelDeployment, the
//! FineTuneJob whose checkpoint (and credentials) it serves, and for a
//! ModelEvaluation the jobs, deployments and endpoint key Secrets it names. Without
//! this check, a user allowed only to create FineTuneJobs could name any Secret of
//! the namespace and have its keys mounted into a pod they control (and an
//! evaluation would send an endpoint's key to whatever URL its author gives).

use anneal_crds::finetunejob::{ConfigMapDataset, OutputSpec};
use anneal_crds::modelevaluation::{EndpointModel, ModelEvaluation};
use anneal_crds::{FineTuneJob, ModelDeployment};

/// One named object and the field that names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    pub field: String,
    /// The API group (`""` for core) and plural resource, as RBAC names them.
    pub group: &'static str,
    pub resource: &'static str,
    pub name: String,
}

impl Reference {
    fn new(
        field: impl Into<String>,
        group: &'static str,
        resource: &'static str,
        name: &str,
    ) -> Self {
        Self {
            field: field.into(),
            group,
            resource,
            name: name.to_owned(),
        }
    }
}

/// The claim a `pvc://CLAIM/path` URI is on.
fn claim_of(field: &str, uri: &str) -> Option<Reference> {
    let rest = uri.strip_prefix("pvc://")?;
    let claim = rest.split('/').next().filter(|claim| !claim.is_empty())?;
    Some(Reference::new(field, "", "persistentvolumeclaims", claim))
}

/// The storage credentials Secret (`spec.output.credentialsSecret`) and the ConfigMap
/// dataset (`spec.dataset.configMap`) a spec names, as both kinds that have them do.
fn output_and_dataset(
    output: Option<&OutputSpec>,
    config_map: Option<&ConfigMapDataset>,
) -> Vec<Reference> {
    let mut found = Vec::new();
    if let Some(secret) = output.and_then(|o| o.credentials_secret.as_deref()) {
        found.push(Reference::new(
            "spec.output.credentialsSecret",
            "",
            "secrets",
            secret,
        ));
    }
    if let Some(config_map) = config_map {
        found.push(Reference::new(
            "spec.dataset.configMap.name",
            "",
            "configmaps",
            &config_map.name,
        ));
    }
    found
}

/// What a FineTuneJob names.
pub fn finetunejob_references(job: &FineTuneJob) -> Vec<Reference> {
    let spec = &job.spec;
    let mut found = output_and_dataset(spec.output.as_ref(), spec.dataset.config_map.as_ref());
    let evaluation = spec.checkpoints.evaluation.as_ref().map(|e| &e.dataset);
    if let Some(config_map) = evaluation.and_then(|d| d.config_map.as_ref()) {
        found.push(Reference::new(
            "spec.checkpoints.evaluation.dataset.configMap.name",
            "",
            "configmaps",
            &config_map.name,
        ));
    }
    for (index, receiver) in spec.notify.iter().enumerate() {
        if let Some(key) = &receiver.signing_secret {
            found.push(Reference::new(
                format!("spec.notify[{index}].signingSecret.name"),
                "",
                "secrets",
                &key.name,
            ));
        }
    }
    if let Some(parent) = &spec.base_model.fine_tune_job {
        found.push(Reference::new(
            "spec.baseModel.fineTuneJob.name",
            "anneal.dev",
            "finetunejobs",
            &parent.name,
        ));
    }
    let uris = [
        ("spec.baseModel.source", spec.base_model.source.as_ref()),
        ("spec.dataset.train", spec.dataset.train.as_ref()),
        ("spec.dataset.validation", spec.dataset.validation.as_ref()),
        (
            "spec.checkpoints.evaluation.dataset.uri",
            evaluation.and_then(|d| d.uri.as_ref()),
        ),
        ("spec.output.uri", spec.output.as_ref().map(|o| &o.uri)),
    ];
    found.extend(
        uris.into_iter()
            .filter_map(|(field, uri)| uri.and_then(|uri| claim_of(field, uri))),
    );
    for (index, mixed) in spec.dataset.mix.iter().enumerate() {
        found.extend(claim_of(
            &format!("spec.dataset.mix[{index}].uri"),
            &mixed.uri,
        ));
    }
    found
}

/// What a ModelDeployment names.
pub fn modeldeployment_references(deployment: &ModelDeployment) -> Vec<Reference> {
    let model = &deployment.spec.model;
    let mut found = Vec::new();
    if let Some(job) = &model.fine_tune_job {
        found.push(Reference::new(
            "spec.model.fineTuneJob.name",
            "anneal.dev",
            "finetunejobs",
            &job.name,
        ));
    }
    if let Some(source) = model
        .base_model
        .as_ref()
        .and_then(|base| base.source.as_ref())
    {
        found.extend(claim_of("spec.model.baseModel.source", source));
    }
    for (index, adapter) in model.adapters.iter().enumerate() {
        found.extend(claim_of(
            &format!("spec.model.adapters[{index}].uri"),
            &adapter.uri,
        ));
    }
    found
}

/// What a ModelEvaluation names: its storage credentials and ConfigMap dataset, the
/// FineTuneJobs and ModelDeployments it compares, and each endpoint's key Secret
/// (evaluated or judging).
pub fn modelevaluation_references(evaluation: &ModelEvaluation) -> Vec<Reference> {
    let spec = &evaluation.spec;
    let mut found = output_and_dataset(spec.output.as_ref(), spec.dataset.config_map.as_ref());
    let key = |field: String, endpoint: &EndpointModel| {
        let secret = endpoint.credentials_secret.as_deref()?;
        Some(Reference::new(field, "", "secrets", secret))
    };
    for (index, model) in spec.models.iter().enumerate() {
        let field = format!("spec.models[{index}]");
        if let Some(job) = &model.fine_tune_job {
            found.push(Reference::new(
                format!("{field}.fineTuneJob.name"),
                "anneal.dev",
                "finetunejobs",
                &job.name,
            ));
        }
        if let Some(deployment) = &model.model_deployment {
            found.push(Reference::new(
                format!("{field}.modelDeployment.name"),
                "anneal.dev",
                "modeldeployments",
                &deployment.name,
            ));
        }
        if let Some(endpoint) = &model.endpoint {
            found.extend(key(format!("{field}.endpoint.credentialsSecret"), endpoint));
        }
    }
    for (index, metric) in spec.metrics.iter().enumerate() {
        let Some(judge) = &metric.judge else { continue };
        let field = format!("spec.metrics[{index}].judge.model");
        if let Some(deployment) = &judge.model.model_deployment {
            found.push(Reference::new(
                format!("{field}.modelDeployment.name"),
                "anneal.dev",
                "modeldeployments",
                &deployment.name,
            ));
        }
        if let Some(endpoint) = &judge.model.endpoint {
            found.extend(key(format!("{field}.endpoint.credentialsSecret"), endpoint));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use anneal_crds::manifest::{parse_finetunejob, parse_modeldeployment};

    use super::*;

    #[test]
    fn a_job_names_its_secret_configmap_and_claims() {
        let job = parse_finetunejob(
            r#"
apiVersion: anneal.dev/v1alpha1
kind: FineTuneJob
metadata: {name: j, namespace: team-a}
spec:
  baseModel: {name: anneal-tiny, source: "pvc://models/tiny"}
  dataset: {configMap: {name: chats}}
  output: {uri: "pvc://runs/out", credentialsSecret: team-creds}
"#,
        )
        .unwrap();
        let with_evaluation = |dataset: &str| {
            let mut job = job.clone();
            job.spec.checkpoints.evaluation = Some(
                serde_yaml_ng::from_str(&format!(
                    "{{dataset: {dataset}, metrics: [rougeL: {{}}]}}"
                ))
                .unwrap(),
            );
            finetunejob_references(&job)
                .into_iter()
                .map(|r| (r.field, r.resource, r.name))
                .find(|(field, _, _)| field.starts_with("spec.checkpoints"))
        };
        assert_eq!(
            with_evaluation("{configMap: {name: held-out}}"),
            Some((
                "spec.checkpoints.evaluation.dataset.configMap.name".to_owned(),
                "configmaps",
                "held-out".to_owned()
            ))
        );
        assert_eq!(
            with_evaluation("{uri: \"pvc://eval-data/held-out.jsonl\"}"),
            Some((
                "spec.checkpoints.evaluation.dataset.uri".to_owned(),
                "persistentvolumeclaims",
                "eval-data".to_owned()
            ))
        );
        let named: Vec<(String, &str, String)> = finetunejob_references(&job)
            .into_iter()
            .map(|r| (r.field, r.resource, r.name))
            .collect();
        assert_eq!(
            named,
            [
                (
                    "spec.output.credentialsSecret".to_owned(),
                    "secrets",
                    "team-creds".to_owned()
                ),
                (
                    "spec.dataset.configMap.name".to_owned(),
                    "configmaps",
                    "chats".to_owned()
                ),
                (
                    "spec.baseModel.source".to_owned(),
                    "persistentvolumeclaims",
                    "models".to_owned()
                ),
                (
                    "spec.output.uri".to_owned(),
                    "persistentvolumeclaims",
                    "runs".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn a_deployment_names_its_job_or_its_claims() {
        let names = |yaml: &str| -> Vec<(&'static str, &'static str, String)> {
            modeldeployment_references(&parse_modeldeployment(yaml).unwrap())
                .into_iter()
                .map(|r| (r.group, r.resource, r.name))
                .collect()
        };
        let of_job = names(
            r#"
apiVersion: anneal.dev/v1alpha1
kind: ModelDeployment
metadata: {name: d, namespace: team-a}
spec:
  model:
    fineTuneJob: {name: support}
"#,
        );
        assert_eq!(
            of_job,
            [("anneal.dev", "finetunejobs", "support".to_owned())]
        );
        let of_claims = names(
            r#"
apiVersion: anneal.dev/v1alpha1
kind: ModelDeployment
metadata: {name: d, namespace: team-a}
spec:
  model:
    baseModel: {name: anneal-tiny, source: "pvc://models/tiny"}
    adapters: [{name: extra, uri: "pvc://adapters/extra"}, {name: other, uri: "s3://a/other"}]
"#,
        );
        assert_eq!(
            of_claims,
            [
                ("", "persistentvolumeclaims", "models".to_owned()),
                ("", "persistentvolumeclaims", "adapters".to_owned()),
            ]
        );
    }
}
