//! The hub client: resolves a repository at a revision to the files a model needs
//! (each with the size and hash the hub lists), and downloads one of them into a
//! partial file, resuming from what is there, retrying a cut transfer, and checking
//! size and hash before it calls the file done.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::RANGE;

use super::{Hub, HubError, HubRef, HubSettings, huggingface, modelscope};

/// Attempts at one file before its failure is the download's: a cut transfer resumes
/// from the bytes already written.
const ATTEMPTS: u32 = 5;
/// Time to connect, and to wait for the next bytes of an answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// What the hub says a file's content hashes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Digest {
    /// Hex SHA-256 of the content (Hugging Face LFS files, every ModelScope file).
    Sha256(String),
    /// Hex git blob id: SHA-1 of `blob {size}\0` and the content (Hugging Face files
    /// kept in git itself, such as config.json).
    GitSha1(String),
}

/// One file of a repository at a commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubFile {
    /// Path in the repository.
    pub path: String,
    pub size: u64,
    pub digest: Option<Digest>,
}

/// A repository resolved at a revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// What the revision resolved to: the commit on Hugging Face; on ModelScope, whose
    /// listing names no repository commit, `ms-` and a digest of every file's hash.
    /// A cache keys its entries by it.
    pub commit: String,
    /// Every file of the repository, as listed.
    pub files: Vec<HubFile>,
    /// Whether the hub marks the repository gated (a token with access is needed).
    pub gated: bool,
}

/// Files a model or adapter folder needs, besides every `*.safetensors` at its top.
const MODEL_FILES: [&str; 13] = [
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.json",
    "chat_template.jinja",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "model.safetensors.index.json",
    "adapter_config.json",
];

/// The component folders of a diffusers pipeline (FLUX.1's), each read one level deep.
const PIPELINE_FOLDERS: [&str; 7] = [
    "transformer",
    "vae",
    "text_encoder",
    "text_encoder_2",
    "tokenizer",
    "tokenizer_2",
    "scheduler",
];

/// Files a pipeline component needs, besides its `*.safetensors`.
const COMPONENT_FILES: [&str; 9] = [
    "config.json",
    "scheduler_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "spiece.model",
    "added_tokens.json",
];

impl Snapshot {
    /// The files a model needs (config, tokenizer files, chat template, safetensors
    /// and their index), at the repository's top: never subfolders (Llama's
    /// `original/` holds a second copy of the weights) nor other weight formats. A
    /// diffusers pipeline (a `model_index.json` at the top, as FLUX.1's) is its
    /// `model_index.json` and its component folders' configs, tokenizer files and
    /// safetensors instead; the single-file weights beside them at the top (FLUX.1-dev's
    /// 24 GB `flux1-dev.safetensors`, `ae.safetensors`) are another copy and stay out.
    pub fn model_files(&self, reference: &HubRef) -> Result<Vec<&HubFile>, HubError> {
        let pipeline = self
            .files
            .iter()
            .any(|file| file.path == "model_index.json");
        let wanted: Vec<&HubFile> = self
            .files
            .iter()
            .filter(|file| {
                if pipeline {
                    is_pipeline_file(&file.path)
                } else {
                    !file.path.contains('/')
                        && (file.path.ends_with(".safetensors")
                            || MODEL_FILES.contains(&file.path.as_str()))
                }
            })
            .collect();
        if !wanted
            .iter()
            .any(|file| file.path.ends_with(".safetensors"))
        {
            return Err(HubError::NoModelFiles {
                reference: reference.to_string(),
            });
        }
        Ok(wanted)
    }
}

/// Whether `path` is a file a diffusers pipeline needs: `model_index.json`, or a
/// component folder's config, tokenizer file, safetensors or their index.
fn is_pipeline_file(path: &str) -> bool {
    if path == "model_index.json" {
        return true;
    }
    let Some((folder, name)) = path.split_once('/') else {
        return false;
    };
    PIPELINE_FOLDERS.contains(&folder)
        && !name.contains('/')
        && (name.ends_with(".safetensors")
            || name.ends_with(".safetensors.index.json")
            || COMPONENT_FILES.contains(&name))
}

/// A client of one hub.
#[derive(Clone, Debug)]
pub struct HubClient {
    settings: HubSettings,
    http: reqwest::Client,
}

impl HubClient {
    pub fn new(settings: HubSettings) -> Result<Self, HubError> {
        crate::storage::install_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .user_agent(concat!("anneal/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| HubError::Unreachable {
                endpoint: settings.endpoint.clone(),
                message: format!("no HTTP client: {error}"),
            })?;
        Ok(Self { settings, http })
    }

    pub fn settings(&self) -> &HubSettings {
        &self.settings
    }

