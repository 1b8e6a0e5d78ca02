//! ModelScope's HTTP API, the part a download needs: a repository's files at a
//! revision with sizes and SHA-256 (`/api/v1/models/{repo}/repo/files`), and a file
//! (`/api/v1/models/{repo}/repo?Revision=&FilePath=`, which takes ranges). Answers
//! come wrapped as `{"Code": 200, "Data": ...}`.

use serde::Deserialize;

use super::client::{Digest, HubClient, HubFile, Snapshot, hex};
use super::{HubError, HubRef};

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Envelope<T> {
    code: Option<i64>,
    data: Option<T>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct FileList {
    #[serde(default)]
    files: Vec<FileEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct FileEntry {
    path: String,
    #[serde(default)]
    size: u64,
    sha256: Option<String>,
    #[serde(rename = "Type", default)]
    kind: String,
}

pub(super) async fn snapshot(client: &HubClient, reference: &HubRef) -> Result<Snapshot, HubError> {
    let revision = reference.revision_or_default();
    let mut url = client.url(&["api", "v1", "models", &reference.repo, "repo", "files"])?;
    url.query_pairs_mut()
        .append_pair("Revision", revision)
        .append_pair("Recursive", "true");
    let response = client.send(client.get(url.clone())).await?;
    let status = response.status();
    if status.as_u16() == 401 || status.as_u16() == 403 || status.is_server_error() {
        return Err(client.refusal(reference, response).await);
    }
    let text = response.text().await.unwrap_or_default();
    let listing: Option<Envelope<FileList>> = serde_json::from_str(&text).ok();
    let ok = status.is_success()
        && listing
            .as_ref()
            .is_some_and(|envelope| envelope.code == Some(200) && envelope.data.is_some());
    if !ok {
        return Err(
            repo_or_revision_missing(client, reference, &url, status.as_u16(), listing).await,
        );
    }
    let entries = listing
        .and_then(|envelope| envelope.data)
        .map(|data| data.files);
    let mut files: Vec<HubFile> = entries
        .unwrap_or_default()
        .into_iter()
        .filter(|entry| entry.kind != "tree")
        .map(|entry| HubFile {
            path: entry.path,
            size: entry.size,
            digest: entry
                .sha256
                .filter(|sha| !sha.is_empty())
                .map(Digest::Sha256),
        })
        .collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Snapshot {
        commit: listing_digest(&files),
        files,
        gated: false,
    })
}

/// A failed listing means a missing revision when the repository itself is there.
async fn repo_or_revision_missing(
    client: &HubClient,
    reference: &HubRef,
    url: &reqwest::Url,
    status: u16,
    listing: Option<Envelope<FileList>>,
) -> HubError {
    let repo_url = match client.url(&["api", "v1", "models", &reference.repo]) {
        Ok(url) => url,
        Err(error) => return error,
    };
    let repo_found = match client.send(client.get(repo_url)).await {
        Ok(response) if response.status().is_success() => {
            let text = response.text().await.unwrap_or_default();
            serde_json::from_str::<Envelope<serde_json::Value>>(&text)
                .is_ok_and(|envelope| envelope.code == Some(200))
        }
        Ok(response) if response.status().is_server_error() => {
            return client.refusal(reference, response).await;
        }
        Ok(_) => false,
        Err(error) => return error,
    };
    if !repo_found {
        return HubError::RepoNotFound {
            reference: reference.to_string(),
            endpoint: client.settings().endpoint.clone(),
            token_given: client.settings().token.is_some(),
        };
    }
    match listing {
        None if (200..300).contains(&status) => HubError::BadAnswer {
            url: url.to_string(),
            message: "not a file listing".to_owned(),
        },
        _ => HubError::RevisionNotFound {
            reference: reference.to_string(),
            revision: reference.revision_or_default().to_owned(),
        },
    }
}

/// `ms-` and the first 16 hex digits of SHA-256 over every file's path, size and hash:
/// the same files give the same key, any change a new one.
fn listing_digest(files: &[HubFile]) -> String {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    for file in files {
        let digest = match &file.digest {
            Some(Digest::Sha256(hex) | Digest::GitSha1(hex)) => hex.as_str(),
            None => "",
        };
        context.update(format!("{}\t{}\t{digest}\n", file.path, file.size).as_bytes());
    }
    format!("ms-{}", &hex(context.finish().as_ref())[..16])
}

pub(super) fn file_url(
    client: &HubClient,
    reference: &HubRef,
    path: &str,
) -> Result<reqwest::Url, HubError> {
    let mut url = client.url(&["api", "v1", "models", &reference.repo, "repo"])?;
    url.query_pairs_mut()
        .append_pair("Revision", reference.revision_or_default())
        .append_pair("FilePath", path);
    Ok(url)
}
