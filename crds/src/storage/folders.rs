//! Whole folders: uploading a local folder with its `COMPLETE` marker last, checking
//! the marker, downloading a folder, and deleting one marker first.

use std::collections::{HashMap, HashSet};
use std::io::Read;

use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStoreExt, WriteMultipart};
use serde::{Deserialize, Serialize};

use super::local_files::{self, LocalFile, PartialFile, local_error};
use super::location::{self, Backend};
use super::{AsyncStorage, StorageError};

/// The marker a finished upload writes last in its folder.
pub const COMPLETE: &str = "COMPLETE";

/// Files up to this size go up in one request; larger ones in parts of `PART_SIZE`
/// (S3 wants parts of at least 5 MiB, and at most 10,000 of them: 160 GiB a file).
const SINGLE_PUT_LIMIT: u64 = 16 * 1024 * 1024;
const PART_SIZE: usize = 16 * 1024 * 1024;
/// Parts uploading at once for one file: bounds memory to about 4 x `PART_SIZE`.
const PARTS_IN_FLIGHT: usize = 4;
const READ_CHUNK: usize = 1024 * 1024;

/// The content of a `COMPLETE` marker: what the folder must hold to be whole.
#[derive(Debug, Serialize, Deserialize)]
struct CompleteMarker {
    files: Vec<MarkedFile>,
}

#[derive(Debug, Serialize, Deserialize)]
struct MarkedFile {
    /// The path below the folder, `/`-separated.
    name: String,
    size: u64,
}

impl AsyncStorage {
    /// Uploads every file under the local folder `local` (recursively) to `relative/`,
    /// then writes `relative/COMPLETE` last (a JSON list of file names and sizes), so a
    /// reader that finds the marker knows the folder is whole.
    ///
    /// Uploading again is fine, also with other content: the old marker is removed
    /// first, files it listed that the new upload lacks are removed before the new
    /// marker is written (objects no marker listed are left alone), and a local
    /// `COMPLETE` file (from a download) is not uploaded.
    pub async fn upload_dir_complete(
        &self,
        local: &std::path::Path,
        relative: &str,
    ) -> Result<(), StorageError> {
        let folder = self.path(relative)?;
        let files: Vec<LocalFile> = local_files::files_under(local)?
            .into_iter()
            .filter(|file| file.name != COMPLETE)
            .collect();
        // Every name is checked before anything is written.
        let targets = files
            .iter()
            .map(|file| object_path_for(&folder, file))
            .collect::<Result<Vec<_>, _>>()?;

        let marker = folder.clone().join(COMPLETE);
        let previous = self.read_marker(&marker).await?;
        self.delete_if_present(&marker).await?;
        for (file, target) in files.iter().zip(&targets) {
            self.upload_file(file, target).await?;
        }
        if let Some(previous) = previous {
            let uploaded: HashSet<&str> = files.iter().map(|file| file.name.as_str()).collect();
            let stale = previous
                .files
                .iter()
                .filter(|file| !uploaded.contains(file.name.as_str()))
                .map(|file| self.marked_path(&folder, &marker, &file.name))
                .collect::<Result<Vec<_>, _>>()?;
            self.delete_paths(&folder, stale).await?;
        }
        self.put_path(&marker, marker_json(&files)).await
    }

    /// Whether `relative/COMPLETE` exists and every file it lists exists with its size.
    pub async fn is_complete(&self, relative: &str) -> Result<bool, StorageError> {
        Ok(self
            .unmatched_marked_files(relative)
            .await?
            .is_some_and(|unmatched| unmatched.is_empty()))
    }

