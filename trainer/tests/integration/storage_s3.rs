//! The storage layer against a real S3-compatible server (moto on loopback): the
//! round trip the file:// unit tests do, through `s3://bucket/prefix`.

use std::fs;
use std::path::{Path, PathBuf};

use anneal_crds::storage::{COMPLETE, Storage, StorageError};
use anneal_moto::MotoServer;
use tempfile::TempDir;

const BUCKET: &str = "anneal-test";

/// A local folder with nested files, one of them large enough to go up in parts.
fn checkpoint_folder(root: &Path) -> PathBuf {
    let folder = root.join("local-ckpt");
    fs::create_dir_all(folder.join("optimizer")).unwrap();
    fs::write(folder.join("adapter_config.json"), b"{\"r\": 8}").unwrap();
    let weights: Vec<u8> = (0..17 * 1024 * 1024 + 123)
        .map(|i: u32| (i % 251) as u8)
        .collect();
    fs::write(folder.join("adapter_model.safetensors"), weights).unwrap();
    fs::write(folder.join("optimizer/state.bin"), b"moments").unwrap();
    fs::write(folder.join("empty.txt"), b"").unwrap();
    folder
}

fn open(server: &MotoServer, uri: &str) -> Storage {
    Storage::open_with(uri, server.settings()).unwrap()
}

#[test]
fn s3_storage_round_trips_objects_and_folders() {
    let server = MotoServer::start();
    server.create_bucket(BUCKET);
    let storage = open(&server, &format!("s3://{BUCKET}/runs/default/job/uid"));
    assert_eq!(storage.uri(), "s3://anneal-test/runs/default/job/uid");

    // Single objects.
    assert_eq!(storage.get("events.jsonl").unwrap(), None);
    storage
        .put("events.jsonl", b"{\"step\":1}\n".to_vec())
        .unwrap();
    let events = storage.get("events.jsonl").unwrap();
    assert_eq!(events.as_deref(), Some(&b"{\"step\":1}\n"[..]));

    // Folders, with the marker written last and checked.
    let dir = TempDir::new().unwrap();
    let local = checkpoint_folder(dir.path());
    assert!(!storage.is_complete("checkpoints/ckpt-1").unwrap());
    storage
        .upload_dir_complete(&local, "checkpoints/ckpt-1")
        .unwrap();
    storage
        .upload_dir_complete(&local, "checkpoints/ckpt-10")
        .unwrap();
    assert!(storage.is_complete("checkpoints/ckpt-1").unwrap());
    assert_eq!(
        storage.list_children("").unwrap(),
        ["checkpoints", "events.jsonl"]
    );
    assert_eq!(
        storage.list_children("checkpoints").unwrap(),
        ["ckpt-1", "ckpt-10"]
    );
    assert_eq!(
        storage
            .child("checkpoints")
            .list_children("ckpt-1")
            .unwrap(),
        [
            COMPLETE,
            "adapter_config.json",
            "adapter_model.safetensors",
            "empty.txt",
            "optimizer"
        ]
    );

    let copy = dir.path().join("downloaded");
    storage.download_dir("checkpoints/ckpt-1", &copy).unwrap();
    for name in [
        "adapter_config.json",
        "adapter_model.safetensors",
        "optimizer/state.bin",
        "empty.txt",
    ] {
        let same = fs::read(copy.join(name)).unwrap() == fs::read(local.join(name)).unwrap();
        assert!(same, "{name} differs after the round trip");
    }

    // What a reader must not trust.
    storage
        .put("checkpoints/ckpt-1/optimizer/state.bin", b"short".to_vec())
        .unwrap();
    assert!(
        !storage.is_complete("checkpoints/ckpt-1").unwrap(),
        "a resized file"
    );
    storage
        .upload_dir_complete(&local, "checkpoints/ckpt-1")
        .unwrap();
    assert!(
        storage.is_complete("checkpoints/ckpt-1").unwrap(),
        "uploaded again"
    );

    // Deleting one checkpoint keeps its neighbour whose name it prefixes.
    storage.delete_dir("checkpoints/ckpt-1").unwrap();
    assert!(!storage.is_complete("checkpoints/ckpt-1").unwrap());
    assert_eq!(storage.list_children("checkpoints").unwrap(), ["ckpt-10"]);
    assert!(storage.is_complete("checkpoints/ckpt-10").unwrap());
    let error = storage
        .download_dir("checkpoints/ckpt-1", &dir.path().join("gone"))
        .unwrap_err();
    assert!(matches!(error, StorageError::EmptyFolder { .. }), "{error}");
}

#[test]
fn s3_storage_names_a_missing_bucket() {
    let server = MotoServer::start();
    let storage = open(&server, "s3://no-such-bucket/runs");
    let error = storage
        .put("events.jsonl", b"{}".to_vec())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("s3://no-such-bucket/runs/events.jsonl"),
        "{error}"
    );
}
