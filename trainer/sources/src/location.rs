//! Where a model or adapter folder is, read from a command-line flag (a path,
//! `file://`, `s3://`, `hf://` or `modelscope://`) or from a manifest (the same, with
//! `file://` relative to the manifest's folder).

use std::path::{Path, PathBuf};

use anneal_crds::hub::HubRef;

use super::SourceError;
use crate::local_paths::resolve_file_uri;

/// Where a folder is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FolderSource {
    /// A path on this machine (a plain path or a `file://` URI).
    Local(PathBuf),
    /// Object storage to download from (`s3://`).
    Remote(String),
    /// A model hub repository, fetched through the model cache.
    Hub(HubRef),
}

impl FolderSource {
    /// Reads a `--model` / `--adapter` value: a path, `file://`, `s3://`, `hf://` or
    /// `modelscope://`. `what` names the flag for the error message.
    pub fn from_flag(value: &str, what: &'static str) -> Result<Self, SourceError> {
        if let Some(path) = resolve_file_uri(value, Path::new(".")) {
            return Ok(Self::Local(path));
        }
        if value.starts_with("s3://") {
            return Ok(Self::Remote(value.trim_end_matches('/').to_owned()));
        }
        if let Some(hub) = hub_source(value, what)? {
            return Ok(hub);
        }
        if let Some((scheme, _)) = value.split_once("://") {
            return Err(SourceError::UnsupportedScheme {
                what,
                value: value.to_owned(),
                scheme: scheme.to_owned(),
            });
        }
        Ok(Self::Local(PathBuf::from(value)))
    }

    /// Reads a manifest's URI (`spec.baseModel.source`): `file://` resolved against
    /// `manifest_dir`, `s3://`, `hf://` or `modelscope://`. Anything else (`pvc://`,
    /// `gs://`) is refused: in a cluster the operator mounts or rewrites it.
    pub fn from_manifest(
        uri: &str,
        manifest_dir: &Path,
        what: &'static str,
    ) -> Result<Self, SourceError> {
        if let Some(path) = resolve_file_uri(uri, manifest_dir) {
            return Ok(Self::Local(path));
        }
        if uri.starts_with("s3://") {
            return Ok(Self::Remote(uri.trim_end_matches('/').to_owned()));
        }
        if let Some(hub) = hub_source(uri, what)? {
            return Ok(hub);
        }
        Err(SourceError::NotFetchable {
            what,
            uri: uri.to_owned(),
        })
    }
}

/// A hub URI's source, `None` for other schemes.
fn hub_source(uri: &str, what: &'static str) -> Result<Option<FolderSource>, SourceError> {
    match HubRef::parse(uri) {
        None => Ok(None),
        Some(Ok(reference)) => Ok(Some(FolderSource::Hub(reference))),
        Some(Err(problem)) => Err(SourceError::BadHubUri { what, problem }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_paths_file_uris_or_s3() {
        assert_eq!(
            FolderSource::from_flag("models/tiny", "--model").unwrap(),
            FolderSource::Local("models/tiny".into())
        );
        assert_eq!(
            FolderSource::from_flag("file:///srv/tiny", "--model").unwrap(),
            FolderSource::Local("/srv/tiny".into())
        );
        assert_eq!(
            FolderSource::from_flag("s3://bucket/runs/final/", "--adapter").unwrap(),
            FolderSource::Remote("s3://bucket/runs/final".into())
        );
        let error = FolderSource::from_flag("gs://bucket/x", "--adapter")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("--adapter gs://bucket/x") && error.contains("gs://"),
            "{error}"
        );
    }

    #[test]
    fn hub_flags_name_a_repository_or_say_the_form() {
        assert!(matches!(
            FolderSource::from_flag("modelscope://qwen/Qwen2.5-0.5B-Instruct", "--model").unwrap(),
            FolderSource::Hub(_)
        ));
        let error = FolderSource::from_flag("hf://Qwen", "--model")
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "--model: hf:// takes the form hf://ORG/NAME[@REVISION], got \"hf://Qwen\""
        );
    }

    #[test]
    fn manifest_uris_are_file_relative_to_the_manifest_or_s3() {
        let dir = Path::new("/jobs");
        let what = "spec.baseModel.source";
        assert_eq!(
            FolderSource::from_manifest("file://models/tiny", dir, what).unwrap(),
            FolderSource::Local("/jobs/models/tiny".into())
        );
        assert_eq!(
            FolderSource::from_manifest("s3://bucket/models/tiny", dir, what).unwrap(),
            FolderSource::Remote("s3://bucket/models/tiny".into())
        );
        assert_eq!(
            FolderSource::from_manifest("hf://Qwen/Qwen2.5-0.5B-Instruct@main", dir, what).unwrap(),
            FolderSource::Hub(
                HubRef::parse("hf://Qwen/Qwen2.5-0.5B-Instruct@main")
                    .unwrap()
                    .unwrap()
            )
        );
        for uri in ["pvc://models/tiny", "models/tiny"] {
            let error = FolderSource::from_manifest(uri, dir, what)
                .unwrap_err()
                .to_string();
            assert_eq!(
                error,
                format!(
                    "{what}: {uri} cannot be fetched by this trainer (file://, s3://, hf:// and modelscope:// can)"
                )
            );
        }
    }
}
