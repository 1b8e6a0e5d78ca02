//! The Hugging Face Hub's HTTP API, the part a download needs: model info at a
//! revision with its files' sizes and hashes (`/api/models/{repo}/revision/{rev}?blobs=true`),
//! and a file at a commit (`/{repo}/resolve/{commit}/{path}`, which takes ranges).

use serde::Deserialize;

use super::client::{Digest, HubClient, HubFile, Snapshot};
use super::{HubError, HubRef};

#[derive(Deserialize)]
struct ModelInfo {
    sha: Option<String>,
    /// `false`, or how access is granted (`"auto"`, `"manual"`).
    #[serde(default)]
    gated: serde_json::Value,
    #[serde(default)]
    siblings: Vec<Sibling>,
}

#[derive(Deserialize)]
struct Sibling {
    rfilename: String,
    size: Option<u64>,
    #[serde(rename = "blobId")]
    blob_id: Option<String>,
    lfs: Option<Lfs>,
}

#[derive(Deserialize)]
struct Lfs {
    sha256: String,
    size: u64,
}

pub(super) async fn snapshot(client: &HubClient, reference: &HubRef) -> Result<Snapshot, HubError> {
    let revision = reference.revision_or_default();
    let mut url = client.url(&["api", "models", &reference.repo, "revision"])?;
    url.path_segments_mut().expect("a base URL").push(revision);
    url.query_pairs_mut().append_pair("blobs", "true");
    let response = client.send(client.get(url.clone())).await?;
    if !response.status().is_success() {
        return Err(client.refusal(reference, response).await);
    }
    let bad_answer = |message: String| HubError::BadAnswer {
        url: url.to_string(),
        message,
    };
    let text = response
        .text()
        .await
        .map_err(|error| bad_answer(error.to_string()))?;
    let info: ModelInfo =
        serde_json::from_str(&text).map_err(|error| bad_answer(error.to_string()))?;
    let commit = info
        .sha
        .ok_or_else(|| bad_answer("no commit (sha) in the model info".to_owned()))?;
    let files = info
        .siblings
        .into_iter()
        .map(|sibling| match sibling.lfs {
            Some(lfs) => HubFile {
                path: sibling.rfilename,
                size: lfs.size,
                digest: Some(Digest::Sha256(lfs.sha256)),
            },
            None => HubFile {
                path: sibling.rfilename,
                size: sibling.size.unwrap_or(0),
                digest: sibling.blob_id.map(Digest::GitSha1),
            },
        })
        .collect();
    Ok(Snapshot {
        commit,
        files,
        gated: info.gated.is_string(),
    })
}

pub(super) fn file_url(
    client: &HubClient,
    reference: &HubRef,
    snapshot: &Snapshot,
    path: &str,
) -> Result<reqwest::Url, HubError> {
    client.url(&[&reference.repo, "resolve", &snapshot.commit, path])
}
