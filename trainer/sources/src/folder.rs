//! Model and adapter folders made local: a local folder is read where it is, a remote
//! one downloaded; either is refused when its `COMPLETE` marker lists files that are
//! not there as listed.

use std::path::{Path, PathBuf};

use anneal_crds::hub::HubSettings;
use anneal_crds::storage::{COMPLETE, Storage};

use super::{FolderError, FolderSource, HubCache, SourceError};

/// The folder as a local path: a local one as it is (it must exist), a remote one
/// downloaded into `target` (created; its contents replaced), a hub one fetched into
/// the model cache (`ANNEAL_MODEL_CACHE`) with the hub settings of this process's
/// environment. `what` names the flag or manifest field for the error message.
pub fn make_local(
    source: &FolderSource,
    target: &Path,
    what: &'static str,
) -> Result<PathBuf, SourceError> {
    match source {
        FolderSource::Local(path) => {
            if !path.is_dir() {
                return Err(SourceError::NoSuchFolder {
                    what,
                    path: path.clone(),
                });
            }
            check_local_folder(path, what)?;
            Ok(path.clone())
        }
        FolderSource::Remote(uri) => {
            download_folder(uri, target).map_err(|source| SourceError::Folder {
                what,
                uri: uri.clone(),
                source,
            })?;
            Ok(target.to_path_buf())
        }
        FolderSource::Hub(reference) => {
            let settings = HubSettings::from_env(reference.hub);
            let cache = HubCache::from_env();
            eprintln!(
                "fetching {reference} from {} into the model cache {}",
                settings.endpoint,
                cache.root.display()
            );
            let fetch = cache
                .fetch(reference, settings, &mut |_| {})
                .map_err(|source| SourceError::Hub {
                    what,
                    source: Box::new(source),
                })?;
            eprintln!(
                "{reference}: commit {}, {} bytes downloaded{}",
                fetch.commit,
                fetch.bytes_downloaded,
                if fetch.offline {
                    " (the hub could not be reached: the cached copy is used)"
                } else {
                    ""
                }
            );
            Ok(fetch.dir)
        }
    }
}

/// Refuses a local folder whose `COMPLETE` marker lists files that are missing or of
/// another size (a copy still running, or damage). A folder without a marker, or no
/// folder at all, passes: reading it says what is wrong with it.
pub fn check_local_folder(path: &Path, what: &'static str) -> Result<(), SourceError> {
    if !path.join(COMPLETE).is_file() {
        return Ok(());
    }
    let absolute = std::fs::canonicalize(path).map_err(|source| SourceError::ReadingLocal {
        what,
        path: path.to_path_buf(),
        source,
    })?;
    Storage::open(&format!("file://{}", absolute.display()))
        .map_err(FolderError::from)
        .and_then(|storage| refuse_incomplete(&storage))
        .map_err(|source| SourceError::Folder {
            what,
            uri: path.display().to_string(),
            source,
        })
}

/// Downloads every object under `uri` into `target`, refusing a folder whose
/// `COMPLETE` marker does not match what is there.
pub fn download_folder(uri: &str, target: &Path) -> Result<(), FolderError> {
    let storage = Storage::open(uri)?;
    refuse_incomplete(&storage)?;
    if target.exists() {
        std::fs::remove_dir_all(target).map_err(|source| FolderError::Clearing {
            path: target.to_path_buf(),
            source,
        })?;
    }
    storage.download_dir("", target)?;
    Ok(())
}

fn refuse_incomplete(folder: &Storage) -> Result<(), FolderError> {
    match folder.unmatched_marked_files("")? {
        Some(files) if !files.is_empty() => Err(FolderError::Incomplete { files }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A folder of two files uploaded with its marker under `root/ckpt`; its URI.
    fn marked_folder(root: &Path) -> String {
        let storage = Storage::open(&format!("file://{}", root.display())).unwrap();
        let staged = tempfile::tempdir().unwrap();
        std::fs::write(staged.path().join("adapter_config.json"), b"{}").unwrap();
        std::fs::write(staged.path().join("adapter_model.safetensors"), b"weights").unwrap();
        storage.upload_dir_complete(staged.path(), "ckpt").unwrap();
        format!("file://{}/ckpt", root.display())
    }

    #[test]
    fn a_local_folder_must_exist() {
        let error = make_local(
            &FolderSource::Local("/no/such/folder".into()),
            Path::new("/tmp"),
            "--model",
        )
        .unwrap_err();
        assert_eq!(error.to_string(), "--model /no/such/folder: no such folder");
    }

    #[test]
    fn a_downloaded_folder_whose_marker_lists_a_missing_file_is_refused() {
        let source = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let uri = marked_folder(source.path());
        download_folder(&uri, &out.path().join("a")).unwrap();
        assert_eq!(
            std::fs::read(out.path().join("a/adapter_model.safetensors")).unwrap(),
            b"weights"
        );

        std::fs::remove_file(source.path().join("ckpt/adapter_model.safetensors")).unwrap();
        let error = download_folder(&uri, &out.path().join("b"))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("incomplete") && error.ends_with(": adapter_model.safetensors"),
            "{error}"
        );
        assert!(!out.path().join("b").exists());
    }

    #[test]
    fn a_local_folder_whose_marker_lists_a_resized_file_is_refused() {
        let root = tempfile::tempdir().unwrap();
        marked_folder(root.path());
        let folder = FolderSource::Local(root.path().join("ckpt"));
        assert_eq!(
            make_local(&folder, Path::new("/unused"), "--adapter").unwrap(),
            root.path().join("ckpt")
        );

        std::fs::write(root.path().join("ckpt/adapter_config.json"), b"{ }").unwrap();
        let error = make_local(&folder, Path::new("/unused"), "--adapter")
            .unwrap_err()
            .to_string();
        let expected = format!("--adapter {}: ", root.path().join("ckpt").display());
        assert!(
            error.starts_with(&expected)
                && error.contains("incomplete")
                && error.ends_with(": adapter_config.json"),
            "{error}"
        );
    }

    #[test]
    fn a_local_folder_without_a_marker_is_taken_as_it_is() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("config.json"), b"{}").unwrap();
        check_local_folder(root.path(), "--model").unwrap();
        check_local_folder(Path::new("/no/such/folder"), "--model").unwrap();
    }
}
