//! A dataset file named by a manifest: `file://` (relative to the manifest's folder)
//! used where it is, any storage URI streamed into the work folder. Either way the
//! trainer then reads it line by line: a dataset of many gigabytes is never in memory.

use std::path::{Path, PathBuf};

use anneal_crds::storage::Storage;

use super::SourceError;
use crate::local_paths::resolve_file_uri;

/// The file's name (for messages) and a local path to read it from; a remote file is
/// downloaded into `work_dir`. `what` names the manifest field. Only regular files are
/// taken: a FIFO or a device (`/dev/zero`) would never end.
pub fn fetch_file(
    uri: &str,
    manifest_dir: &Path,
    work_dir: &Path,
    what: &'static str,
) -> Result<(String, PathBuf), SourceError> {
    if let Some(path) = resolve_file_uri(uri, manifest_dir) {
        let local_error = |source| SourceError::ReadingLocal {
            what,
            path: path.clone(),
            source,
        };
        let metadata = std::fs::metadata(&path).map_err(local_error)?;
        if !metadata.is_file() {
            return Err(local_error(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a regular file (a FIFO, device or folder cannot be a dataset)",
            )));
        }
        return Ok((path.display().to_string(), path));
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
    // One folder per field, so train and validation files of the same name do not meet.
    let local = work_dir
        .join("datasets")
        .join(what.rsplit('.').next().unwrap_or(what))
        .join(name);
    let found = Storage::open(folder)
        .and_then(|storage| storage.download_file(name, &local))
        .map_err(storage_error)?;
    if !found {
        return Err(SourceError::NoSuchFile {
            what,
            uri: uri.to_owned(),
        });
    }
    Ok((uri.to_owned(), local))
}

#[cfg(test)]
mod tests {
    use super::*;

    const WHAT: &str = "spec.dataset.train";

    #[test]
    fn a_file_uri_is_read_relative_to_the_manifest() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("train.jsonl"), b"{}\n").unwrap();
        let (name, path) = fetch_file("file://train.jsonl", dir.path(), dir.path(), WHAT).unwrap();
        assert_eq!(name, dir.path().join("train.jsonl").display().to_string());
        assert_eq!(path, dir.path().join("train.jsonl"));

        let error = fetch_file("file://missing.jsonl", dir.path(), dir.path(), WHAT)
            .unwrap_err()
            .to_string();
        let expected = format!("{WHAT}: {}: ", dir.path().join("missing.jsonl").display());
        assert!(error.starts_with(&expected), "{error}");
    }

    #[test]
    fn a_fifo_or_a_device_is_not_a_dataset() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo.jsonl");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        for path in [fifo.as_path(), Path::new("/dev/zero"), dir.path()] {
            let uri = format!("file://{}", path.display());
            let error = fetch_file(&uri, dir.path(), dir.path(), WHAT)
                .unwrap_err()
                .to_string();
            assert!(
                error.starts_with(&format!("{WHAT}: {}: ", path.display()))
                    && error.ends_with(
                        "not a regular file (a FIFO, device or folder cannot be a dataset)"
                    ),
                "{error}"
            );
        }
    }

    #[test]
    fn uris_naming_no_file_or_no_store_are_refused_by_field() {
        let error = |uri: &str| {
            fetch_file(uri, Path::new("/unused"), Path::new("/unused"), WHAT)
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
