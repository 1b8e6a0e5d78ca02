//! Publishing a folder to a model repository: Hugging Face here, with the Hub's own
//! protocol (ModelScope's, much alike, is `upload_modelscope`):
//! create the repository if it is not there, ask which files go through LFS
//! (`preupload`), upload those to the storage the LFS batch API names, then one commit
//! (`commit`, NDJSON) that adds small files inline and LFS files by their SHA-256.
//!
//! Publishing the same folder again changes nothing: files whose hash the branch
//! already has are left out, and with none left there is no commit; the branch's
//! current commit is the answer. The single-request LFS upload takes files up to 5 GB
//! (the merged model's shards are at most 4 GiB).

use std::io::Read;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::Deserialize;

use super::client::{Digest, HubClient, Snapshot, hex};
use super::{Hub, HubError, HubRef};

/// What a publish did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    /// The commit the branch is at now.
    pub commit: String,
    /// Files the commit added or changed (0: everything was there already).
    pub files_changed: usize,
    /// Bytes sent to LFS storage.
    pub lfs_bytes: u64,
}

/// A local file to publish, with its hashes.
pub(super) struct LocalFile {
    pub path: PathBuf,
    pub name: String,
    pub size: u64,
    pub sha256: String,
    pub git_sha1: String,
}

#[derive(Deserialize)]
struct PreuploadAnswer {
    files: Vec<PreuploadFile>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PreuploadFile {
    path: String,
    upload_mode: String,
}

#[derive(Deserialize)]
struct LfsBatch {
    objects: Vec<LfsObject>,
}

#[derive(Deserialize)]
struct LfsObject {
    oid: String,
    #[serde(default)]
    actions: Option<LfsActions>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct LfsActions {
    upload: Option<LfsAction>,
    verify: Option<LfsAction>,
}

#[derive(Deserialize)]
struct LfsAction {
    href: String,
    #[serde(default)]
    header: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CommitAnswer {
    commit_oid: String,
}

impl HubClient {
    /// Publishes the files at the top of `dir` to the repository's branch (the
    /// reference's revision, else `main`), creating the repository (private) if needed.
    pub async fn publish_folder(
        &self,
        reference: &HubRef,
        dir: &Path,
        message: &str,
    ) -> Result<Published, HubError> {
        let files = local_files(dir)?;
        match reference.hub {
            Hub::HuggingFace => self.ensure_repo(reference).await?,
            Hub::ModelScope => self.ensure_modelscope_repo(reference).await?,
        }
        let current = match self.snapshot(reference).await {
            Ok(snapshot) => Some(snapshot),
            // A new repository has no branch yet.
            Err(HubError::RevisionNotFound { .. }) => None,
            Err(error) => return Err(error),
        };
        let changed: Vec<&LocalFile> = files
            .iter()
            .filter(|file| !already_there(current.as_ref(), file))
            .collect();
        if changed.is_empty() {
            let commit = current.map(|snapshot| snapshot.commit).unwrap_or_default();
            return Ok(Published {
                commit,
                files_changed: 0,
                lfs_bytes: 0,
            });
        }
        if reference.hub == Hub::ModelScope {
            let lfs_bytes = self
                .modelscope_commit(reference, current.as_ref(), &changed, message)
                .await?;
            // ModelScope answers a commit without its id: the listing's digest stands in.
            let commit = self.snapshot(reference).await?.commit;
            return Ok(Published {
                commit,
                files_changed: changed.len(),
                lfs_bytes,
            });
        }
        let modes = self.preupload(reference, &changed).await?;
        let lfs: Vec<&LocalFile> = changed
            .iter()
            .copied()
            .filter(|file| {
                modes
                    .iter()
                    .any(|(path, mode)| path == &file.name && mode == "lfs")
            })
            .collect();
        let lfs_bytes = self.upload_lfs(reference, &lfs).await?;
        let commit = self.commit(reference, &changed, &lfs, message).await?;
        Ok(Published {
            commit,
            files_changed: changed.len(),
            lfs_bytes,
        })
    }

    async fn ensure_repo(&self, reference: &HubRef) -> Result<(), HubError> {
        let (organization, name) = reference.repo.split_once('/').expect("ORG/NAME");
        let url = self.url(&["api", "repos", "create"])?;
        let body = serde_json::json!({
            "type": "model", "name": name, "organization": organization, "private": true,
        });
        let response = self.send(json_body(self.post(url), &body)).await?;
        // 409: it exists (ours, or one the token may write to).
        if response.status().is_success() || response.status().as_u16() == 409 {
            return Ok(());
        }
        Err(self.refusal(reference, response).await)
    }

