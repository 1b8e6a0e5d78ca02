//! Files generated from the Rust types: the CRD YAML in `deploy/crds/` and
//! `charts/anneal/crds/`, the API reference in `docs/reference/`, and the fit tables
//! the memory plan computes in `docs/memory.md`, with the only code that writes them
//! or checks them for drift.

use std::path::{Path, PathBuf};

use kube::CustomResourceExt;

use crate::api_docs;
use crate::memory_plan::fit_table;
use crate::modelevaluation::ModelEvaluation;
use crate::{FineTuneJob, ModelDeployment};

/// Folders, relative to the repository root, that hold a copy of the CRDs.
pub const CRD_DIRS: [&str; 2] = ["deploy/crds", "charts/anneal/crds"];

const HEADER: &str = "# Generated from the Rust types in crds/ by `cargo run -p anneal-crds --bin crdgen`.\n# Do not edit: change the types and run crdgen again.\n";

/// One generated file: its path relative to the repository root and its text.
pub struct GeneratedFile {
    pub path: PathBuf,
    pub text: String,
}

/// Every generated file: each CRD's YAML in every CRD folder, and its reference page.
pub fn generate() -> Vec<GeneratedFile> {
    let mut files = Vec::new();
    for crd in [
        FineTuneJob::crd(),
        ModelDeployment::crd(),
        ModelEvaluation::crd(),
    ] {
        let name = crd.metadata.name.clone().expect("derived CRDs are named");
        let body = serde_yaml_ng::to_string(&crd).expect("a CRD serializes to YAML");
        for dir in CRD_DIRS {
            files.push(GeneratedFile {
                path: Path::new(dir).join(format!("{name}.yaml")),
                text: format!("{HEADER}{body}"),
            });
        }
        let (file_name, markdown) = api_docs::page(&crd);
        files.push(GeneratedFile {
            path: Path::new(api_docs::DOCS_DIR).join(file_name),
            text: markdown,
        });
    }
    files
}

/// The memory page under `root` with its fit tables regenerated; the page's prose is
/// written by hand, so only the part between its markers is generated.
pub fn memory_page(root: &Path) -> std::io::Result<GeneratedFile> {
    let path = PathBuf::from(fit_table::DOC_PATH);
    let page = std::fs::read_to_string(root.join(&path))?;
    let text = fit_table::splice(&page, &fit_table::markdown()).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "{} lacks the lines {:?} and {:?} around its fit tables",
                path.display(),
                fit_table::BEGIN_MARKER,
                fit_table::END_MARKER
            ),
        )
    })?;
    Ok(GeneratedFile { path, text })
}

/// Files under `root` that are missing or differ from what the types generate.
pub fn stale_files(root: &Path) -> Vec<PathBuf> {
    let mut stale: Vec<PathBuf> = generate()
        .into_iter()
        .filter_map(|file| {
            let path = root.join(&file.path);
            let current = std::fs::read_to_string(&path).ok();
            (current.as_deref() != Some(file.text.as_str())).then_some(path)
        })
        .collect();
    let page = memory_page(root);
    let current = std::fs::read_to_string(root.join(fit_table::DOC_PATH)).ok();
    if page.map(|file| file.text).ok() != current {
        stale.push(root.join(fit_table::DOC_PATH));
    }
    stale
}

/// Writes every generated file under `root`, returning the paths written.
pub fn write_all(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for file in generate().into_iter().chain([memory_page(root)?]) {
        let path = root.join(&file.path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&path, &file.text)?;
        written.push(path);
    }
    Ok(written)
}
