//! Storage URIs and the paths inside them: which backend a URI names, and the checks
//! that keep every relative path inside its location.

use object_store::path::{Path, PathPart};

use super::StorageError;

/// The store a URI names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Backend {
    /// This machine's file system (object_store's LocalFileSystem rooted at `/`).
    LocalFiles,
    /// An S3 (or S3-compatible: MinIO, Ceph, moto) bucket.
    S3 { bucket: String },
}

impl Backend {
    /// The URI of a path inside this backend: `file:///abs/dir`, `s3://bucket/prefix`.
    pub(super) fn uri_of(&self, path: &Path) -> String {
        match self {
            Backend::LocalFiles => format!("file:///{path}"),
            Backend::S3 { bucket } if path.is_root() => format!("s3://{bucket}"),
            Backend::S3 { bucket } => format!("s3://{bucket}/{path}"),
        }
    }
}

/// What a URI names: a backend, and the location's path inside it.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct ParsedUri {
    pub backend: Backend,
    pub prefix: Path,
}

/// Parses `file:///abs/dir` or `s3://bucket/prefix`; gs:// and az:// are named as not
/// supported yet, anything else is an error naming the URI.
pub(super) fn parse_uri(uri: &str) -> Result<ParsedUri, StorageError> {
    let invalid = |reason: String| StorageError::Uri {
        uri: uri.to_string(),
        reason,
    };
    let Some((scheme, rest)) = uri.split_once("://") else {
        return Err(invalid(
            "expected file:///absolute/folder or s3://bucket/prefix".to_string(),
        ));
    };
    match scheme {
        "file" => file_location(rest).map_err(invalid),
        "s3" => s3_location(rest).map_err(invalid),
        "gs" | "az" | "azure" | "abfs" | "abfss" => Err(StorageError::NotSupportedYet {
            uri: uri.to_string(),
            scheme: scheme.to_string(),
        }),
        _ => Err(invalid(format!(
            "unsupported scheme `{scheme}://` (expected file:// or s3://)"
        ))),
    }
}

/// `file:///abs/dir` names `/abs/dir`. Relative file URIs (`file://data`) are refused:
/// local mode resolves them against the manifest's folder before opening storage.
fn file_location(rest: &str) -> Result<ParsedUri, String> {
    let Some(absolute) = rest.strip_prefix('/') else {
        return Err(
            "a file:// location must be an absolute path (file:///folder); \
             resolve relative ones against the manifest's folder first"
                .to_string(),
        );
    };
    let prefix = join(&Path::ROOT, absolute)?;
    if prefix.is_root() {
        // Deleting or listing "everything under /" is never what a job means.
        return Err("a file:// location must name a folder, not `/`".to_string());
    }
    Ok(ParsedUri {
        backend: Backend::LocalFiles,
        prefix,
    })
}

fn s3_location(rest: &str) -> Result<ParsedUri, String> {
    let (bucket, key_prefix) = rest.split_once('/').unwrap_or((rest, ""));
    check_bucket_name(bucket)?;
    Ok(ParsedUri {
        backend: Backend::S3 {
            bucket: bucket.to_string(),
        },
        prefix: join(&Path::ROOT, key_prefix)?,
    })
}

/// Bucket names become part of request URLs (path or host), so only the characters
/// S3 and its look-alikes allow in them get through.
fn check_bucket_name(bucket: &str) -> Result<(), String> {
    if bucket.is_empty() {
        return Err("no bucket name (expected s3://bucket/prefix)".to_string());
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
    if !bucket.chars().all(allowed) {
        return Err(format!(
            "`{bucket}` is not a bucket name (letters, digits, `.`, `-`, `_`)"
        ));
    }
    Ok(())
}

/// `base` joined with the `/`-separated segments of `relative`. Empty segments are
/// skipped (`a//b`, leading and trailing slashes); `.` and `..` are refused so that no
/// path leaves its location, and so are characters object names cannot hold.
pub(super) fn join(base: &Path, relative: &str) -> Result<Path, String> {
    relative
        .split('/')
        .filter(|segment| !segment.is_empty())
        .try_fold(base.clone(), |path, segment| Ok(path.join(part(segment)?)))
}

fn part(segment: &str) -> Result<PathPart<'_>, String> {
    match segment {
        "." | ".." => Err(format!(
            "`{segment}` is not allowed: paths stay inside their location"
        )),
        _ => PathPart::parse(segment).map_err(|error| error.to_string()),
    }
}

/// The path of `location` below `folder` (`a/b.txt`), or `None` when it is not below it.
pub(super) fn relative_name(location: &Path, folder: &Path) -> Option<String> {
    let parts: Vec<String> = location
        .prefix_match(folder)?
        .map(|part| part.as_ref().to_string())
        .collect();
    (!parts.is_empty()).then(|| parts.join("/"))
}
