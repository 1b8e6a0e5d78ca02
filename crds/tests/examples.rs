//! Every manifest in examples/ is admitted by the CRD rules and passes local validation.

mod support;

use std::path::{Path, PathBuf};

fn example_manifests() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    support::files_under(&root, &["yaml", "yml"])
}

#[test]
fn every_example_manifest_is_valid() {
    let mut kinds = Vec::new();
    for path in example_manifests() {
        let text = std::fs::read_to_string(&path).unwrap();
        let (kind, problems) = support::admit_manifest(&text);
        assert_eq!(problems, Vec::<String>::new(), "{}", path.display());
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
