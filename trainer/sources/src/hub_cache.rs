//! Hub models on this machine: a cache of repositories keyed by hub, repository and
//! commit, shared by every job that names the same model (in a cluster, a
//! ReadWriteMany volume mounted by every trainer and serving pod).
//!
//! ```text
//! {root}/{hf|modelscope}/{ORG}/{NAME}/
//!     snapshots/{commit}/   complete: only ever made by renaming a finished partial
//!     partial/{commit}/     a download under way or cut short; the next one resumes it
//!     refs/{revision}       the commit a branch or tag last resolved to (for offline use)
//!     lock                  held (flock) by whoever fills an entry of this repository
//! ```
//!
//! A snapshot folder appears in one rename, after every file is checked against the
//! size and hash the hub lists, so a partial download never looks complete. The lock
//! is the kernel's, released when its holder exits however it exits, so a killed pod
//! leaves no stale lock; a second pod waiting on it finds the entry complete and
//! downloads nothing.

use std::path::{Path, PathBuf};

use anneal_crds::hub::{HubClient, HubError, HubRef, HubSettings, Snapshot};

/// What a fetch did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubFetch {
    /// The complete snapshot folder.
    pub dir: PathBuf,
    pub commit: String,
    /// Bytes received from the hub by this fetch (0 when the cache had it).
    pub bytes_downloaded: u64,
    /// The hub could not be reached and the cache's last resolution of the revision
    /// was used.
    pub offline: bool,
}

/// The model cache: where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubCache {
    pub root: PathBuf,
}

impl HubCache {
    /// `ANNEAL_MODEL_CACHE`, else `$XDG_CACHE_HOME/anneal/models`, else
    /// `$HOME/.cache/anneal/models`, else a folder under the system's temporary one.
    pub fn from_env() -> Self {
        let variable = |name| std::env::var_os(name).filter(|value| !value.is_empty());
        let root = variable("ANNEAL_MODEL_CACHE")
            .map(PathBuf::from)
            .or_else(|| variable("XDG_CACHE_HOME").map(|dir| Path::new(&dir).join("anneal/models")))
            .or_else(|| variable("HOME").map(|home| Path::new(&home).join(".cache/anneal/models")))
            .unwrap_or_else(|| std::env::temp_dir().join("anneal-models"));
        Self { root }
    }

    fn repo_dir(&self, reference: &HubRef) -> PathBuf {
        self.root.join(reference.hub.scheme()).join(&reference.repo)
    }

    /// The repository at the reference's revision as a complete local folder,
    /// downloading what the cache lacks. `progress` gets each count of bytes received.
    pub fn fetch(
        &self,
        reference: &HubRef,
        settings: HubSettings,
        progress: &mut dyn FnMut(u64),
    ) -> Result<HubFetch, HubError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| HubError::Io {
                path: self.root.clone(),
                source,
            })?;
        let client = HubClient::new(settings)?;
        let repo_dir = self.repo_dir(reference);
        let snapshot = match runtime.block_on(client.snapshot(reference)) {
            Ok(snapshot) => snapshot,
            // Down, overloaded or out of reach (an air-gapped node with a warm cache).
            Err(error) if error.may_pass_on_retry() => {
                return self.offline(reference, &repo_dir).ok_or(error);
            }
            Err(error) => return Err(error),
        };
        if snapshot.gated {
            // The cache must not hand a gated model to a job whose token cannot read it.
            let first = snapshot.model_files(reference)?[0];
            runtime.block_on(client.check_readable(reference, &snapshot, first))?;
        }
        let done = repo_dir.join("snapshots").join(&snapshot.commit);
        if whole(&done, &snapshot, reference) {
            self.remember(reference, &repo_dir, &snapshot.commit);
            return Ok(HubFetch {
                dir: done,
                commit: snapshot.commit,
                bytes_downloaded: 0,
                offline: false,
            });
        }
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| HubError::Io { path, source }
        };
        std::fs::create_dir_all(&repo_dir).map_err(io(&repo_dir))?;
        let lock_path = repo_dir.join("lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        lock.lock().map_err(io(&lock_path))?;
        // Whoever held the lock may have just finished this very entry.
        let bytes_downloaded = if whole(&done, &snapshot, reference) {
            0
        } else {
            if done.exists() {
                // Files of another size than listed: damaged; downloaded again.
                std::fs::remove_dir_all(&done).map_err(io(&done))?;
            }
            let fill = self.fill(&runtime, &client, reference, &snapshot, &repo_dir, progress);
            fill?
        };
        drop(lock);
        self.remember(reference, &repo_dir, &snapshot.commit);
        Ok(HubFetch {
            dir: done,
            commit: snapshot.commit,
            bytes_downloaded,
            offline: false,
        })
    }

    /// Downloads the model's files into the partial folder and renames it complete.
    fn fill(
        &self,
        runtime: &tokio::runtime::Runtime,
        client: &HubClient,
        reference: &HubRef,
        snapshot: &Snapshot,
        repo_dir: &Path,
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64, HubError> {
        let files = snapshot.model_files(reference)?;
        let partial = repo_dir.join("partial").join(&snapshot.commit);
        std::fs::create_dir_all(&partial).map_err(|source| HubError::Io {
            path: partial.clone(),
            source,
        })?;
        let mut received = 0;
        for file in files {
            let part = partial.join(&file.path);
            // A pipeline's files sit in component folders.
            if let Some(parent) = part.parent() {
                std::fs::create_dir_all(parent).map_err(|source| HubError::Io {
                    path: parent.to_path_buf(),
                    source,
                })?;
            }
            received +=
                runtime.block_on(client.download(reference, snapshot, file, &part, progress))?;
        }
        let snapshots = repo_dir.join("snapshots");
        let done = snapshots.join(&snapshot.commit);
        std::fs::create_dir_all(&snapshots)
            .and_then(|()| std::fs::rename(&partial, &done))
            .map_err(|source| HubError::Io {
                path: done.clone(),
                source,
            })?;
        Ok(received)
    }

    /// Records the commit a revision resolved to (best effort: it only serves offline
    /// use).
    fn remember(&self, reference: &HubRef, repo_dir: &Path, commit: &str) {
        let refs = repo_dir.join("refs");
        let file = refs.join(reference.revision_or_default());
        let temporary = refs.join(format!(
            ".{}.{}",
            reference.revision_or_default(),
            std::process::id()
        ));
        let _ = std::fs::create_dir_all(&refs)
            .and_then(|()| std::fs::write(&temporary, commit))
            .and_then(|()| std::fs::rename(&temporary, &file));
    }

    /// The complete snapshot the revision last resolved to, for a hub that cannot be
    /// reached.
    fn offline(&self, reference: &HubRef, repo_dir: &Path) -> Option<HubFetch> {
        let commit =
            std::fs::read_to_string(repo_dir.join("refs").join(reference.revision_or_default()))
                .ok()?
                .trim()
                .to_owned();
        let dir = repo_dir.join("snapshots").join(&commit);
        dir.is_dir().then_some(HubFetch {
            dir,
            commit,
            bytes_downloaded: 0,
            offline: true,
        })
    }
}

/// Whether the snapshot folder exists with every model file at its listed size (a
/// cheap check on each use; hashes were checked when the files came in).
fn whole(dir: &Path, snapshot: &Snapshot, reference: &HubRef) -> bool {
    dir.is_dir()
        && snapshot.model_files(reference).is_ok_and(|files| {
            files.iter().all(|file| {
                std::fs::metadata(dir.join(&file.path)).is_ok_and(|meta| meta.len() == file.size)
            })
        })
}
