//! The fake hub's write side, as the Hugging Face Hub speaks it: create a repository,
//! `preupload` (which files go through LFS), the LFS batch API and its storage, and a
//! commit of NDJSON lines (`header`, `file` inline in base64, `lfsFile` by SHA-256).
//! Every write needs the token `FakeHub::allow_writes` set.

use std::net::TcpStream;
use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use crate::http::{Request, write_json};
use crate::{Commit, RepoFile, Shared, hex};

/// A file a commit adds or replaces: its content inline, or an uploaded LFS object.
enum Change {
    Inline(Vec<u8>),
    Lfs(String),
}

/// Whether the request carries the write token (as Hugging Face's bearer token or
/// ModelScope's session cookie); answers 401 when not.
fn authorized(stream: &mut TcpStream, shared: &Shared, request: &Request) -> bool {
    let token = request
        .headers
        .get("authorization")
        .and_then(|value| value.strip_prefix("Bearer "))
        .or_else(|| crate::routes::modelscope_token(request));
    let wanted = shared.state.lock().unwrap().write_token.clone();
    if wanted.is_some() && token == wanted.as_deref() {
        return true;
    }
    write_json(
        stream,
        401,
        &[("X-Error-Code", "Unauthorized".to_owned())],
        &json!({"error": "Invalid credentials in Authorization header"}),
    );
    false
}

pub(crate) fn create_repo(stream: &mut TcpStream, shared: &Shared, request: &Request) {
    if !authorized(stream, shared, request) {
        return;
    }
    let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
    let repo = format!(
        "{}/{}",
        body["organization"].as_str().unwrap_or_default(),
        body["name"].as_str().unwrap_or_default()
    );
    let mut state = shared.state.lock().unwrap();
    if state.repos.contains_key(&repo) {
        drop(state);
        return write_json(
            stream,
            409,
            &[],
            &json!({"error": "You already created this model repo"}),
        );
    }
    state.repos.insert(repo.clone(), Default::default());
    drop(state);
    write_json(
        stream,
        200,
        &[],
        &json!({"url": format!("https://fake-hub/{repo}")}),
    );
}

pub(crate) fn preupload(stream: &mut TcpStream, shared: &Shared, request: &Request) {
    if !authorized(stream, shared, request) {
        return;
    }
    let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
    let files: Vec<Value> = body["files"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|file| {
            let path = file["path"].as_str().unwrap_or_default();
            let size = file["size"].as_u64().unwrap_or(0);
            let lfs = size > 1024 || path.ends_with(".safetensors");
            json!({"path": path, "uploadMode": if lfs { "lfs" } else { "regular" }, "shouldIgnore": false})
        })
        .collect();
    write_json(stream, 200, &[], &json!({"files": files}));
}

pub(crate) fn lfs_batch(
    stream: &mut TcpStream,
    shared: &Shared,
    request: &Request,
    endpoint: &str,
) {
    if !authorized(stream, shared, request) {
        return;
    }
    let objects: Vec<Value> = asked_objects(shared, request)
        .into_iter()
        .map(|(oid, size, stored)| {
            if stored {
                json!({"oid": oid, "size": size})
            } else {
                json!({"oid": oid, "size": size, "actions": {"upload": {
                    "href": format!("{endpoint}/lfs-storage/{oid}"),
                    "header": {"X-Fake-Upload": "1"},
                }}})
            }
        })
        .collect();
    write_json(
        stream,
        200,
        &[],
        &json!({"transfer": "basic", "objects": objects}),
    );
}

/// The objects an LFS batch request asks about: (oid, size, already stored).
fn asked_objects(shared: &Shared, request: &Request) -> Vec<(String, u64, bool)> {
    let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
    let state = shared.state.lock().unwrap();
    body["objects"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|object| {
            let oid = object["oid"].as_str().unwrap_or_default().to_owned();
            let stored = state.blobs.contains_key(&oid);
            (oid, object["size"].as_u64().unwrap_or(0), stored)
        })
        .collect()
}

