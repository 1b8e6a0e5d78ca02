//! The one error type of the storage module: every message names the URI or local
//! path it is about, and the cause.

use std::path::PathBuf;

/// Why a storage location could not be opened, read or written.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The URI names no location we know how to open.
    #[error("cannot open storage URI `{uri}`: {reason}")]
    Uri { uri: String, reason: String },

    /// A scheme the design names (gs://, az://) that has no backend yet.
    #[error("cannot open `{uri}`: {scheme}:// storage is not supported yet (use s3:// or file://)")]
    NotSupportedYet { uri: String, scheme: String },

    /// The S3 settings (environment or explicit) are inconsistent or malformed.
    #[error("cannot configure S3 storage for `{uri}`: {reason}")]
    S3Settings { uri: String, reason: String },

    /// A relative path that could escape the location or is not a valid object name.
    #[error("refused path `{path}` under {uri}: {reason}")]
    Path {
        uri: String,
        path: String,
        reason: String,
    },

    /// The object store failed (network, permissions, missing bucket, ...).
    #[error("{action} {uri}: {source}")]
    Store {
        action: &'static str,
        uri: String,
        source: object_store::Error,
    },

    /// Reading or writing a file on this machine failed.
    #[error("{action} {}: {source}", path.display())]
    Local {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },

    /// A local file name that object stores cannot hold as it is (not UTF-8, control characters).
    #[error("cannot upload {}: {reason}", path.display())]
    LocalName { path: PathBuf, reason: String },

    /// A `COMPLETE` marker that is not the JSON `upload_dir_complete` writes.
    #[error("{uri} is not a valid COMPLETE marker: {source}")]
    Marker {
        uri: String,
        source: serde_json::Error,
    },

    /// `download_dir` found no object under the folder (a wrong URI, most likely).
    #[error("nothing to download: no object under {uri}")]
    EmptyFolder { uri: String },

    /// The tokio runtime that drives object_store could not start.
    #[error("cannot start the storage runtime: {source}")]
    Runtime { source: std::io::Error },
}
