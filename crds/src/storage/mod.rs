//! Object storage for the trainer: where it reads base models and datasets, and where
//! it writes checkpoints, `events.jsonl` and the final adapter (docs/design.md, "Trainer pod"
//! and "Storage layout").
//!
//! An [`AsyncStorage`] is one location, `file:///abs/dir` or `s3://bucket/prefix`, on top
//! of the `object_store` crate, with async methods: the operator awaits them on its own
//! runtime. The trainer is synchronous, so it uses [`Storage`], the same location with
//! a small current-thread tokio runtime (shared with its children) that every call
//! blocks on; calling it from inside another tokio runtime panics.
//!
//! Object stores have no atomic multi-object write, so a folder is written with a
//! `COMPLETE` marker last ([`Storage::upload_dir_complete`]), and readers (a restarted
//! pod resuming, the operator, a serving pod) trust a checkpoint folder only when
//! [`Storage::is_complete`] says so.

mod blocking;
mod error;
mod folders;
mod local_files;
mod location;
mod s3;
#[cfg(test)]
mod tests;
mod tls;

use std::sync::Arc;

use futures_util::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};

pub use blocking::Storage;
pub use error::StorageError;
pub use folders::COMPLETE;
use location::{Backend, ParsedUri};
pub use s3::ENDPOINT_KEYS as S3_ENDPOINT_KEYS;
pub use tls::install_crypto_provider;

/// One storage location: a store, and a folder ("prefix") inside it. Cloning is cheap
/// (the store is shared).
#[derive(Clone, Debug)]
pub struct AsyncStorage {
    store: Arc<dyn ObjectStore>,
    backend: Backend,
    prefix: Path,
    uri: String,
}

impl AsyncStorage {
    /// Opens `file:///abs/dir` or `s3://bucket/prefix`, taking S3 settings from the
    /// environment as an in-cluster Secret gives them: `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` / `AWS_DEFAULT_REGION`,
    /// the endpoint in `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT`,
    /// `S3_ENDPOINT`), and `ANNEAL_S3_VIRTUAL_HOSTED`.
    ///
    /// With an endpoint, buckets are addressed by path (what MinIO, Ceph and moto need)
    /// and `http://` endpoints are allowed; without one (AWS itself), by host name.
    /// `ANNEAL_S3_VIRTUAL_HOSTED=true|false` overrides either default. `gs://` and
    /// `az://` are not supported yet; file:// locations must be absolute.
    pub fn open(uri: &str) -> Result<AsyncStorage, StorageError> {
        AsyncStorage::open_with(uri, s3::settings_from_env())
    }

    /// [`AsyncStorage::open`] with the settings given rather than read from the environment
    /// (same names as the environment variables), so that callers and tests that talk
    /// to several stores do not race on the process environment.
    pub fn open_with<K, V>(
        uri: &str,
        settings: impl IntoIterator<Item = (K, V)>,
    ) -> Result<AsyncStorage, StorageError>
    where
        K: Into<String>,
        V: Into<String>,
    {
        let settings: Vec<(String, String)> = settings
            .into_iter()
            .map(|(key, value)| (key.into(), value.into()))
            .collect();
        let ParsedUri { backend, prefix } = location::parse_uri(uri)?;
        let store = open_store(uri, &backend, &settings)?;
        Ok(AsyncStorage {
            store,
            uri: backend.uri_of(&prefix),
            backend,
            prefix,
        })
    }

    /// The location's URI, normalized: no trailing slash, no empty segments.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The location `relative` below this one (`checkpoints/ckpt-3`), sharing its store.
    ///
    /// # Panics
    /// When `relative` has a `.` or `..` segment or a control character: child names
    /// are made by the trainer; paths that come from users go through [`AsyncStorage::open`]
    /// or the methods that return errors.
    pub fn child(&self, relative: &str) -> AsyncStorage {
        let prefix = self
            .path(relative)
            .unwrap_or_else(|error| panic!("{error}"));
        AsyncStorage {
            uri: self.backend.uri_of(&prefix),
            prefix,
            ..self.clone()
        }
    }