    /// Resolves the revision and lists the repository's files.
    pub async fn snapshot(&self, reference: &HubRef) -> Result<Snapshot, HubError> {
        match reference.hub {
            Hub::HuggingFace => huggingface::snapshot(self, reference).await,
            Hub::ModelScope => modelscope::snapshot(self, reference).await,
        }
    }

    /// Checks that the token (or no token) may download the repository's files, by
    /// reading the first byte of `file`: a gated model lists its files to anyone.
    pub async fn check_readable(
        &self,
        reference: &HubRef,
        snapshot: &Snapshot,
        file: &HubFile,
    ) -> Result<(), HubError> {
        let url = self.file_url(reference, snapshot, &file.path)?;
        let response = self
            .send(self.get(url.clone()).header(RANGE, "bytes=0-0"))
            .await?;
        if response.status().is_success() {
            return Ok(());
        }
        Err(self.refusal(reference, response).await)
    }

    /// The whole of a small file (a `config.json`), refused past `max_bytes`; also
    /// proves that the token may download the repository's files.
    pub async fn read_small(
        &self,
        reference: &HubRef,
        snapshot: &Snapshot,
        file: &HubFile,
        max_bytes: u64,
    ) -> Result<Vec<u8>, HubError> {
        let url = self.file_url(reference, snapshot, &file.path)?;
        let mut response = self.send(self.get(url.clone())).await?;
        if !response.status().is_success() {
            return Err(self.refusal(reference, response).await);
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|error| self.unreachable(error))?
        {
            bytes.extend_from_slice(&chunk);
            if bytes.len() as u64 > max_bytes {
                return Err(HubError::BadAnswer {
                    url: url.to_string(),
                    message: format!("{} is larger than {max_bytes} bytes", file.path),
                });
            }
        }
        Ok(bytes)
    }