    async fn preupload(
        &self,
        reference: &HubRef,
        files: &[&LocalFile],
    ) -> Result<Vec<(String, String)>, HubError> {
        let mut url = self.url(&["api", "models", &reference.repo, "preupload"])?;
        url.path_segments_mut()
            .expect("a base URL")
            .push(reference.revision_or_default());
        let mut listed = Vec::new();
        for file in files {
            let mut sample = vec![0u8; 512];
            let read = std::fs::File::open(&file.path)
                .and_then(|mut f| f.read(&mut sample))
                .map_err(|source| HubError::Io {
                    path: file.path.clone(),
                    source,
                })?;
            sample.truncate(read);
            listed.push(serde_json::json!({
                "path": file.name,
                "size": file.size,
                "sample": base64::engine::general_purpose::STANDARD.encode(&sample),
            }));
        }
        let body = serde_json::json!({ "files": listed });
        let answer: PreuploadAnswer = self.post_json(reference, url, &body).await?;
        Ok(answer
            .files
            .into_iter()
            .map(|file| (file.path, file.upload_mode))
            .collect())
    }

    /// Uploads what LFS storage lacks; the bytes sent.
    async fn upload_lfs(&self, reference: &HubRef, files: &[&LocalFile]) -> Result<u64, HubError> {
        if files.is_empty() {
            return Ok(0);
        }
        let url = self.url(&[
            &format!("{}.git", reference.repo),
            "info",
            "lfs",
            "objects",
            "batch",
        ])?;
        let objects: Vec<serde_json::Value> = files
            .iter()
            .map(|file| serde_json::json!({"oid": file.sha256, "size": file.size}))
            .collect();
        let body = serde_json::json!({
            "operation": "upload", "transfers": ["basic"], "objects": objects, "hash_algo": "sha256",
        });
        let request = self
            .post(url.clone())
            .header("Accept", "application/vnd.git-lfs+json")
            .header("Content-Type", "application/vnd.git-lfs+json")
            .body(body.to_string());
        let response = self.send(request).await?;
        if !response.status().is_success() {
            return Err(self.refusal(reference, response).await);
        }
        let text = response.text().await.unwrap_or_default();
        let batch: LfsBatch = serde_json::from_str(&text).map_err(|error| HubError::BadAnswer {
            url: url.to_string(),
            message: error.to_string(),
        })?;
        let mut sent = 0;
        for object in batch.objects {
            if let Some(error) = object.error {
                return Err(HubError::BadAnswer {
                    url: url.to_string(),
                    message: format!("LFS object {}: {error}", object.oid),
                });
            }
            let Some(actions) = object.actions else {
                continue; // already in storage
            };
            let file = files
                .iter()
                .find(|file| file.sha256 == object.oid)
                .ok_or_else(|| HubError::BadAnswer {
                    url: url.to_string(),
                    message: format!("LFS answered for an object not asked for: {}", object.oid),
                })?;
            if let Some(upload) = actions.upload {
                let mut request = self
                    .http_client()
                    .put(&upload.href)
                    .header(reqwest::header::CONTENT_LENGTH, file.size);
                for (name, value) in &upload.header {
                    request = request.header(name, value);
                }
                let response = self.send(request.body(file_body(&file.path)?)).await?;
                if !response.status().is_success() {
                    return Err(self.refusal(reference, response).await);
                }
                sent += file.size;
            }
            if let Some(verify) = actions.verify {
                let mut request =
                    self.post(reqwest::Url::parse(&verify.href).map_err(|error| {
                        HubError::BadAnswer {
                            url: verify.href.clone(),
                            message: error.to_string(),
                        }
                    })?);
                request = json_body(
                    request,
                    &serde_json::json!({"oid": file.sha256, "size": file.size}),
                );
                for (name, value) in &verify.header {
                    request = request.header(name, value);
                }
                let response = self.send(request).await?;
                if !response.status().is_success() {
                    return Err(self.refusal(reference, response).await);
                }
            }
        }
        Ok(sent)
    }

