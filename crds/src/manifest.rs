//! Reading a manifest file the way `kubectl apply` would judge it: the right kind
//! and apiVersion, no unknown fields (kubectl's strict field validation), every
//! type error with its path, then [`crate::validation`]. Local mode uses this.

use serde::de::DeserializeOwned;

use crate::validation::{FieldErrors, validate_finetunejob, validate_modeldeployment};
use crate::{FineTuneJob, ModelDeployment};

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("not valid YAML: {0}")]
    Yaml(String),
    #[error("no {kind} in the file (documents found: {found})")]
    KindNotFound { kind: &'static str, found: String },
    #[error("the file holds {count} {kind} documents; keep one per file")]
    Ambiguous { kind: &'static str, count: usize },
    #[error("apiVersion must be anneal.dev/v1alpha1, got {0:?}")]
    ApiVersion(String),
    #[error("{}", unknown_fields_message(.0))]
    UnknownFields(Vec<String>),
    #[error("{path}: {message}")]
    Type { path: String, message: String },
    #[error("{0}")]
    Invalid(FieldErrors),
}

fn unknown_fields_message(paths: &[String]) -> String {
    let lines: Vec<String> = paths
        .iter()
        .map(|p| format!("{p}: unknown field (check its spelling and nesting)"))
        .collect();
    lines.join("\n")
}

/// The one FineTuneJob in a (possibly multi-document) YAML text, checked.
pub fn parse_finetunejob(text: &str) -> Result<FineTuneJob, ManifestError> {
    let job: FineTuneJob = parse_kind(text, "FineTuneJob")?;
    validate_finetunejob(&job).map_err(ManifestError::Invalid)?;
    Ok(job)
}

/// The one ModelDeployment in a (possibly multi-document) YAML text, checked.
pub fn parse_modeldeployment(text: &str) -> Result<ModelDeployment, ManifestError> {
    let deployment: ModelDeployment = parse_kind(text, "ModelDeployment")?;
    validate_modeldeployment(&deployment).map_err(ManifestError::Invalid)?;
    Ok(deployment)
}

/// Parses and validates the ModelEvaluation in `text`, as `parse_finetunejob` does a job.
pub fn parse_modelevaluation(
    text: &str,
) -> Result<crate::modelevaluation::ModelEvaluation, ManifestError> {
    let evaluation: crate::modelevaluation::ModelEvaluation = parse_kind(text, "ModelEvaluation")?;
    crate::validation::validate_modelevaluation(&evaluation).map_err(ManifestError::Invalid)?;
    Ok(evaluation)
}

fn parse_kind<T: DeserializeOwned>(text: &str, kind: &'static str) -> Result<T, ManifestError> {
    let mut found = Vec::new();
    let mut matching = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(text) {
        let value: serde_yaml_ng::Value = serde::Deserialize::deserialize(document)?;
        if value.is_null() {
            continue; // an empty document, e.g. after a trailing `---`
        }
        let doc_kind = value
            .get("kind")
            .and_then(|k| k.as_str())
            .unwrap_or("(no kind)");
        found.push(doc_kind.to_owned());
        if doc_kind == kind {
            matching.push(value);
        }
    }
    let value = match matching.len() {
        0 => {
            return Err(ManifestError::KindNotFound {
                kind,
                found: if found.is_empty() {
                    "none".to_owned()
                } else {
                    found.join(", ")
                },
            });
        }
        1 => matching.remove(0),
        count => return Err(ManifestError::Ambiguous { kind, count }),
    };
    let api_version = value
        .get("apiVersion")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    if api_version != format!("{}/{}", crate::GROUP, crate::VERSION) {
        return Err(ManifestError::ApiVersion(api_version.to_owned()));
    }

    let mut unknown = Vec::new();
    // kube's generated root type reads apiVersion and kind without keeping them;
    // they were checked above.
    let mut record_unknown = |path: serde_ignored::Path<'_>| {
        let path = path.to_string();
        if path != "apiVersion" && path != "kind" {
            unknown.push(path);
        }
    };
    let strict = serde_ignored::Deserializer::new(value, &mut record_unknown);
    let parsed = serde_path_to_error::deserialize(strict);
    // An unknown field explains a later type error better than the type error does.
    if !unknown.is_empty() {
        return Err(ManifestError::UnknownFields(unknown));
    }
    parsed.map_err(|err| ManifestError::Type {
        path: err.path().to_string(),
        message: err.inner().to_string(),
    })
}

impl From<serde_yaml_ng::Error> for ManifestError {
    fn from(err: serde_yaml_ng::Error) -> Self {
        ManifestError::Yaml(err.to_string())
    }
}
