//! Model and adapter folders named by a path or a URI, made local: what `trainer serve`
//! loads and what `trainer fetch` (a serving pod's init container) downloads.
//!
//! A folder written by Anneal carries a `COMPLETE` marker; when one is there, every
//! file it lists must be too, so a half-uploaded checkpoint is never served. Folders
//! from elsewhere (a PEFT adapter trained with Python) have no marker and are taken
//! as they are.

use std::path::{Path, PathBuf};

use anneal_crds::storage::{COMPLETE, Storage};

use crate::local_paths::resolve_file_uri;

/// Where a folder is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FolderSource {
    /// A path on this machine (a plain path or a `file://` URI).
    Local(PathBuf),
    /// Object storage to download from (`s3://`).
    Remote(String),
}

/// Reads a `--model` / `--adapter` value: a path, `file://`, or `s3://`. `what` names the
/// flag for the error message.
pub fn parse_folder_source(value: &str, what: &str) -> Result<FolderSource, String> {
    if let Some(path) = resolve_file_uri(value, Path::new(".")) {
        return Ok(FolderSource::Local(path));
    }
    if value.starts_with("s3://") {
        return Ok(FolderSource::Remote(value.trim_end_matches('/').to_owned()));
    }
    if let Some((scheme, _)) = value.split_once("://") {
        return Err(format!(
            "{what} {value}: {scheme}:// is not supported here; give a local folder, file:// or s3://"
        ));
    }
    Ok(FolderSource::Local(PathBuf::from(value)))
}

/// The folder as a local path: a local one as it is (it must exist), a remote one
/// downloaded into `target` (created; its contents replaced).
pub fn make_local(source: &FolderSource, target: &Path, what: &str) -> Result<PathBuf, String> {
    match source {
        FolderSource::Local(path) => {
            if !path.is_dir() {
                return Err(format!("{what} {}: no such folder", path.display()));
            }
            Ok(path.clone())
        }
        FolderSource::Remote(uri) => {
            download_folder(uri, target).map_err(|e| format!("{what} {uri}: {e}"))?;
            Ok(target.to_path_buf())
        }
    }
}

/// Downloads every object under `uri` into `target`, refusing a folder whose
/// `COMPLETE` marker does not match what is there.
pub fn download_folder(uri: &str, target: &Path) -> Result<(), String> {
    let storage = Storage::open(uri).map_err(|e| e.to_string())?;
    let marked = storage.get(COMPLETE).map_err(|e| e.to_string())?.is_some();
    if marked && !storage.is_complete("").map_err(|e| e.to_string())? {
        return Err(format!(
            "the folder is incomplete: files its {COMPLETE} marker lists are missing or of another size (still uploading, or damaged)"
        ));
    }
    if target.exists() {
        std::fs::remove_dir_all(target).map_err(|e| format!("{}: {e}", target.display()))?;
    }
    storage.download_dir("", target).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_paths_file_uris_or_s3() {
        assert_eq!(
            parse_folder_source("models/tiny", "--model"),
            Ok(FolderSource::Local("models/tiny".into()))
        );
        assert_eq!(
            parse_folder_source("file:///srv/tiny", "--model"),
            Ok(FolderSource::Local("/srv/tiny".into()))
        );
        assert_eq!(
            parse_folder_source("s3://bucket/runs/final/", "--adapter"),
            Ok(FolderSource::Remote("s3://bucket/runs/final".into()))
        );
        let error = parse_folder_source("gs://bucket/x", "--adapter").unwrap_err();
        assert!(
            error.contains("--adapter gs://bucket/x") && error.contains("gs://"),
            "{error}"
        );
    }

    #[test]
    fn a_local_folder_must_exist() {
        let error = make_local(
            &FolderSource::Local("/no/such/folder".into()),
            Path::new("/tmp"),
            "--model",
        )
        .unwrap_err();
        assert_eq!(error, "--model /no/such/folder: no such folder");
    }

    #[test]
    fn a_folder_whose_marker_lists_a_missing_file_is_refused() {
        let source = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let storage = Storage::open(&format!("file://{}", source.path().display())).unwrap();
        let staged = tempfile::tempdir().unwrap();
        std::fs::write(staged.path().join("adapter_config.json"), b"{}").unwrap();
        std::fs::write(staged.path().join("adapter_model.safetensors"), b"weights").unwrap();
        storage.upload_dir_complete(staged.path(), "ckpt").unwrap();
        let uri = format!("file://{}/ckpt", source.path().display());
        download_folder(&uri, &out.path().join("a")).unwrap();
        assert_eq!(
            std::fs::read(out.path().join("a/adapter_model.safetensors")).unwrap(),
            b"weights"
        );

        std::fs::remove_file(source.path().join("ckpt/adapter_model.safetensors")).unwrap();
        let error = download_folder(&uri, &out.path().join("b")).unwrap_err();
        assert!(error.contains("incomplete"), "{error}");
        assert!(!out.path().join("b").exists());
    }
}
