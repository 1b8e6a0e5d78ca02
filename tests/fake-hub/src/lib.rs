//! A fake model hub for tests, on a loopback port: the endpoints of the Hugging Face
//! Hub and of ModelScope that Anneal's hub client uses, serving folders from disk as
//! repositories. It lists files with their sizes and hashes, resolves branches and
//! commits, serves byte ranges, refuses gated repositories without their token, and
//! can cut a transfer after a number of bytes or answer everything with 503, so tests
//! can see resumed downloads and an unreachable hub. It counts the bytes it serves. Its
//! write side (`uploads`) takes commits as the Hugging Face Hub does.
//!
//! Plain threads and HTTP/1.1 with one request per connection (`Connection: close`):
//! the client under test is the real one, and this stays small.

mod http;
mod routes;
mod uploads;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// One file of a repository: where its bytes are, and its listed hashes.
#[derive(Clone, Debug)]
struct RepoFile {
    path: PathBuf,
    size: u64,
    sha256: String,
    git_sha1: String,
    /// Listed as an LFS file (with its SHA-256) on the Hugging Face API.
    lfs: bool,
}

impl RepoFile {
    /// A file whose bytes are `content`, kept at `path`.
    fn of_bytes(path: PathBuf, content: &[u8], lfs: bool) -> Self {
        let mut blob = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
        blob.update(format!("blob {}\0", content.len()).as_bytes());
        blob.update(content);
        Self {
            path,
            size: content.len() as u64,
            sha256: hex(ring::digest::digest(&ring::digest::SHA256, content).as_ref()),
            git_sha1: hex(blob.finish().as_ref()),
            lfs,
        }
    }
}

/// A repository at one commit.
#[derive(Clone, Debug, Default)]
struct Commit {
    files: BTreeMap<String, RepoFile>,
}

#[derive(Clone, Debug, Default)]
struct Repo {
    commits: BTreeMap<String, Commit>,
    /// Branch and tag names to commits.
    refs: BTreeMap<String, String>,
    /// A token that may download its files, when gated.
    gated_token: Option<String>,
}

#[derive(Default)]
struct State {
    repos: BTreeMap<String, Repo>,
    /// Path suffix of a file and a byte count: its next transfer stops after that many.
    cuts: Vec<(String, u64)>,
    /// Every request, as `METHOD path?query [range]`.
    log: Vec<String>,
    /// File bytes sent, by file path.
    served: BTreeMap<String, u64>,
    /// The token writes need; `None` refuses every write.
    write_token: Option<String>,
    /// LFS objects uploaded, by SHA-256.
    blobs: BTreeMap<String, PathBuf>,
    /// Commits made through the commit API.
    commits_made: u64,
}

struct Shared {
    state: Mutex<State>,
    /// Where uploaded files are kept.
    store: PathBuf,
    lfs_bytes_received: AtomicU64,
    bytes_served: AtomicU64,
    down: AtomicBool,
    stop: AtomicBool,
}

/// A running fake hub; dropping it stops it.
pub struct FakeHub {
    port: u16,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
    _store: TempStore,
}

/// A folder removed when the hub stops.
struct TempStore(PathBuf);

impl Drop for TempStore {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl FakeHub {
    pub fn start() -> FakeHub {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("a loopback port");
        let port = listener.local_addr().expect("bound").port();
        let store =
            std::env::temp_dir().join(format!("anneal-fake-hub-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&store).expect("a temporary folder");
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            store: store.clone(),
            lfs_bytes_received: AtomicU64::new(0),
            bytes_served: AtomicU64::new(0),
            down: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let for_thread = shared.clone();
        let acceptor = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if for_thread.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let shared = for_thread.clone();
                std::thread::spawn(move || routes::serve_connection(stream, &shared));
            }
        });
        FakeHub {
            port,
            shared,
            acceptor: Some(acceptor),
            _store: TempStore(store),
        }
    }

