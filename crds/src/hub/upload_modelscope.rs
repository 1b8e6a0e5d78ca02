//! Publishing to ModelScope, with its HTTP API (as its SDK speaks it): create the model
//! (private) when it is not there, ask its LFS batch API which weights it lacks and PUT
//! them to the addresses it gives, then one commit of JSON actions (small files inline
//! in base64, LFS files by SHA-256). Files ending in `.safetensors`, and any over
//! 5 MiB, go through LFS, as the SDK decides.

use base64::Engine;
use serde::Deserialize;

use super::client::{HubClient, Snapshot};
use super::upload::{LocalFile, file_body, json_body};
use super::{HubError, HubRef};

/// Files over this many bytes go through LFS whatever their name.
const LFS_SIZE: u64 = 5 * 1024 * 1024;
/// ModelScope's code for a private model.
const PRIVATE: u32 = 1;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Envelope<T> {
    code: Option<i64>,
    message: Option<String>,
    data: Option<T>,
}

#[derive(Deserialize)]
struct LfsObjects {
    #[serde(default)]
    objects: Vec<LfsObject>,
}

#[derive(Deserialize)]
struct LfsObject {
    oid: String,
    actions: LfsActions,
}

#[derive(Deserialize)]
struct LfsActions {
    upload: LfsUpload,
}

#[derive(Deserialize)]
struct LfsUpload {
    href: String,
}

impl HubClient {
    /// Creates the model (private) unless it exists.
    pub(super) async fn ensure_modelscope_repo(&self, reference: &HubRef) -> Result<(), HubError> {
        let info = self.url(&["api", "v1", "models", &reference.repo])?;
        let response = self.send(self.get(info)).await?;
        if response.status().is_success() {
            let text = response.text().await.unwrap_or_default();
            let found: Option<Envelope<serde_json::Value>> = serde_json::from_str(&text).ok();
            if found.is_some_and(|e| e.code == Some(200)) {
                return Ok(());
            }
        } else if response.status().as_u16() != 404 {
            return Err(self.refusal(reference, response).await);
        }
        let (owner, name) = reference.repo.split_once('/').expect("ORG/NAME");
        let body = serde_json::json!({
            "Path": owner, "Name": name, "ChineseName": "", "Visibility": PRIVATE,
            "License": "apache-2.0", "OriginalModelId": "", "TrainId": "",
        });
        let url = self.url(&["api", "v1", "models"])?;
        self.modelscope_call(reference, json_body(self.post(url.clone()), &body), &url)
            .await
            .map(drop)
    }

    /// Uploads what LFS lacks and commits `changed`; the bytes sent to LFS.
    pub(super) async fn modelscope_commit(
        &self,
        reference: &HubRef,
        current: Option<&Snapshot>,
        changed: &[&LocalFile],
        message: &str,
    ) -> Result<u64, HubError> {
        let lfs: Vec<&LocalFile> = changed
            .iter()
            .copied()
            .filter(|file| file.name.ends_with(".safetensors") || file.size > LFS_SIZE)
            .collect();
        let mut sent = 0;
        if !lfs.is_empty() {
            let url = self.url(&[
                "api",
                "v1",
                "repos",
                "models",
                &reference.repo,
                "info",
                "lfs",
                "objects",
                "batch",
            ])?;
            let objects: Vec<serde_json::Value> = lfs
                .iter()
                .map(|file| serde_json::json!({"oid": file.sha256, "size": file.size}))
                .collect();
            let body = serde_json::json!({"operation": "upload", "objects": objects});
            let data = self
                .modelscope_call(reference, json_body(self.post(url.clone()), &body), &url)
                .await?;
            let missing: LfsObjects =
                serde_json::from_value(data).map_err(|error| HubError::BadAnswer {
                    url: url.to_string(),
                    message: error.to_string(),
                })?;
            for object in missing.objects {
                let file = lfs.iter().find(|f| f.sha256 == object.oid).ok_or_else(|| {
                    HubError::BadAnswer {
                        url: url.to_string(),
                        message: format!(
                            "LFS answered for an object not asked for: {}",
                            object.oid
                        ),
                    }
                })?;
                let href = reqwest::Url::parse(&object.actions.upload.href).map_err(|error| {
                    HubError::BadAnswer {
                        url: object.actions.upload.href.clone(),
                        message: error.to_string(),
                    }
                })?;
                let request = self
                    .put(href.clone())
                    .header(reqwest::header::CONTENT_LENGTH, file.size)
                    .body(file_body(&file.path)?);
                self.modelscope_call(reference, request, &href).await?;
                sent += file.size;
            }
        }
        let actions: Vec<serde_json::Value> = changed
            .iter()
            .map(|file| {
                let exists = current.is_some_and(|s| s.files.iter().any(|f| f.path == file.name));
                let action = if exists { "update" } else { "create" };
                if lfs.iter().any(|l| l.name == file.name) {
                    Ok(serde_json::json!({
                        "action": action, "path": file.name, "type": "lfs", "size": file.size,
                        "sha256": file.sha256, "content": "", "encoding": "",
                    }))
                } else {
                    let content = std::fs::read(&file.path).map_err(|source| HubError::Io {
                        path: file.path.clone(),
                        source,
                    })?;
                    Ok(serde_json::json!({
                        "action": action, "path": file.name, "type": "normal", "size": file.size,
                        "sha256": "", "encoding": "base64",
                        "content": base64::engine::general_purpose::STANDARD.encode(content),
                    }))
                }
            })
            .collect::<Result<_, HubError>>()?;
        let mut url = self.url(&["api", "v1", "repos", "models", &reference.repo, "commit"])?;
        url.path_segments_mut()
            .expect("a base URL")
            .push(reference.revision_or_default());
        let body = serde_json::json!({"commit_message": message, "actions": actions});
        let response = self.send(json_body(self.post(url.clone()), &body)).await?;
        if !response.status().is_success() {
            return Err(self.refusal(reference, response).await);
        }
        let text = response.text().await.unwrap_or_default();
        let answer: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        if answer["Success"] != serde_json::Value::Bool(true) {
            return Err(HubError::BadAnswer {
                url: url.to_string(),
                message: answer["Message"].as_str().unwrap_or(&text).to_owned(),
            });
        }
        Ok(sent)
    }

    /// Sends a request whose answer is ModelScope's `{"Code": 200, "Data": ...}`; the data.
    async fn modelscope_call(
        &self,
        reference: &HubRef,
        request: reqwest::RequestBuilder,
        url: &reqwest::Url,
    ) -> Result<serde_json::Value, HubError> {
        let response = self.send(request).await?;
        if !response.status().is_success() {
            return Err(self.refusal(reference, response).await);
        }
        let text = response.text().await.unwrap_or_default();
        let envelope: Envelope<serde_json::Value> =
            serde_json::from_str(&text).map_err(|error| HubError::BadAnswer {
                url: url.to_string(),
                message: error.to_string(),
            })?;
        if envelope.code != Some(200) {
            return Err(HubError::BadAnswer {
                url: url.to_string(),
                message: envelope.message.unwrap_or(text),
            });
        }
        Ok(envelope.data.unwrap_or_default())
    }
}