    /// Writes one object (atomically: readers see the old content or the new, whole).
    pub async fn put(&self, relative: &str, bytes: Vec<u8>) -> Result<(), StorageError> {
        let path = self.path(relative)?;
        self.put_path(&path, bytes).await
    }

    /// Reads one object; `None` when there is none. On S3 a missing bucket reads as
    /// `None` too (S3 answers 404 for both); listings and writes name it as an error.
    pub async fn get(&self, relative: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let path = self.path(relative)?;
        self.get_path(&path).await
    }

    /// Reads at most the first `max_bytes` of one object, and its whole size; `None`
    /// when there is none. The operator checks datasets with it without reading a
    /// many-gigabyte file into memory.
    pub async fn get_head(
        &self,
        relative: &str,
        max_bytes: u64,
    ) -> Result<Option<(Vec<u8>, u64)>, StorageError> {
        let path = self.path(relative)?;
        let read = async {
            let size = match self.store.head(&path).await {
                Ok(meta) => meta.size,
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(error) => return Err(error),
            };
            let end = size.min(max_bytes);
            if end == 0 {
                return Ok(Some((Vec::new(), size)));
            }
            let bytes = self.store.get_range(&path, 0..end).await?;
            Ok(Some((Vec::from(bytes), size)))
        };
        read.await.map_err(self.store_error("cannot read", &path))
    }

    /// Names directly under `relative` (one level, like `ls`): files and "folders",
    /// sorted. Empty when there is nothing there.
    pub async fn list_children(&self, relative: &str) -> Result<Vec<String>, StorageError> {
        let folder = self.path(relative)?;
        let listing = self
            .store
            .list_with_delimiter(Some(&folder))
            .await
            .map_err(self.store_error("cannot list", &folder))?;
        let files = listing.objects.iter().map(|object| &object.location);
        let mut names: Vec<String> = listing
            .common_prefixes
            .iter()
            .chain(files)
            .filter_map(|path| location::relative_name(path, &folder))
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// The object path of `relative` inside this location, refusing paths that leave it.
    fn path(&self, relative: &str) -> Result<Path, StorageError> {
        location::join(&self.prefix, relative).map_err(|reason| StorageError::Path {
            uri: self.uri.clone(),
            path: relative.to_string(),
            reason,
        })
    }

    async fn put_path(&self, path: &Path, bytes: Vec<u8>) -> Result<(), StorageError> {
        self.store
            .put(path, bytes.into())
            .await
            .map(drop)
            .map_err(self.store_error("cannot write", path))
    }

    async fn get_path(&self, path: &Path) -> Result<Option<Vec<u8>>, StorageError> {
        let read = async {
            match self.store.get(path).await {
                Ok(result) => result.bytes().await.map(|bytes| Some(Vec::from(bytes))),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(error) => Err(error),
            }
        };
        read.await.map_err(self.store_error("cannot read", path))
    }

    /// Every object under `folder`, at any depth.
    async fn list_objects(&self, folder: &Path) -> Result<Vec<ObjectMeta>, StorageError> {
        self.store
            .list(Some(folder))
            .try_collect()
            .await
            .map_err(self.store_error("cannot list", folder))
    }

    /// Wraps an object_store error with what we were doing and the object's URI.
    fn store_error(
        &self,
        action: &'static str,
        path: &Path,
    ) -> impl FnOnce(object_store::Error) -> StorageError {
        let uri = self.backend.uri_of(path);
        move |source| StorageError::Store {
            action,
            uri,
            source,
        }
    }
}

fn open_store(
    uri: &str,
    backend: &Backend,
    settings: &[(String, String)],
) -> Result<Arc<dyn ObjectStore>, StorageError> {
    match backend {
        // Rooted at `/` rather than at the location, so that opening a location that
        // does not exist yet neither fails nor creates it; writes create folders.
        // fsync: a COMPLETE marker must not survive a crash that loses the files it lists.
        Backend::LocalFiles => Ok(Arc::new(LocalFileSystem::new().with_fsync(true))),
        Backend::S3 { bucket } => {
            let store =
                s3::s3_store(bucket, settings).map_err(|reason| StorageError::S3Settings {
                    uri: uri.to_string(),
                    reason,
                })?;
            Ok(Arc::new(store))
        }
    }
}