    async fn commit(
        &self,
        reference: &HubRef,
        changed: &[&LocalFile],
        lfs: &[&LocalFile],
        message: &str,
    ) -> Result<String, HubError> {
        let mut url = self.url(&["api", "models", &reference.repo, "commit"])?;
        url.path_segments_mut()
            .expect("a base URL")
            .push(reference.revision_or_default());
        let mut lines = vec![serde_json::json!({
            "key": "header", "value": {"summary": message, "description": ""},
        })];
        for file in changed {
            if lfs.iter().any(|l| l.name == file.name) {
                lines.push(serde_json::json!({"key": "lfsFile", "value": {
                    "path": file.name, "algo": "sha256", "oid": file.sha256, "size": file.size,
                }}));
            } else {
                let content = std::fs::read(&file.path).map_err(|source| HubError::Io {
                    path: file.path.clone(),
                    source,
                })?;
                lines.push(serde_json::json!({"key": "file", "value": {
                    "path": file.name, "encoding": "base64",
                    "content": base64::engine::general_purpose::STANDARD.encode(content),
                }}));
            }
        }
        let body: String = lines.iter().map(|line| format!("{line}\n")).collect();
        let request = self
            .post(url.clone())
            .header("Content-Type", "application/x-ndjson")
            .body(body);
        let response = self.send(request).await?;
        if !response.status().is_success() {
            return Err(self.refusal(reference, response).await);
        }
        let text = response.text().await.unwrap_or_default();
        let answer: CommitAnswer =
            serde_json::from_str(&text).map_err(|error| HubError::BadAnswer {
                url: url.to_string(),
                message: error.to_string(),
            })?;
        Ok(answer.commit_oid)
    }

    async fn post_json<T: serde::de::DeserializeOwned>(
        &self,
        reference: &HubRef,
        url: reqwest::Url,
        body: &serde_json::Value,
    ) -> Result<T, HubError> {
        let response = self.send(json_body(self.post(url.clone()), body)).await?;
        if !response.status().is_success() {
            return Err(self.refusal(reference, response).await);
        }
        let text = response.text().await.unwrap_or_default();
        serde_json::from_str(&text).map_err(|error| HubError::BadAnswer {
            url: url.to_string(),
            message: error.to_string(),
        })
    }
}

/// Whether the branch already has this file with this content.
fn already_there(current: Option<&Snapshot>, file: &LocalFile) -> bool {
    current.is_some_and(|snapshot| {
        snapshot.files.iter().any(|remote| {
            remote.path == file.name
                && remote.size == file.size
                && match &remote.digest {
                    Some(Digest::Sha256(sha)) => sha.eq_ignore_ascii_case(&file.sha256),
                    Some(Digest::GitSha1(sha)) => sha.eq_ignore_ascii_case(&file.git_sha1),
                    None => false,
                }
        })
    })
}

/// The regular files at the top of `dir`, with their hashes, by name.
fn local_files(dir: &Path) -> Result<Vec<LocalFile>, HubError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| HubError::Io { path, source }
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            continue;
        };
        if !path.is_file() || name == "COMPLETE" {
            continue;
        }
        let size = std::fs::metadata(&path).map_err(io(&path))?.len();
        let mut sha256 = ring::digest::Context::new(&ring::digest::SHA256);
        let mut sha1 = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
        sha1.update(format!("blob {size}\0").as_bytes());
        let mut reader = std::fs::File::open(&path).map_err(io(&path))?;
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            let read = reader.read(&mut buffer).map_err(io(&path))?;
            if read == 0 {
                break;
            }
            sha256.update(&buffer[..read]);
            sha1.update(&buffer[..read]);
        }
        files.push(LocalFile {
            path,
            name,
            size,
            sha256: hex(sha256.finish().as_ref()),
            git_sha1: hex(sha1.finish().as_ref()),
        });
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

/// A file's bytes as a request body, read 1 MiB at a time as it is sent.
pub(super) fn file_body(path: &Path) -> Result<reqwest::Body, HubError> {
    let file = std::fs::File::open(path).map_err(|source| HubError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let chunks = futures_util::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut buffer = vec![0u8; 1 << 20];
        match file.read(&mut buffer) {
            Ok(0) => None,
            Ok(read) => {
                buffer.truncate(read);
                Some((Ok::<_, std::io::Error>(buffer), Some(file)))
            }
            // The error ends the body; nothing is read after it.
            Err(error) => Some((Err(error), None)),
        }
    });
    Ok(reqwest::Body::wrap_stream(chunks))
}

pub(super) fn json_body(
    request: reqwest::RequestBuilder,
    body: &serde_json::Value,
) -> reqwest::RequestBuilder {
    request
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_string())
}