    /// The files `relative/COMPLETE` lists that are missing or of another size (empty
    /// when the folder is whole); `None` when there is no marker. Readers that refuse
    /// a half-uploaded folder name these files in their message.
    pub async fn unmatched_marked_files(
        &self,
        relative: &str,
    ) -> Result<Option<Vec<String>>, StorageError> {
        let folder = self.path(relative)?;
        let Some(marker) = self.read_marker(&folder.clone().join(COMPLETE)).await? else {
            return Ok(None);
        };
        let sizes: HashMap<String, u64> = self
            .list_objects(&folder)
            .await?
            .into_iter()
            .filter_map(|object| {
                Some((
                    location::relative_name(&object.location, &folder)?,
                    object.size,
                ))
            })
            .collect();
        Ok(Some(
            marker
                .files
                .into_iter()
                .filter(|file| sizes.get(&file.name) != Some(&file.size))
                .map(|file| file.name)
                .collect(),
        ))
    }

    /// Downloads every object under `relative/` (the `COMPLETE` marker too) into the
    /// local folder `local`, creating it. Each file appears whole or not at all.
    /// Finding no object at all is an error: it is almost always a wrong URI.
    pub async fn download_dir(
        &self,
        relative: &str,
        local: &std::path::Path,
    ) -> Result<(), StorageError> {
        let folder = self.path(relative)?;
        let objects = self.list_objects(&folder).await?;
        if objects.is_empty() {
            let uri = self.backend.uri_of(&folder);
            return Err(StorageError::EmptyFolder { uri });
        }
        std::fs::create_dir_all(local).map_err(local_error("cannot create", local))?;
        for object in objects {
            let Some(name) = location::relative_name(&object.location, &folder) else {
                continue;
            };
            let target = name
                .split('/')
                .fold(local.to_path_buf(), |path, part| path.join(part));
            self.download_object(&object.location, &target).await?;
        }
        Ok(())
    }

    /// Every object under `relative/`, as its name within the folder (`/`-separated,
    /// so files in subfolders show theirs) and its size in bytes, sorted by name.
    pub async fn list_files(&self, relative: &str) -> Result<Vec<(String, u64)>, StorageError> {
        let folder = self.path(relative)?;
        let mut files: Vec<(String, u64)> = self
            .list_objects(&folder)
            .await?
            .into_iter()
            .filter_map(|object| {
                location::relative_name(&object.location, &folder).map(|name| (name, object.size))
            })
            .collect();
        files.sort();
        Ok(files)
    }

    /// Removes everything under `relative/`, the `COMPLETE` marker first so that a
    /// half-deleted folder is never taken as complete.
    pub async fn delete_dir(&self, relative: &str) -> Result<(), StorageError> {
        let folder = self.path(relative)?;
        self.delete_if_present(&folder.clone().join(COMPLETE))
            .await?;
        let objects = self.list_objects(&folder).await?;
        self.delete_paths(
            &folder,
            objects.into_iter().map(|object| object.location).collect(),
        )
        .await
    }

    /// The marker at `path`, `None` when there is none.
    async fn read_marker(&self, path: &Path) -> Result<Option<CompleteMarker>, StorageError> {
        let Some(bytes) = self.get_path(path).await? else {
            return Ok(None);
        };
        let marker = serde_json::from_slice(&bytes).map_err(|source| StorageError::Marker {
            uri: self.backend.uri_of(path),
            source,
        })?;
        Ok(Some(marker))
    }

    /// The object a marker lists; a name that would leave the folder makes the marker invalid.
    fn marked_path(&self, folder: &Path, marker: &Path, name: &str) -> Result<Path, StorageError> {
        location::join(folder, name).map_err(|reason| StorageError::Path {
            uri: self.backend.uri_of(marker),
            path: name.to_string(),
            reason,
        })
    }

    async fn upload_file(&self, file: &LocalFile, target: &Path) -> Result<(), StorageError> {
        if file.size <= SINGLE_PUT_LIMIT {
            let bytes =
                std::fs::read(&file.path).map_err(local_error("cannot read", &file.path))?;
            return self.put_path(target, bytes).await;
        }
        self.upload_in_parts(file, target).await
    }

