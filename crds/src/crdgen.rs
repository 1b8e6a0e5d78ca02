//! CRD YAML generated from the Rust types: the only source of the files in
//! `deploy/crds/` and `charts/anneal/crds/`.

use std::path::{Path, PathBuf};

use kube::CustomResourceExt;

use crate::{FineTuneJob, ModelDeployment};

/// Folders, relative to the repository root, that hold a copy of the CRDs.
pub const CRD_DIRS: [&str; 2] = ["deploy/crds", "charts/anneal/crds"];

const HEADER: &str = "# Generated from the Rust types in crds/ by `cargo run -p anneal-crds --bin crdgen`.\n# Do not edit: change the types and run crdgen again.\n";

/// One generated file: its name and its YAML text.
pub struct CrdFile {
    pub file_name: String,
    pub yaml: String,
}

/// The YAML of every CRD Anneal defines, one file each, named after the CRD.
pub fn generate() -> Vec<CrdFile> {
    [FineTuneJob::crd(), ModelDeployment::crd()]
        .into_iter()
        .map(|crd| {
            let name = crd.metadata.name.clone().expect("derived CRDs are named");
            let body = serde_yaml_ng::to_string(&crd).expect("a CRD serializes to YAML");
            CrdFile {
                file_name: format!("{name}.yaml"),
                yaml: format!("{HEADER}{body}"),
            }
        })
        .collect()
}

/// Files under `root` that are missing or differ from what the types generate.
pub fn stale_files(root: &Path) -> Vec<PathBuf> {
    let files = generate();
    CRD_DIRS
        .iter()
        .flat_map(|dir| {
            files.iter().filter_map(move |file| {
                let path = root.join(dir).join(&file.file_name);
                let current = std::fs::read_to_string(&path).ok();
                (current.as_deref() != Some(file.yaml.as_str())).then_some(path)
            })
        })
        .collect()
}

/// Writes every CRD file under `root`, returning the paths written.
pub fn write_all(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let files = generate();
    let mut written = Vec::new();
    for dir in CRD_DIRS {
        std::fs::create_dir_all(root.join(dir))?;
        for file in &files {
            let path = root.join(dir).join(&file.file_name);
            std::fs::write(&path, &file.yaml)?;
            written.push(path);
        }
    }
    Ok(written)
}
