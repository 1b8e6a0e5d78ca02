//! The fake hub's endpoints: Hugging Face's model info and resolve, ModelScope's
//! repository info, file listing and file download.

use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::Ordering;

use serde_json::json;

use crate::http::{Request, read_request, write_head, write_json};
use crate::{Commit, Repo, RepoFile, Shared, uploads};

pub(crate) fn serve_connection(mut stream: TcpStream, shared: &Shared) {
    let Some(request) = read_request(&stream) else {
        return;
    };
    let range = request.headers.get("range").cloned().unwrap_or_default();
    shared.state.lock().unwrap().log.push(
        format!("{} {} {range}", request.method, request.target)
            .trim_end()
            .to_owned(),
    );
    if shared.down.load(Ordering::SeqCst) {
        write_json(&mut stream, 503, &[], &json!({"error": "the hub is down"}));
        return;
    }
    let segments: Vec<&str> = request.segments.iter().map(String::as_str).collect();
    let endpoint = format!(
        "http://{}",
        stream
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default()
    );
    match (request.method.as_str(), segments.as_slice()) {
        ("POST", ["api", "repos", "create"]) => {
            return uploads::create_repo(&mut stream, shared, &request);
        }
        ("POST", ["api", "v1", "models"]) => {
            return uploads::modelscope_create(&mut stream, shared, &request);
        }
        (
            "POST",
            [
                "api",
                "v1",
                "repos",
                "models",
                _,
                _,
                "info",
                "lfs",
                "objects",
                "batch",
            ],
        ) => {
            return uploads::modelscope_lfs_batch(&mut stream, shared, &request, &endpoint);
        }
        ("PUT", ["ms-lfs-storage", oid]) => {
            return uploads::modelscope_lfs_put(&mut stream, shared, &request, oid);
        }
        ("POST", ["api", "v1", "repos", "models", org, name, "commit", branch]) => {
            let repo = format!("{org}/{name}");
            return uploads::modelscope_commit(&mut stream, shared, &request, &repo, branch);
        }
        ("POST", ["api", "models", _, _, "preupload", _]) => {
            return uploads::preupload(&mut stream, shared, &request);
        }
        ("POST", [_, name, "info", "lfs", "objects", "batch"]) if name.ends_with(".git") => {
            return uploads::lfs_batch(&mut stream, shared, &request, &endpoint);
        }
        ("PUT", ["lfs-storage", oid]) => {
            return uploads::lfs_put(&mut stream, shared, &request, oid);
        }
        ("POST", ["api", "models", org, name, "commit", branch]) => {
            return uploads::commit(
                &mut stream,
                shared,
                &request,
                &format!("{org}/{name}"),
                branch,
            );
        }
        _ => {}
    }
    match segments.as_slice() {
        ["api", "models", org, name, "revision", revision] => hugging_face_info(
            &mut stream,
            shared,
            &request,
            &format!("{org}/{name}"),
            revision,
        ),
        [org, name, "resolve", revision, path @ ..] if !path.is_empty() => {
            let repo = format!("{org}/{name}");
            hugging_face_file(
                &mut stream,
                shared,
                &request,
                &repo,
                revision,
                &path.join("/"),
            )
        }
        ["api", "v1", "models", org, name] => {
            let found = shared
                .state
                .lock()
                .unwrap()
                .repos
                .contains_key(&format!("{org}/{name}"));
            modelscope_answer(&mut stream, found, json!({"Name": name}), "model not found");
        }
        ["api", "v1", "models", org, name, "repo", "files"] => {
            modelscope_files(&mut stream, shared, &request, &format!("{org}/{name}"))
        }
        ["api", "v1", "models", org, name, "repo"] => {
            modelscope_file(&mut stream, shared, &request, &format!("{org}/{name}"))
        }
        _ => write_json(&mut stream, 404, &[], &json!({"error": "no such endpoint"})),
    }
}

