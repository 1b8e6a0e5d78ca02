//! The local side of folder transfers: which files a folder holds, writing downloaded
//! files whole, and clearing the empty folders a deletion leaves behind.

use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use super::StorageError;

/// A file found under a local folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LocalFile {
    /// Its path below the folder, `/`-separated (`a/b.txt`): its object name.
    pub name: String,
    pub path: PathBuf,
    pub size: u64,
}

/// Every file under `folder`, recursively, sorted by name. Symbolic links are followed
/// (a checkpoint folder may link to shared files); anything else that is not a plain
/// file or folder is skipped.
pub(super) fn files_under(folder: &Path) -> Result<Vec<LocalFile>, StorageError> {
    let mut files = Vec::new();
    collect_files(folder, "", &mut files)?;
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

fn collect_files(
    dir: &Path,
    name_prefix: &str,
    files: &mut Vec<LocalFile>,
) -> Result<(), StorageError> {
    for entry in fs::read_dir(dir).map_err(local_error("cannot list", dir))? {
        let path = entry.map_err(local_error("cannot list", dir))?.path();
        let name = format!("{name_prefix}{}", file_name(&path)?);
        let metadata = fs::metadata(&path).map_err(local_error("cannot read", &path))?;
        if metadata.is_dir() {
            collect_files(&path, &format!("{name}/"), files)?;
        } else if metadata.is_file() {
            let size = metadata.len();
            files.push(LocalFile { name, path, size });
        }
    }
    Ok(())
}

/// A file's name as an object name segment: object names are UTF-8.
fn file_name(path: &Path) -> Result<&str, StorageError> {
    path.file_name()
        .and_then(|name| name.to_str())
        .ok_or_else(|| StorageError::LocalName {
            path: path.to_path_buf(),
            reason: "its name is not UTF-8".to_string(),
        })
}

/// A downloaded file being written: chunks go to a sibling temporary file that
/// `finish` renames into place, so an interrupted download never leaves a truncated
/// file that looks whole.
pub(super) struct PartialFile {
    file: fs::File,
    partial: PathBuf,
    target: PathBuf,
}

impl PartialFile {
    /// Starts writing `target`, creating its folder.
    pub(super) fn create(target: &Path) -> Result<PartialFile, StorageError> {
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(local_error("cannot create", parent))?;
        }
        let mut partial_name = target.file_name().unwrap_or_default().to_os_string();
        partial_name.push(".anneal-partial");
        let partial = target.with_file_name(partial_name);
        let file = fs::File::create(&partial).map_err(local_error("cannot create", &partial))?;
        Ok(PartialFile {
            file,
            partial,
            target: target.to_path_buf(),
        })
    }

    pub(super) fn write(&mut self, chunk: &[u8]) -> Result<(), StorageError> {
        self.file
            .write_all(chunk)
            .map_err(local_error("cannot write", &self.partial))
    }

    /// Puts the file in place under its name.
    pub(super) fn finish(mut self) -> Result<(), StorageError> {
        self.file
            .flush()
            .map_err(local_error("cannot write", &self.partial))?;
        fs::rename(&self.partial, &self.target)
            .map_err(local_error("cannot rename into place", &self.target))
    }
}

impl Drop for PartialFile {
    /// A download that failed leaves nothing behind (after `finish` there is nothing to remove).
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.partial);
    }
}

/// Removes `dir` and the folders under it that hold no files (after a deletion on a
/// `file://` location, so that listings match what an object store would show).
pub(super) fn remove_empty_folders(dir: &Path) -> Result<(), StorageError> {
    let entries = match fs::read_dir(dir) {
        Err(error) if error.kind() == ErrorKind::NotFound => return Ok(()),
        entries => entries.map_err(local_error("cannot list", dir))?,
    };
    for entry in entries {
        let entry = entry.map_err(local_error("cannot list", dir))?;
        if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            remove_empty_folders(&entry.path())?;
        }
    }
    match fs::remove_dir(dir) {
        // Not empty: it still holds files, which stay.
        Err(error)
            if !matches!(
                error.kind(),
                ErrorKind::DirectoryNotEmpty | ErrorKind::NotFound
            ) =>
        {
            Err(local_error("cannot remove", dir)(error))
        }
        _ => Ok(()),
    }
}

/// Wraps an I/O error with what we were doing and to which path.
pub(super) fn local_error(
    action: &'static str,
    path: &Path,
) -> impl FnOnce(std::io::Error) -> StorageError {
    let path = path.to_path_buf();
    move |source| StorageError::Local {
        action,
        path,
        source,
    }
}
