//! Why a source could not be brought here: each message names the flag or manifest
//! field and the path or URI it was given.

use std::path::PathBuf;

use anneal_crds::storage::{COMPLETE, StorageError};

/// Why a folder could not be downloaded or was refused, before naming whose it is.
#[derive(Debug, thiserror::Error)]
pub enum FolderError {
    /// The `COMPLETE` marker lists files that are not there as listed.
    #[error(
        "the folder is incomplete: files its {COMPLETE} marker lists are missing or of another size (still uploading, or damaged): {}",
        files.join(", ")
    )]
    Incomplete { files: Vec<String> },

    // Boxed: object_store's errors are large, and every `Result` here would carry one.
    #[error(transparent)]
    Storage(Box<StorageError>),

    /// The previous download in the target folder could not be removed.
    #[error("{}: {source}", path.display())]
    Clearing {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl From<StorageError> for FolderError {
    fn from(error: StorageError) -> Self {
        Self::Storage(Box::new(error))
    }
}

/// Why a model, adapter or dataset named by `what` (a flag or manifest field) could
/// not be brought onto this machine.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(
        "{what} {value}: {scheme}:// is not supported here; give a local folder, file://, s3://, hf:// or modelscope://"
    )]
    UnsupportedScheme {
        what: &'static str,
        value: String,
        scheme: String,
    },

    /// A manifest URI of a scheme this trainer cannot fetch (`pvc://`, a bare name).
    #[error(
        "{what}: {uri} cannot be fetched by this trainer (file://, s3://, hf:// and modelscope:// can)"
    )]
    NotFetchable { what: &'static str, uri: String },

    /// A hub URI of the wrong form.
    #[error("{what}: {problem}")]
    BadHubUri { what: &'static str, problem: String },

    /// A hub repository that could not be resolved or downloaded.
    #[error("{what}: {source}")]
    Hub {
        what: &'static str,
        source: Box<anneal_crds::hub::HubError>,
    },

    #[error("{what} {}: no such folder", path.display())]
    NoSuchFolder { what: &'static str, path: PathBuf },

    #[error("{what} {uri}: {source}")]
    Folder {
        what: &'static str,
        uri: String,
        source: FolderError,
    },

    /// A dataset URI that ends in a folder, not a file.
    #[error("{what}: {uri} names no file")]
    NamesNoFile { what: &'static str, uri: String },

    #[error("{what}: {uri} does not exist")]
    NoSuchFile { what: &'static str, uri: String },

    #[error("{what} {uri}: {source}")]
    Storage {
        what: &'static str,
        uri: String,
        source: Box<StorageError>,
    },

    #[error("{what}: {}: {source}", path.display())]
    ReadingLocal {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

impl SourceError {
    /// Whether trying again later may succeed: storage that failed on the way, a
    /// folder still uploading. A wrong value (scheme, URI, missing object) never will.
    pub fn may_pass_on_retry(&self) -> bool {
        match self {
            SourceError::Folder { source, .. } => match source {
                FolderError::Incomplete { .. } | FolderError::Clearing { .. } => true,
                FolderError::Storage(error) => storage_may_pass_on_retry(error),
            },
            SourceError::Storage { source, .. } => storage_may_pass_on_retry(source),
            SourceError::Hub { source, .. } => source.may_pass_on_retry(),
            _ => false,
        }
    }
}

/// A store or the disk that failed, rather than a URI or settings that are wrong, or a
/// folder with nothing under it.
fn storage_may_pass_on_retry(error: &StorageError) -> bool {
    !matches!(
        error,
        StorageError::Uri { .. }
            | StorageError::NotSupportedYet { .. }
            | StorageError::S3Settings { .. }
            | StorageError::EmptyFolder { .. }
    )
}