/// Keeps an uploaded LFS object when its SHA-256 is its id; whether it was.
fn store_lfs(shared: &Shared, request: &Request, oid: &str) -> bool {
    let sha = hex(ring::digest::digest(&ring::digest::SHA256, &request.body).as_ref());
    if sha != oid {
        return false;
    }
    let path = shared.store.join(format!("lfs-{oid}"));
    std::fs::write(&path, &request.body).expect("the store is writable");
    shared
        .lfs_bytes_received
        .fetch_add(request.body.len() as u64, Ordering::SeqCst);
    shared
        .state
        .lock()
        .unwrap()
        .blobs
        .insert(oid.to_owned(), path);
    true
}

/// A PUT to LFS storage: kept when its SHA-256 is its object id.
pub(crate) fn lfs_put(stream: &mut TcpStream, shared: &Shared, request: &Request, oid: &str) {
    if !request.headers.contains_key("x-fake-upload") || !store_lfs(shared, request, oid) {
        return write_json(
            stream,
            400,
            &[],
            &json!({"error": "content does not match the object id"}),
        );
    }
    write_json(stream, 200, &[], &json!({}));
}

pub(crate) fn commit(
    stream: &mut TcpStream,
    shared: &Shared,
    request: &Request,
    repo: &str,
    branch: &str,
) {
    if !authorized(stream, shared, request) {
        return;
    }
    let mut summary = String::new();
    let mut changes = Vec::new();
    for line in String::from_utf8_lossy(&request.body).lines() {
        let line: Value = serde_json::from_str(line).unwrap_or_default();
        let value = &line["value"];
        let path = value["path"].as_str().unwrap_or_default().to_owned();
        match line["key"].as_str() {
            Some("header") => summary = value["summary"].as_str().unwrap_or_default().to_owned(),
            Some("file") => changes.push((
                path,
                Change::Inline(base64_decode(value["content"].as_str().unwrap_or_default())),
            )),
            Some("lfsFile") => changes.push((
                path,
                Change::Lfs(value["oid"].as_str().unwrap_or_default().to_owned()),
            )),
            _ => {}
        }
    }
    match apply_commit(shared, repo, branch, &summary, changes) {
        Ok(id) => write_json(
            stream,
            200,
            &[],
            &json!({"commitOid": id, "commitUrl": format!("https://fake-hub/{repo}/commit/{id}")}),
        ),
        Err((status, message)) => write_json(stream, status, &[], &json!({"error": message})),
    }
}

/// A new commit on `branch` of `repo`: its parent's files with `changes`; its id.
fn apply_commit(
    shared: &Shared,
    repo: &str,
    branch: &str,
    summary: &str,
    changes: Vec<(String, Change)>,
) -> Result<String, (u16, String)> {
    let mut state = shared.state.lock().unwrap();
    let found = state
        .repos
        .get(repo)
        .cloned()
        .ok_or((404, "Repository not found".to_owned()))?;
    let parent = found.refs.get(branch).cloned();
    let mut commit: Commit = parent
        .as_ref()
        .map(|id| found.commits[id].clone())
        .unwrap_or_default();
    for (name, change) in changes {
        let file = match change {
            Change::Inline(content) => {
                let sha256 = hex(ring::digest::digest(&ring::digest::SHA256, &content).as_ref());
                let path = shared.store.join(format!("file-{sha256}"));
                std::fs::write(&path, &content).expect("the store is writable");
                RepoFile::of_bytes(path, &content, false)
            }
            Change::Lfs(oid) => {
                let path = state
                    .blobs
                    .get(&oid)
                    .cloned()
                    .ok_or((400, format!("LFS object {oid} was never uploaded")))?;
                let content = std::fs::read(&path).expect("a stored blob");
                RepoFile::of_bytes(path, &content, true)
            }
        };
        commit.files.insert(name, file);
    }
    let mut id = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    id.update(parent.as_deref().unwrap_or("root").as_bytes());
    id.update(summary.as_bytes());
    for (name, file) in &commit.files {
        id.update(format!("{name} {}\n", file.sha256).as_bytes());
    }
    let id = hex(id.finish().as_ref());
    let entry = state.repos.get_mut(repo).expect("looked up above");
    entry.commits.insert(id.clone(), commit);
    entry.refs.insert(branch.to_owned(), id.clone());
    state.commits_made += 1;
    Ok(id)
}