    /// Downloads `file` into `part` (appending to what is there when the hub takes a
    /// range), retrying a cut or damaged transfer, and checks its size and hash.
    /// Calls `progress` with each count of bytes received; returns the bytes received.
    pub async fn download(
        &self,
        reference: &HubRef,
        snapshot: &Snapshot,
        file: &HubFile,
        part: &Path,
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64, HubError> {
        let url = self.file_url(reference, snapshot, &file.path)?;
        let mut received = 0;
        let mut attempt = 1;
        loop {
            let result = match self
                .transfer(reference, &url, file, part, &mut received, progress)
                .await
            {
                Ok(()) => check_file(file, part).inspect_err(|_| {
                    // Damaged: the next attempt starts over.
                    let _ = std::fs::remove_file(part);
                }),
                Err(error) => Err(error),
            };
            match result {
                Ok(()) => return Ok(received),
                Err(error) if error.may_pass_on_retry() && attempt < ATTEMPTS => {
                    tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// One request for the bytes of `file` that `part` lacks.
    async fn transfer(
        &self,
        reference: &HubRef,
        url: &reqwest::Url,
        file: &HubFile,
        part: &Path,
        received: &mut u64,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), HubError> {
        let io = |source| HubError::Io {
            path: part.to_path_buf(),
            source,
        };
        let mut have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
        if have > file.size {
            std::fs::remove_file(part).map_err(io)?;
            have = 0;
        }
        if have == file.size && have > 0 {
            return Ok(());
        }
        let mut request = self.get(url.clone());
        if have > 0 {
            request = request.header(RANGE, format!("bytes={have}-"));
        }
        let mut response = self.send(request).await?;
        let append = match response.status() {
            StatusCode::PARTIAL_CONTENT => true,
            StatusCode::OK => false,
            StatusCode::RANGE_NOT_SATISFIABLE => {
                std::fs::remove_file(part).map_err(io)?;
                return Err(HubError::Mismatch {
                    file: file.path.clone(),
                    what: "size",
                    expected: file.size.to_string(),
                    got: format!("more than {have} bytes"),
                });
            }
            _ => return Err(self.refusal(reference, response).await),
        };
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(part)
            .map_err(io)?;
        loop {
            let chunk = response
                .chunk()
                .await
                .map_err(|error| self.unreachable(error))?;
            let Some(chunk) = chunk else { break };
            out.write_all(&chunk).map_err(io)?;
            *received += chunk.len() as u64;
            progress(chunk.len() as u64);
        }
        out.flush().map_err(io)?;
        out.sync_all().map_err(io)
    }

    fn file_url(
        &self,
        reference: &HubRef,
        snapshot: &Snapshot,
        path: &str,
    ) -> Result<reqwest::Url, HubError> {
        match reference.hub {
            Hub::HuggingFace => huggingface::file_url(self, reference, snapshot, path),
            Hub::ModelScope => modelscope::file_url(self, reference, path),
        }
    }

    /// The endpoint with `segments` appended, each percent-encoded.
    pub(super) fn url(&self, segments: &[&str]) -> Result<reqwest::Url, HubError> {
        let mut url = reqwest::Url::parse(&self.settings.endpoint).map_err(|error| {
            HubError::Unreachable {
                endpoint: self.settings.endpoint.clone(),
                message: format!("not a URL: {error}"),
            }
        })?;
        url.path_segments_mut()
            .map_err(|()| HubError::Unreachable {
                endpoint: self.settings.endpoint.clone(),
                message: "not a base URL".to_owned(),
            })?
            .pop_if_empty()
            .extend(segments.iter().flat_map(|segment| segment.split('/')));
        Ok(url)
    }

    /// A GET with the hub's way of presenting the token.
    pub(super) fn get(&self, url: reqwest::Url) -> reqwest::RequestBuilder {
        self.with_token(self.http.get(url))
    }

    /// A POST with the token.
    pub(super) fn post(&self, url: reqwest::Url) -> reqwest::RequestBuilder {
        self.with_token(self.http.post(url))
    }

    /// A PUT with the token.
    pub(super) fn put(&self, url: reqwest::Url) -> reqwest::RequestBuilder {
        self.with_token(self.http.put(url))
    }

    /// The HTTP client, for requests to other hosts (LFS storage) that take no token.
    pub(super) fn http_client(&self) -> &reqwest::Client {
        &self.http
    }

    fn with_token(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match (&self.settings.token, self.settings.hub) {
            (Some(token), Hub::HuggingFace) => request.bearer_auth(token),
            (Some(token), Hub::ModelScope) => {
                request.header(reqwest::header::COOKIE, format!("m_session_id={token}"))
            }
            (None, _) => request,
        }
    }

    pub(super) async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, HubError> {
        request
            .send()
            .await
            .map_err(|error| self.unreachable(error))
    }

    fn unreachable(&self, error: reqwest::Error) -> HubError {
        HubError::Unreachable {
            endpoint: self.settings.endpoint.clone(),
            message: error_chain(&error),
        }
    }

    /// The error a refused request means, in the hub's own terms.
    pub(super) async fn refusal(
        &self,
        reference: &HubRef,
        response: reqwest::Response,
    ) -> HubError {
        let status = response.status().as_u16();
        let url = response.url().to_string();
        let error_code = response
            .headers()
            .get("x-error-code")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let body = response.text().await.unwrap_or_default();
        let body: String = body.chars().take(300).collect();
        let token_given = self.settings.token.is_some();
        let reference_text = reference.to_string();
        match (error_code.as_deref(), status) {
            (Some("GatedRepo"), _) | (None, 403) => HubError::Gated {
                reference: reference_text,
                token_given,
                token_variable: self.settings.token_variable(),
            },
            (Some("RevisionNotFound"), _) => HubError::RevisionNotFound {
                reference: reference_text,
                revision: reference.revision_or_default().to_owned(),
            },
            (Some("RepoNotFound"), _) | (None, 401 | 404) => HubError::RepoNotFound {
                reference: reference_text,
                endpoint: self.settings.endpoint.clone(),
                token_given,
            },
            _ => HubError::Unexpected { url, status, body },
        }
    }
}

/// Checks a downloaded file's size and hash against the hub's listing.
fn check_file(file: &HubFile, path: &Path) -> Result<(), HubError> {
    let io = |source| HubError::Io {
        path: path.to_path_buf(),
        source,
    };
    let size = std::fs::metadata(path).map_err(io)?.len();
    if size != file.size {
        return Err(HubError::Mismatch {
            file: file.path.clone(),
            what: "size",
            expected: file.size.to_string(),
            got: size.to_string(),
        });
    }
    let (mut context, expected) = match &file.digest {
        None => return Ok(()),
        Some(Digest::Sha256(hex)) => (ring::digest::Context::new(&ring::digest::SHA256), hex),
        Some(Digest::GitSha1(hex)) => {
            let mut context = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
            context.update(format!("blob {size}\0").as_bytes());
            (context, hex)
        }
    };
    let mut reader = std::fs::File::open(path).map_err(io)?;
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = reader.read(&mut buffer).map_err(io)?;
        if read == 0 {
            break;
        }
        context.update(&buffer[..read]);
    }
    let got = hex(context.finish().as_ref());
    if !got.eq_ignore_ascii_case(expected) {
        let what = match file.digest {
            Some(Digest::GitSha1(_)) => "git blob id",
            _ => "sha256",
        };
        return Err(HubError::Mismatch {
            file: file.path.clone(),
            what,
            expected: expected.clone(),
            got,
        });
    }
    Ok(())
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// An error with its causes: reqwest's own message alone says only "error sending
/// request".
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
