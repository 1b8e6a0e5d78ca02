//! Turning the `file://` URIs of a manifest into paths on this machine.
//!
//! Local mode reads the same YAML a cluster would, so its `file://` URIs are
//! resolved relative to the manifest's folder (`file://data/train.jsonl`), or
//! taken as they are when absolute (`file:///srv/data/train.jsonl`).

use std::path::{Path, PathBuf};

/// The local path a `file://` URI names, or `None` for any other scheme.
pub fn resolve_file_uri(uri: &str, manifest_dir: &Path) -> Option<PathBuf> {
    let path = uri.strip_prefix("file://")?;
    let path = Path::new(path);
    Some(if path.is_absolute() {
        path.to_path_buf()
    } else {
        manifest_dir.join(path)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_uris_resolve_against_the_manifest_folder() {
        let dir = Path::new("/jobs");
        assert_eq!(
            resolve_file_uri("file://data/train.jsonl", dir),
            Some(PathBuf::from("/jobs/data/train.jsonl"))
        );
        assert_eq!(
            resolve_file_uri("file:///srv/train.jsonl", dir),
            Some(PathBuf::from("/srv/train.jsonl"))
        );
        assert_eq!(resolve_file_uri("s3://bucket/train.jsonl", dir), None);
    }
}
