//! A manifest file as `trainer train` and `trainer evaluate` read it: its text, and
//! the folder its `file://` URIs are relative to, made absolute.

use std::path::{Path, PathBuf};

use anneal_crds::manifest::ManifestError;

/// Why a manifest file could not be used; both name the file.
#[derive(Debug, thiserror::Error)]
pub enum ManifestFileError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Invalid {
        path: PathBuf,
        source: ManifestError,
    },
}

/// Reads `path` and parses it with `parse` (which also validates it); the object
/// and the manifest's folder.
pub fn read_manifest_file<T>(
    path: &Path,
    parse: impl FnOnce(&str) -> Result<T, ManifestError>,
) -> Result<(T, PathBuf), ManifestFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ManifestFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let object = parse(&text).map_err(|source| ManifestFileError::Invalid {
        path: path.to_path_buf(),
        source,
    })?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let dir = std::path::absolute(&dir).unwrap_or(dir);
    Ok((object, dir))
}