/// The repository and the commit a revision names, or `Err` with what is missing.
fn lookup(
    shared: &Shared,
    repo: &str,
    revision: &str,
) -> Result<(Repo, String, Commit), &'static str> {
    let state = shared.state.lock().unwrap();
    let found = state.repos.get(repo).ok_or("RepoNotFound")?;
    let commit = found
        .refs
        .get(revision)
        .cloned()
        .or_else(|| {
            found
                .commits
                .contains_key(revision)
                .then(|| revision.to_owned())
        })
        .ok_or("RevisionNotFound")?;
    let files = found.commits[&commit].clone();
    Ok((found.clone(), commit, files))
}

fn hugging_face_info(
    stream: &mut TcpStream,
    shared: &Shared,
    _request: &Request,
    repo: &str,
    revision: &str,
) {
    match lookup(shared, repo, revision) {
        Ok((found, commit, files)) => {
            let siblings: Vec<serde_json::Value> = files
                .files
                .iter()
                .map(|(name, file)| {
                    let mut sibling =
                        json!({"rfilename": name, "size": file.size, "blobId": file.git_sha1});
                    if file.lfs {
                        sibling["lfs"] =
                            json!({"sha256": file.sha256, "size": file.size, "pointerSize": 134});
                    }
                    sibling
                })
                .collect();
            let gated = if found.gated_token.is_some() {
                json!("manual")
            } else {
                json!(false)
            };
            write_json(
                stream,
                200,
                &[],
                &json!({"id": repo, "sha": commit, "gated": gated, "siblings": siblings}),
            );
        }
        Err("RepoNotFound") => {
            hugging_face_refusal(stream, 401, "RepoNotFound", "Repository Not Found")
        }
        Err(code) => hugging_face_refusal(stream, 404, code, "Invalid rev id"),
    }
}

fn hugging_face_file(
    stream: &mut TcpStream,
    shared: &Shared,
    request: &Request,
    repo: &str,
    revision: &str,
    path: &str,
) {
    let (found, _, files) = match lookup(shared, repo, revision) {
        Ok(found) => found,
        Err("RepoNotFound") => {
            return hugging_face_refusal(stream, 401, "RepoNotFound", "Repository Not Found");
        }
        Err(code) => return hugging_face_refusal(stream, 404, code, "Invalid rev id"),
    };
    let token = request
        .headers
        .get("authorization")
        .and_then(|value| value.strip_prefix("Bearer "));
    if let Some(status) = refused(&found, token) {
        return hugging_face_refusal(
            stream,
            status,
            "GatedRepo",
            "Access to this model is restricted",
        );
    }
    match files.files.get(path) {
        Some(file) => send_file(stream, shared, request, path, file),
        None => hugging_face_refusal(stream, 404, "EntryNotFound", "Entry not found"),
    }
}

fn hugging_face_refusal(stream: &mut TcpStream, status: u16, code: &str, message: &str) {
    write_json(
        stream,
        status,
        &[("X-Error-Code", code.to_owned())],
        &json!({"error": message}),
    );
}

/// 401 without the gated repository's token, 403 with another one.
fn refused(repo: &Repo, token: Option<&str>) -> Option<u16> {
    match (&repo.gated_token, token) {
        (None, _) => None,
        (Some(_), None) => Some(401),
        (Some(wanted), Some(given)) if wanted == given => None,
        (Some(_), Some(_)) => Some(403),
    }
}

pub(crate) fn modelscope_token(request: &Request) -> Option<&str> {
    request.headers.get("cookie").and_then(|cookie| {
        cookie
            .split(';')
            .find_map(|pair| pair.trim().strip_prefix("m_session_id="))
    })
}

fn modelscope_answer(stream: &mut TcpStream, found: bool, data: serde_json::Value, missing: &str) {
    if found {
        write_json(
            stream,
            200,
            &[],
            &json!({"Code": 200, "Message": "success", "Data": data}),
        );
    } else {
        write_json(
            stream,
            404,
            &[],
            &json!({"Code": 10010205, "Message": missing, "Data": null}),
        );
    }
}

