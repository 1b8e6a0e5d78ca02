//! An image folder on the local disk: its listing, for `trainer validate` and the
//! trainer's loader alike.

use std::path::{Path, PathBuf};

use super::FolderFile;

/// Every regular file under `folder`, by its `/`-separated path within it; an error
/// names the folder or file that could not be read.
pub fn list_local_folder(folder: &Path) -> Result<Vec<FolderFile>, (PathBuf, std::io::Error)> {
    let mut files = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let dir = folder.join(&relative);
        let entries = std::fs::read_dir(&dir).map_err(|e| (dir.clone(), e))?;
        for entry in entries {
            let entry = entry.map_err(|e| (dir.clone(), e))?;
            let path = relative.join(entry.file_name());
            let metadata = entry.metadata().map_err(|e| (folder.join(&path), e))?;
            if metadata.is_dir() {
                pending.push(path);
            } else if metadata.is_file() {
                files.push(FolderFile {
                    name: path.to_string_lossy().replace('\\', "/"),
                    size: metadata.len(),
                });
            }
        }
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}