/// ModelScope: `POST /api/v1/models` creates a model.
pub(crate) fn modelscope_create(stream: &mut TcpStream, shared: &Shared, request: &Request) {
    if !authorized(stream, shared, request) {
        return;
    }
    let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
    let repo = format!(
        "{}/{}",
        body["Path"].as_str().unwrap_or_default(),
        body["Name"].as_str().unwrap_or_default()
    );
    shared.state.lock().unwrap().repos.entry(repo).or_default();
    write_json(
        stream,
        200,
        &[],
        &json!({"Code": 200, "Message": "success", "Data": {}}),
    );
}

/// ModelScope's LFS batch: the objects it lacks, each with where to PUT it.
pub(crate) fn modelscope_lfs_batch(
    stream: &mut TcpStream,
    shared: &Shared,
    request: &Request,
    endpoint: &str,
) {
    if !authorized(stream, shared, request) {
        return;
    }
    let missing: Vec<Value> = asked_objects(shared, request)
        .into_iter()
        .filter(|(_, _, stored)| !stored)
        .map(|(oid, size, _)| {
            let href = format!("{endpoint}/ms-lfs-storage/{oid}");
            json!({"oid": oid, "size": size, "actions": {"upload": {"href": href}}})
        })
        .collect();
    let data = json!({"objects": missing});
    write_json(
        stream,
        200,
        &[],
        &json!({"Code": 200, "Message": "success", "Data": data}),
    );
}

/// ModelScope's LFS storage: kept when its SHA-256 is its object id.
pub(crate) fn modelscope_lfs_put(
    stream: &mut TcpStream,
    shared: &Shared,
    request: &Request,
    oid: &str,
) {
    if !authorized(stream, shared, request) {
        return;
    }
    let answer = if store_lfs(shared, request, oid) {
        json!({"Code": 200, "Message": "success"})
    } else {
        json!({"Code": 400, "Message": "content does not match the object id"})
    };
    write_json(stream, 200, &[], &answer);
}

/// ModelScope's commit: JSON `actions`, small files inline, LFS files by SHA-256.
pub(crate) fn modelscope_commit(
    stream: &mut TcpStream,
    shared: &Shared,
    request: &Request,
    repo: &str,
    branch: &str,
) {
    if !authorized(stream, shared, request) {
        return;
    }
    let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
    let changes: Vec<(String, Change)> = body["actions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|action| {
            let path = action["path"].as_str().unwrap_or_default().to_owned();
            let change = if action["type"] == "lfs" {
                Change::Lfs(action["sha256"].as_str().unwrap_or_default().to_owned())
            } else {
                Change::Inline(base64_decode(
                    action["content"].as_str().unwrap_or_default(),
                ))
            };
            (path, change)
        })
        .collect();
    let message = body["commit_message"].as_str().unwrap_or_default();
    match apply_commit(shared, repo, branch, message, changes) {
        Ok(_) => write_json(
            stream,
            200,
            &[],
            &json!({"Success": true, "Code": 200, "Message": "success"}),
        ),
        Err((_, message)) => write_json(
            stream,
            200,
            &[],
            &json!({"Success": false, "Code": 400, "Message": message}),
        ),
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let mut buffer = 0u32;
    let mut bits = 0;
    for byte in text.bytes().filter(|b| *b != b'=') {
        let Some(value) = ALPHABET.iter().position(|a| *a == byte) else {
            continue;
        };
        buffer = (buffer << 6) | value as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    out
}
