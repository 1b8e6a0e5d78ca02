//! The blocking facade over [`AsyncStorage`], for the trainer, whose loop is
//! synchronous: each location owns a small current-thread tokio runtime (shared with
//! its children) and every call blocks on it. Calling it from inside another tokio
//! runtime panics: async code (the operator) uses [`AsyncStorage`] directly.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use tokio::runtime::Runtime;

use super::{AsyncStorage, StorageError};

/// One storage location, with blocking methods; see [`AsyncStorage`] for what each does.
#[derive(Clone, Debug)]
pub struct Storage {
    inner: AsyncStorage,
    runtime: Arc<Runtime>,
}

impl Storage {
    /// [`AsyncStorage::open`], with the runtime its calls block on.
    pub fn open(uri: &str) -> Result<Storage, StorageError> {
        Storage::with_runtime(AsyncStorage::open(uri)?)
    }

    /// [`AsyncStorage::open_with`], with the runtime its calls block on.
    pub fn open_with<K, V>(
        uri: &str,
        settings: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Storage, StorageError>
    where
        K: Into<String>,
        V: Into<String>,
    {
        Storage::with_runtime(AsyncStorage::open_with(uri, settings)?)
    }

    fn with_runtime(inner: AsyncStorage) -> Result<Storage, StorageError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| StorageError::Runtime { source })?;
        Ok(Storage {
            inner,
            runtime: Arc::new(runtime),
        })
    }

    fn block_on<T>(&self, work: impl Future<Output = T>) -> T {
        self.runtime.block_on(work)
    }

    /// The location's URI, normalized: no trailing slash, no empty segments.
    pub fn uri(&self) -> &str {
        self.inner.uri()
    }

    /// [`AsyncStorage::child`], sharing this location's store and runtime.
    pub fn child(&self, relative: &str) -> Storage {
        Storage {
            inner: self.inner.child(relative),
            runtime: self.runtime.clone(),
        }
    }

    /// [`AsyncStorage::put`].
    pub fn put(&self, relative: &str, bytes: Vec<u8>) -> Result<(), StorageError> {
        self.block_on(self.inner.put(relative, bytes))
    }

    /// [`AsyncStorage::get`].
    pub fn get(&self, relative: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.block_on(self.inner.get(relative))
    }

    /// [`AsyncStorage::download_file`].
    pub fn download_file(&self, relative: &str, to: &Path) -> Result<bool, StorageError> {
        self.block_on(self.inner.download_file(relative, to))
    }

    /// [`AsyncStorage::get_head`].
    pub fn get_head(
        &self,
        relative: &str,
        max_bytes: u64,
    ) -> Result<Option<(Vec<u8>, u64)>, StorageError> {
        self.block_on(self.inner.get_head(relative, max_bytes))
    }

    /// [`AsyncStorage::list_children`].
    pub fn list_children(&self, relative: &str) -> Result<Vec<String>, StorageError> {
        self.block_on(self.inner.list_children(relative))
    }

    /// [`AsyncStorage::upload_dir_complete`].
    pub fn upload_dir_complete(
        &self,
        local: &std::path::Path,
        relative: &str,
    ) -> Result<(), StorageError> {
        self.block_on(self.inner.upload_dir_complete(local, relative))
    }

    /// [`AsyncStorage::is_complete`].
    pub fn is_complete(&self, relative: &str) -> Result<bool, StorageError> {
        self.block_on(self.inner.is_complete(relative))
    }

    /// [`AsyncStorage::unmatched_marked_files`].
    pub fn unmatched_marked_files(
        &self,
        relative: &str,
    ) -> Result<Option<Vec<String>>, StorageError> {
        self.block_on(self.inner.unmatched_marked_files(relative))
    }

    /// [`AsyncStorage::download_dir`].
    pub fn download_dir(
        &self,
        relative: &str,
        local: &std::path::Path,
    ) -> Result<(), StorageError> {
        self.block_on(self.inner.download_dir(relative, local))
    }

    /// [`AsyncStorage::delete_dir`].
    pub fn delete_dir(&self, relative: &str) -> Result<(), StorageError> {
        self.block_on(self.inner.delete_dir(relative))
    }
}
