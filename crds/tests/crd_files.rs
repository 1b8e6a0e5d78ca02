//! The committed CRD YAML is what the types generate, and it is a CRD an apiserver
//! accepts: structural, with the names, columns and subresources users rely on.

mod support;

use std::path::Path;

use anneal_crds::crdgen;
use anneal_crds::{FineTuneJob, ModelDeployment};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use serde_json::Value;

#[test]
fn committed_crd_yaml_matches_the_types() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let stale = crdgen::stale_files(&root);
    assert!(
        stale.is_empty(),
        "out of date: {stale:?}; run `cargo run -p anneal-crds --bin crdgen` and commit"
    );
}

#[test]
fn the_committed_files_parse_back_into_the_same_crds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/crds");
    for crd in [FineTuneJob::crd(), ModelDeployment::crd()] {
        let name = crd.metadata.name.clone().unwrap();
        let text = std::fs::read_to_string(root.join(format!("{name}.yaml"))).unwrap();
        let parsed: CustomResourceDefinition = serde_yaml_ng::from_str(&text).unwrap();
        assert_eq!(parsed, crd, "{name}");
    }
}

fn columns(crd: &CustomResourceDefinition) -> Vec<(String, String)> {
    crd.spec.versions[0]
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| (c.name.clone(), c.json_path.clone()))
        .collect()
}

fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn both_kinds_have_their_names_columns_and_status_subresource() {
    let job = FineTuneJob::crd();
    assert_eq!(
        job.metadata.name.as_deref(),
        Some("finetunejobs.anneal.dev")
    );
    assert_eq!(job.spec.group, "anneal.dev");
    assert_eq!(job.spec.scope, "Namespaced");
    assert_eq!(job.spec.names.short_names, Some(vec!["ftj".to_owned()]));
    assert_eq!(job.spec.versions[0].name, "v1alpha1");
    assert!(
        job.spec.versions[0]
            .subresources
            .as_ref()
            .unwrap()
            .status
            .is_some()
    );
    assert_eq!(
        columns(&job),
        owned(&[
            ("Phase", ".status.phase"),
            ("Model", ".spec.baseModel.name"),
            ("Progress", ".status.progress.percent"),
            ("Train loss", ".status.metrics.trainLoss"),
            ("Valid loss", ".status.metrics.validLoss"),
            // -o wide: the estimate made in Validating.
            ("Est. time", ".status.estimate.duration"),
            ("Est. cost", ".status.estimate.cost"),
            ("Age", ".metadata.creationTimestamp"),
        ])
    );

    let deployment = ModelDeployment::crd();
    assert_eq!(
        deployment.metadata.name.as_deref(),
        Some("modeldeployments.anneal.dev")
    );
    assert_eq!(
        deployment.spec.names.short_names,
        Some(vec!["mdep".to_owned()])
    );
    assert_eq!(deployment.spec.names.kind, "ModelDeployment");
    assert!(
        deployment.spec.versions[0]
            .subresources
            .as_ref()
            .unwrap()
            .status
            .is_some()
    );
    assert_eq!(
        columns(&deployment),
        owned(&[
            ("Phase", ".status.phase"),
            ("Model", ".status.modelId"),
            ("Ready", ".status.readyReplicas"),
            ("Endpoint", ".status.endpoint"),
            ("Age", ".metadata.creationTimestamp"),
        ])
    );
}

/// Nodes an apiserver would refuse in a structural schema: a missing `type`
/// (unless int-or-string or preserve-unknown-fields), `$ref`, and the
/// composition keywords kube would have to have flattened.
fn structural_problems(node: &Value, path: &str, problems: &mut Vec<String>) {
    let Some(map) = node.as_object() else { return };
    let exempt = map.contains_key("x-kubernetes-int-or-string")
        || map.contains_key("x-kubernetes-preserve-unknown-fields");
    if !map.contains_key("type") && !exempt {
        problems.push(format!("{path}: no type"));
    }
    for keyword in ["$ref", "oneOf", "anyOf", "allOf", "not"] {
        if map.contains_key(keyword) {
            problems.push(format!("{path}: {keyword}"));
        }
    }
    if let Some(properties) = map.get("properties").and_then(Value::as_object) {
        for (name, child) in properties {
            structural_problems(child, &format!("{path}.{name}"), problems);
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(child) = map.get(key).filter(|c| c.is_object()) {
            structural_problems(child, &format!("{path}[{key}]"), problems);
        }
    }
}

#[test]
fn the_schemas_are_structural() {
    for crd in [FineTuneJob::crd(), ModelDeployment::crd()] {
        let schema = support::open_api_schema(&crd);
        let mut problems = Vec::new();
        structural_problems(&schema, "", &mut problems);
        assert!(problems.is_empty(), "{:?}: {problems:?}", crd.metadata.name);
    }
}