fn modelscope_files(stream: &mut TcpStream, shared: &Shared, request: &Request, repo: &str) {
    let revision = request
        .query
        .get("Revision")
        .map(String::as_str)
        .unwrap_or("master");
    match lookup(shared, repo, revision) {
        Ok((found, commit, files)) => {
            if let Some(status) = refused(&found, modelscope_token(request)) {
                return write_json(
                    stream,
                    status,
                    &[],
                    &json!({"Code": status, "Message": "no access"}),
                );
            }
            let listed: Vec<serde_json::Value> = files
                .files
                .iter()
                .map(|(name, file)| {
                    json!({"Name": name, "Path": name, "Size": file.size, "Sha256": file.sha256,
                           "Type": "blob", "Revision": commit})
                })
                .collect();
            modelscope_answer(stream, true, json!({"Files": listed}), "");
        }
        Err("RepoNotFound") => modelscope_answer(stream, false, json!(null), "model not found"),
        Err(_) => modelscope_answer(stream, false, json!(null), "revision not found"),
    }
}

fn modelscope_file(stream: &mut TcpStream, shared: &Shared, request: &Request, repo: &str) {
    let revision = request
        .query
        .get("Revision")
        .map(String::as_str)
        .unwrap_or("master");
    let path = request.query.get("FilePath").cloned().unwrap_or_default();
    let (found, _, files) = match lookup(shared, repo, revision) {
        Ok(found) => found,
        Err(_) => return modelscope_answer(stream, false, json!(null), "not found"),
    };
    if let Some(status) = refused(&found, modelscope_token(request)) {
        return write_json(
            stream,
            status,
            &[],
            &json!({"Code": status, "Message": "no access"}),
        );
    }
    match files.files.get(&path) {
        Some(file) => send_file(stream, shared, request, &path, file),
        None => modelscope_answer(stream, false, json!(null), "file not found"),
    }
}

/// The file, or the range of it the request asks for; cut short when a test asked.
fn send_file(
    stream: &mut TcpStream,
    shared: &Shared,
    request: &Request,
    path: &str,
    file: &RepoFile,
) {
    let (start, end) = match request
        .headers
        .get("range")
        .and_then(|r| r.strip_prefix("bytes="))
    {
        None => (0, file.size),
        Some(spec) => {
            let (from, to) = spec.split_once('-').unwrap_or((spec, ""));
            let from: u64 = from.parse().unwrap_or(0);
            let to: u64 = to
                .parse()
                .map(|to: u64| to + 1)
                .unwrap_or(file.size)
                .min(file.size);
            if from >= file.size || from >= to {
                let _ = write_head(
                    stream,
                    416,
                    &[("Content-Range", format!("bytes */{}", file.size))],
                    0,
                );
                return;
            }
            (from, to)
        }
    };
    let cut = {
        let mut state = shared.state.lock().unwrap();
        let index = state
            .cuts
            .iter()
            .position(|(suffix, _)| path.ends_with(suffix.as_str()));
        index.map(|i| state.cuts.remove(i).1)
    };
    let partial = request.headers.contains_key("range");
    let status = if partial { 206 } else { 200 };
    let mut headers = vec![("Content-Type", "application/octet-stream".to_owned())];
    if partial {
        headers.push((
            "Content-Range",
            format!("bytes {start}-{}/{}", end - 1, file.size),
        ));
    }
    if write_head(stream, status, &headers, end - start).is_err() {
        return;
    }
    let Ok(mut source) = std::fs::File::open(&file.path) else {
        return;
    };
    if source.seek(SeekFrom::Start(start)).is_err() {
        return;
    }
    let mut left = cut.map_or(end - start, |cut| cut.min(end - start));
    let mut buffer = vec![0u8; 256 * 1024];
    while left > 0 {
        let want = left.min(buffer.len() as u64) as usize;
        let Ok(read) = source.read(&mut buffer[..want]) else {
            return;
        };
        if read == 0 || stream.write_all(&buffer[..read]).is_err() {
            return;
        }
        shared.bytes_served.fetch_add(read as u64, Ordering::SeqCst);
        *shared
            .state
            .lock()
            .unwrap()
            .served
            .entry(path.to_owned())
            .or_default() += read as u64;
        left -= read as u64;
    }
    if cut.is_some() {
        let _ = stream.flush();
        let _ = stream.shutdown(Shutdown::Both);
    }
}