    /// The base URL, for `HF_ENDPOINT` and `MODELSCOPE_ENDPOINT` alike.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Publishes the files of `folder`, subfolders included (as `sub/name`), as a new
    /// commit of `repo` (`ORG/NAME`) and points `branch` at it; returns the commit id
    /// (40 hex digits). Files over 1 KiB and every `*.safetensors` are listed as LFS
    /// files.
    pub fn publish_folder(&self, repo: &str, branch: &str, folder: &Path) -> String {
        let mut commit = Commit::default();
        let mut entries: Vec<PathBuf> = Vec::new();
        let mut pending = vec![folder.to_path_buf()];
        while let Some(dir) = pending.pop() {
            for entry in
                std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            {
                let path = entry.expect("a folder entry").path();
                if path.is_dir() {
                    pending.push(path);
                } else {
                    entries.push(path);
                }
            }
        }
        entries.sort();
        let mut commit_hash = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
        for path in entries {
            let name = path
                .strip_prefix(folder)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let bytes = std::fs::read(&path).expect("a readable file");
            let sha256 = hex(ring::digest::digest(&ring::digest::SHA256, &bytes).as_ref());
            let mut blob = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
            blob.update(format!("blob {}\0", bytes.len()).as_bytes());
            blob.update(&bytes);
            let git_sha1 = hex(blob.finish().as_ref());
            commit_hash.update(format!("{name} {sha256}\n").as_bytes());
            let lfs = bytes.len() > 1024 || name.ends_with(".safetensors");
            commit.files.insert(
                name,
                RepoFile {
                    path,
                    size: bytes.len() as u64,
                    sha256,
                    git_sha1,
                    lfs,
                },
            );
        }
        commit_hash.update(repo.as_bytes());
        commit_hash.update(branch.as_bytes());
        let id = hex(commit_hash.finish().as_ref());
        let mut state = self.shared.state.lock().unwrap();
        let entry = state.repos.entry(repo.to_owned()).or_default();
        entry.commits.insert(id.clone(), commit);
        entry.refs.insert(branch.to_owned(), id.clone());
        id
    }

    /// Makes `repo` gated: its files download only with `token`.
    pub fn gate(&self, repo: &str, token: &str) {
        let mut state = self.shared.state.lock().unwrap();
        state
            .repos
            .get_mut(repo)
            .expect("a published repo")
            .gated_token = Some(token.to_owned());
    }

    /// The next transfer of the file whose path ends with `path_suffix` stops after
    /// `bytes` bytes, the connection closed.
    pub fn cut_next_transfer(&self, path_suffix: &str, bytes: u64) {
        let mut state = self.shared.state.lock().unwrap();
        state.cuts.push((path_suffix.to_owned(), bytes));
    }

    /// Lets requests with `token` create repositories and commit to them.
    pub fn allow_writes(&self, token: &str) {
        self.shared.state.lock().unwrap().write_token = Some(token.to_owned());
    }

    /// Commits made through the commit API so far.
    pub fn commits_made(&self) -> u64 {
        self.shared.state.lock().unwrap().commits_made
    }

    /// Bytes uploaded to LFS storage so far.
    pub fn lfs_bytes_received(&self) -> u64 {
        self.shared.lfs_bytes_received.load(Ordering::SeqCst)
    }

    /// The commit a branch of `repo` is at, if any.
    pub fn branch_commit(&self, repo: &str, branch: &str) -> Option<String> {
        let state = self.shared.state.lock().unwrap();
        state.repos.get(repo)?.refs.get(branch).cloned()
    }

    /// The files of `repo` at the commit `branch` is at, by path.
    pub fn files_at(&self, repo: &str, branch: &str) -> Vec<String> {
        let state = self.shared.state.lock().unwrap();
        let Some(found) = state.repos.get(repo) else {
            return Vec::new();
        };
        let Some(commit) = found.refs.get(branch) else {
            return Vec::new();
        };
        found.commits[commit].files.keys().cloned().collect()
    }

    /// While true, every request is answered 503.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    /// File bytes sent so far (not counting listings).
    pub fn bytes_served(&self) -> u64 {
        self.shared.bytes_served.load(Ordering::SeqCst)
    }

    /// File bytes sent so far, by the file's path in its repository.
    pub fn bytes_served_by_file(&self) -> BTreeMap<String, u64> {
        self.shared.state.lock().unwrap().served.clone()
    }

    /// Every request so far, as `METHOD path?query [range]`.
    pub fn requests(&self) -> Vec<String> {
        self.shared.state.lock().unwrap().log.clone()
    }
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the acceptor so it sees the flag.
        let _ = std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, self.port));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
