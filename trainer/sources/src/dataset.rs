//! A dataset file named by a manifest: `file://` (relative to the manifest's folder)
//! read here, any storage URI read from its store.

use std::path::Path;

use anneal_crds::storage::Storage;

use super::SourceError;
use crate::local_paths::resolve_file_uri;

/// The file's name (for messages) and bytes. `what` names the manifest field.
pub fn fetch_file(
    uri: &str,
    manifest_dir: &Path,
    what: &'static str,
) -> Result<(String, Vec<u8>), SourceError> {
    if let Some(path) = resolve_file_uri(uri, manifest_dir) {
        let bytes = std::fs::read(&path).map_err(|source| SourceError::ReadingLocal {
            what,
            path: path.clone(),
            source,
        })?;
        return Ok((path.display().to_string(), bytes));
    }
    let (folder, name) = uri
        .rsplit_once('/')
        .filter(|(folder, name)| {
            folder.contains("://")
                && !folder.ends_with(':')
                && !folder.ends_with('/')
                && !name.is_empty()
        })
        .ok_or_else(|| SourceError::NamesNoFile {
            what,
            uri: uri.to_owned(),
        })?;
    let storage_error = |source| SourceError::Storage {
        what,
        uri: uri.to_owned(),
        source: Box::new(source),
    };
    let bytes = Storage::open(folder)
        .and_then(|storage| storage.get(name))
        .map_err(storage_error)?
        .ok_or_else(|| SourceError::NoSuchFile {
            what,
            uri: uri.to_owned(),
        })?;
    Ok((uri.to_owned(), bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    const WHAT: &str = "spec.dataset.train";

    #[test]
    fn a_file_uri_is_read_relative_to_the_manifest() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("train.jsonl"), b"{}\n").unwrap();
        let (name, bytes) = fetch_file("file://train.jsonl", dir.path(), WHAT).unwrap();
        assert_eq!(name, dir.path().join("train.jsonl").display().to_string());
        assert_eq!(bytes, b"{}\n");

        let error = fetch_file("file://missing.jsonl", dir.path(), WHAT)
            .unwrap_err()
            .to_string();
        let expected = format!("{WHAT}: {}: ", dir.path().join("missing.jsonl").display());
        assert!(error.starts_with(&expected), "{error}");
    }

    #[test]
    fn uris_naming_no_file_or_no_store_are_refused_by_field() {
        let error = |uri: &str| {
            fetch_file(uri, Path::new("/unused"), WHAT)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            error("s3://bucket"),
            "spec.dataset.train: s3://bucket names no file"
        );
        assert_eq!(
            error("s3://bucket/data/"),
            "spec.dataset.train: s3://bucket/data/ names no file"
        );
        let unsupported = error("gs://bucket/train.jsonl");
        assert!(
            unsupported.starts_with("spec.dataset.train gs://bucket/train.jsonl: ")
                && unsupported.contains("not supported yet"),
            "{unsupported}"
        );
    }
}
