//! Every manifest in examples/ is admitted by the CRD rules and passes local validation.

mod support;

use std::path::{Path, PathBuf};

use anneal_crds::manifest::{parse_finetunejob, parse_modeldeployment};
use anneal_crds::{FineTuneJob, ModelDeployment};
use serde_json::Value;
use support::ApiServerRules;

fn example_manifests() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut found = Vec::new();
    let mut dirs = vec![root];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

#[test]
fn every_example_manifest_is_valid() {
    let jobs = ApiServerRules::for_crd::<FineTuneJob>();
    let deployments = ApiServerRules::for_crd::<ModelDeployment>();
    let manifests = example_manifests();
    let mut kinds = Vec::new();
    for path in &manifests {
        let text = std::fs::read_to_string(path).unwrap();
        let value: Value = serde_yaml_ng::from_str(&text).unwrap();
        let kind = value["kind"].as_str().unwrap_or_default().to_owned();
        let (apiserver, local) = match kind.as_str() {
            "FineTuneJob" => (
                jobs.create(&value),
                parse_finetunejob(&text).err().map(|e| e.to_string()),
            ),
            "ModelDeployment" => (
                deployments.create(&value),
                parse_modeldeployment(&text).err().map(|e| e.to_string()),
            ),
            other => panic!("{}: unexpected kind {other:?}", path.display()),
        };
        assert_eq!(apiserver, Vec::<String>::new(), "{}", path.display());
        assert_eq!(local, None, "{}", path.display());
        kinds.push(kind);
    }
    // The examples cover both kinds and both methods.
    assert!(
        kinds.iter().filter(|k| *k == "FineTuneJob").count() >= 3,
        "{kinds:?}"
    );
    assert!(
        kinds.iter().filter(|k| *k == "ModelDeployment").count() >= 2,
        "{kinds:?}"
    );
}