    /// A large file, streamed up in parts: it is never all in memory.
    async fn upload_in_parts(&self, file: &LocalFile, target: &Path) -> Result<(), StorageError> {
        let upload = self
            .store
            .put_multipart(target)
            .await
            .map_err(self.store_error("cannot start uploading", target))?;
        let mut parts = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        if let Err(error) = self.write_parts(&mut parts, file, target).await {
            // Best effort: the error that stopped the upload is the one to report.
            let _ = parts.abort().await;
            return Err(error);
        }
        parts
            .finish()
            .await
            .map(drop)
            .map_err(self.store_error("cannot upload", target))
    }

    async fn write_parts(
        &self,
        parts: &mut WriteMultipart,
        file: &LocalFile,
        target: &Path,
    ) -> Result<(), StorageError> {
        let mut reader =
            std::fs::File::open(&file.path).map_err(local_error("cannot read", &file.path))?;
        let mut chunk = vec![0; READ_CHUNK];
        loop {
            parts
                .wait_for_capacity(PARTS_IN_FLIGHT)
                .await
                .map_err(self.store_error("cannot upload", target))?;
            // A blocking read of at most READ_CHUNK: folders are uploaded by the trainer,
            // through `Storage` and its own runtime; the part uploads progress while we
            // wait for capacity above.
            let read = reader
                .read(&mut chunk)
                .map_err(local_error("cannot read", &file.path))?;
            if read == 0 {
                return Ok(());
            }
            parts.write(&chunk[..read]);
        }
    }

    /// Streams one object to the local file `to` (whole or not at all, as
    /// `download_dir` does), never holding more than a chunk of it in memory; `false`
    /// when there is no such object.
    pub async fn download_file(
        &self,
        relative: &str,
        to: &std::path::Path,
    ) -> Result<bool, StorageError> {
        let from = self.path(relative)?;
        match self.store.head(&from).await {
            Ok(_) => {}
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(error) => return Err(self.store_error("cannot read", &from)(error)),
        }
        self.download_object(&from, to).await?;
        Ok(true)
    }

    async fn download_object(&self, from: &Path, to: &std::path::Path) -> Result<(), StorageError> {
        let result = self
            .store
            .get(from)
            .await
            .map_err(self.store_error("cannot read", from))?;
        let mut chunks = result.into_stream();
        let mut file = PartialFile::create(to)?;
        while let Some(chunk) = chunks
            .try_next()
            .await
            .map_err(self.store_error("cannot read", from))?
        {
            file.write(&chunk)?;
        }
        file.finish()
    }

    async fn delete_if_present(&self, path: &Path) -> Result<(), StorageError> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(self.store_error("cannot delete", path)(error)),
        }
    }

    /// Deletes `doomed` (objects under `folder`), and on disk the folders this empties:
    /// object stores have no folders, and listings must agree.
    async fn delete_paths(&self, folder: &Path, doomed: Vec<Path>) -> Result<(), StorageError> {
        if doomed.is_empty() {
            return Ok(());
        }
        let doomed = futures_util::stream::iter(doomed.into_iter().map(Ok)).boxed();
        let deletions = self
            .store
            .delete_stream(doomed)
            // Already gone (a concurrent delete) is what we wanted.
            .filter(|result| {
                std::future::ready(!matches!(result, Err(object_store::Error::NotFound { .. })))
            })
            .try_collect::<Vec<Path>>();
        deletions
            .await
            .map_err(self.store_error("cannot delete under", folder))?;
        if self.backend == Backend::LocalFiles {
            local_files::remove_empty_folders(&std::path::PathBuf::from(format!("/{folder}")))?;
        }
        Ok(())
    }
}

/// Where a local file goes under `folder`; names object stores cannot hold are refused.
fn object_path_for(folder: &Path, file: &LocalFile) -> Result<Path, StorageError> {
    location::join(folder, &file.name).map_err(|reason| StorageError::LocalName {
        path: file.path.clone(),
        reason,
    })
}

fn marker_json(files: &[LocalFile]) -> Vec<u8> {
    let marker = CompleteMarker {
        files: files
            .iter()
            .map(|file| MarkedFile {
                name: file.name.clone(),
                size: file.size,
            })
            .collect(),
    };
    serde_json::to_vec_pretty(&marker).expect("a list of names and sizes serializes")
}
