//! The storage API on `file://` locations; the same round trip against a real
//! S3-compatible server is in trainer/tests/integration/storage_s3.rs.

use std::fs;
use std::path::Path;

use tempfile::TempDir;

use super::{AsyncStorage, COMPLETE, Storage, StorageError};

/// A location under a fresh temporary folder, not created yet.
fn temp_storage() -> (TempDir, Storage) {
    let dir = TempDir::new().unwrap();
    let uri = format!("file://{}/out", dir.path().display());
    let storage = Storage::open(&uri).unwrap();
    (dir, storage)
}

/// A local folder with nested files: what a checkpoint looks like.
fn checkpoint_folder(root: &Path) -> std::path::PathBuf {
    let folder = root.join("local-ckpt");
    fs::create_dir_all(folder.join("optimizer")).unwrap();
    fs::write(folder.join("adapter_config.json"), b"{\"r\": 8}").unwrap();
    fs::write(folder.join("adapter_model.safetensors"), vec![7u8; 3000]).unwrap();
    fs::write(folder.join("optimizer/state.bin"), b"moments").unwrap();
    fs::write(folder.join("empty.txt"), b"").unwrap();
    folder
}

fn uri_error(uri: &str) -> String {
    Storage::open(uri).unwrap_err().to_string()
}

#[test]
fn uris_are_normalized_and_children_extend_them() {
    let storage = Storage::open("file:///srv//runs/").unwrap();
    assert_eq!(storage.uri(), "file:///srv/runs");
    let child = storage.child("default/job/uid/checkpoints/ckpt-3/");
    assert_eq!(
        child.uri(),
        "file:///srv/runs/default/job/uid/checkpoints/ckpt-3"
    );
    assert_eq!(Storage::open("s3://bucket").unwrap().uri(), "s3://bucket");
    let s3 = Storage::open_with("s3://bucket/runs/", [("AWS_REGION", "us-east-1")]).unwrap();
    assert_eq!(s3.uri(), "s3://bucket/runs");
    assert_eq!(s3.child("a//b").uri(), "s3://bucket/runs/a/b");
}

#[test]
fn unsupported_and_malformed_uris_are_named() {
    for uri in ["gs://bucket/x", "az://container/x"] {
        let error = Storage::open(uri).unwrap_err();
        assert!(
            matches!(error, StorageError::NotSupportedYet { .. }),
            "{error}"
        );
        assert!(error.to_string().contains("not supported yet"), "{error}");
        assert!(error.to_string().contains(uri), "{error}");
    }
    for uri in [
        "hf://org/model",
        "/srv/runs",
        "file://relative/runs",
        "file:///",
        "s3:///prefix",
        "s3://bad bucket/x",
        "s3://bucket/../other",
        "file:///srv/./runs",
    ] {
        let error = uri_error(uri);
        assert!(error.contains(&format!("`{uri}`")), "{error}");
    }
    assert!(uri_error("file://relative/runs").contains("absolute"));
    assert!(uri_error("s3://bucket/../other").contains("`..`"));
}

#[test]
fn paths_that_leave_the_location_are_refused() {
    let (dir, storage) = temp_storage();
    let refused = |result: Result<(), StorageError>| {
        let error = result.unwrap_err();
        assert!(matches!(error, StorageError::Path { .. }), "{error}");
        assert!(error.to_string().contains(storage.uri()), "{error}");
    };
    refused(storage.put("../escape.txt", b"x".to_vec()));
    refused(storage.get("a/../../escape.txt").map(drop));
    refused(storage.list_children("..").map(drop));
    refused(storage.upload_dir_complete(dir.path(), "../up"));
    refused(storage.is_complete("./x").map(drop));
    refused(storage.download_dir("..", dir.path()));
    refused(storage.delete_dir(".."));
    assert!(!dir.path().join("escape.txt").exists());
}

#[test]
#[should_panic(expected = "`..` is not allowed")]
fn a_child_that_leaves_its_parent_panics() {
    let (_dir, storage) = temp_storage();
    storage.child("checkpoints/../../elsewhere");
}

#[test]
fn put_creates_the_folder_and_get_reads_it_back() {
    let (dir, storage) = temp_storage();
    assert_eq!(storage.get("events.jsonl").unwrap(), None);
    storage
        .put("nested/events.jsonl", b"{\"step\":1}\n".to_vec())
        .unwrap();
    storage
        .put("nested/events.jsonl", b"{\"step\":2}\n".to_vec())
        .unwrap();
    let stored = storage.get("nested/events.jsonl").unwrap();
    assert_eq!(stored.as_deref(), Some(&b"{\"step\":2}\n"[..]));
    assert!(dir.path().join("out/nested/events.jsonl").is_file());
    let child = storage.child("nested");
    assert_eq!(child.get("events.jsonl").unwrap(), stored);
}

#[test]
fn list_children_shows_one_level_of_files_and_folders() {
    let (_dir, storage) = temp_storage();
    assert_eq!(storage.list_children("").unwrap(), Vec::<String>::new());
    assert_eq!(
        storage.list_children("missing").unwrap(),
        Vec::<String>::new()
    );
    storage.put("events.jsonl", vec![]).unwrap();
    storage.put("checkpoints/ckpt-2/a", vec![1]).unwrap();
    storage.put("checkpoints/ckpt-10/b/c", vec![1]).unwrap();
    storage.put("checkpoints/notes.txt", vec![1]).unwrap();
    assert_eq!(
        storage.list_children("").unwrap(),
        ["checkpoints", "events.jsonl"]
    );
    assert_eq!(
        storage.list_children("checkpoints").unwrap(),
        ["ckpt-10", "ckpt-2", "notes.txt"]
    );
    assert_eq!(
        storage
            .child("checkpoints")
            .list_children("ckpt-10")
            .unwrap(),
        ["b"]
    );
}

#[test]
fn an_uploaded_folder_is_complete_and_downloads_whole() {
    let (dir, storage) = temp_storage();
    let local = checkpoint_folder(dir.path());
    assert!(!storage.is_complete("checkpoints/ckpt-1").unwrap());
    storage
        .upload_dir_complete(&local, "checkpoints/ckpt-1")
        .unwrap();
    assert!(storage.is_complete("checkpoints/ckpt-1").unwrap());
    assert_eq!(
        storage.list_children("checkpoints/ckpt-1").unwrap(),
        [
            COMPLETE,
            "adapter_config.json",
            "adapter_model.safetensors",
            "empty.txt",
            "optimizer"
        ]
    );
    let marker: serde_json::Value =
        serde_json::from_slice(&storage.get("checkpoints/ckpt-1/COMPLETE").unwrap().unwrap())
            .unwrap();
    assert_eq!(marker["files"][0]["name"], "adapter_config.json");
    assert_eq!(marker["files"][1]["size"], 3000);
    assert_eq!(marker["files"][3]["name"], "optimizer/state.bin");

    let copy = dir.path().join("downloaded");
    storage.download_dir("checkpoints/ckpt-1", &copy).unwrap();
    for name in [
        "adapter_config.json",
        "adapter_model.safetensors",
        "optimizer/state.bin",
        "empty.txt",
    ] {
        assert_eq!(
            fs::read(copy.join(name)).unwrap(),
            fs::read(local.join(name)).unwrap(),
            "{name}"
        );
    }
    assert!(copy.join(COMPLETE).is_file());
    assert_eq!(
        fs::read_dir(copy.join("optimizer")).unwrap().count(),
        1,
        "no partial files left"
    );
}

#[test]
fn a_folder_without_its_marker_or_with_a_file_missing_or_resized_is_not_complete() {
    let (dir, storage) = temp_storage();
    let local = checkpoint_folder(dir.path());
    storage.upload_dir_complete(&local, "ckpt").unwrap();
    let marker = storage.get("ckpt/COMPLETE").unwrap().unwrap();

    assert_eq!(
        storage.unmatched_marked_files("ckpt").unwrap(),
        Some(vec![])
    );
    fs::remove_file(dir.path().join("out/ckpt/COMPLETE")).unwrap();
    assert!(!storage.is_complete("ckpt").unwrap(), "no marker");
    assert_eq!(storage.unmatched_marked_files("ckpt").unwrap(), None);

    storage.put("ckpt/COMPLETE", marker.clone()).unwrap();
    storage
        .put("ckpt/optimizer/state.bin", b"short".to_vec())
        .unwrap();
    assert!(
        !storage.is_complete("ckpt").unwrap(),
        "a listed file has another size"
    );
    assert_eq!(
        storage.unmatched_marked_files("ckpt").unwrap(),
        Some(vec!["optimizer/state.bin".to_owned()])
    );

    storage.upload_dir_complete(&local, "ckpt").unwrap();
    fs::remove_file(dir.path().join("out/ckpt/adapter_model.safetensors")).unwrap();
    assert!(
        !storage.is_complete("ckpt").unwrap(),
        "a listed file is missing"
    );
    assert_eq!(
        storage.unmatched_marked_files("ckpt").unwrap(),
        Some(vec!["adapter_model.safetensors".to_owned()])
    );

    storage.put("ckpt/COMPLETE", b"not json".to_vec()).unwrap();
    let error = storage.is_complete("ckpt").unwrap_err().to_string();
    assert!(error.contains("ckpt/COMPLETE"), "{error}");
}

#[test]
fn uploading_again_replaces_what_the_previous_upload_wrote() {
    let (dir, storage) = temp_storage();
    let local = checkpoint_folder(dir.path());
    storage.upload_dir_complete(&local, "final").unwrap();
    // Written by someone else, listed by no marker: left alone.
    storage.put("final/README.md", b"notes".to_vec()).unwrap();

    fs::remove_dir_all(local.join("optimizer")).unwrap();
    fs::write(local.join("adapter_model.safetensors"), vec![1u8; 10]).unwrap();
    // A marker downloaded with an earlier copy is not uploaded as a file.
    fs::write(local.join(COMPLETE), b"stale").unwrap();
    storage.upload_dir_complete(&local, "final").unwrap();

    assert!(storage.is_complete("final").unwrap());
    assert_eq!(
        storage.list_children("final").unwrap(),
        [
            COMPLETE,
            "README.md",
            "adapter_config.json",
            "adapter_model.safetensors",
            "empty.txt"
        ]
    );
    assert_eq!(
        storage.get("final/adapter_model.safetensors").unwrap(),
        Some(vec![1u8; 10])
    );
}

#[test]
fn large_files_go_up_in_parts_and_come_back_whole() {
    let (dir, storage) = temp_storage();
    let local = dir.path().join("big");
    fs::create_dir_all(&local).unwrap();
    // Larger than one request's worth, not a multiple of the part size.
    let content: Vec<u8> = (0..17 * 1024 * 1024 + 123)
        .map(|i: u32| (i % 251) as u8)
        .collect();
    fs::write(local.join("model.safetensors"), &content).unwrap();
    storage.upload_dir_complete(&local, "final").unwrap();
    assert!(storage.is_complete("final").unwrap());
    let copy = dir.path().join("copy");
    storage.download_dir("final", &copy).unwrap();
    assert!(fs::read(copy.join("model.safetensors")).unwrap() == content);
}

#[test]
fn delete_dir_removes_one_folder_and_keeps_its_neighbours() {
    let (dir, storage) = temp_storage();
    let local = checkpoint_folder(dir.path());
    storage
        .upload_dir_complete(&local, "checkpoints/ckpt-1")
        .unwrap();
    storage
        .upload_dir_complete(&local, "checkpoints/ckpt-10")
        .unwrap();
    storage.delete_dir("checkpoints/ckpt-1").unwrap();
    assert!(!storage.is_complete("checkpoints/ckpt-1").unwrap());
    assert_eq!(storage.list_children("checkpoints").unwrap(), ["ckpt-10"]);
    assert!(storage.is_complete("checkpoints/ckpt-10").unwrap());
    assert!(!dir.path().join("out/checkpoints/ckpt-1").exists());
    storage.delete_dir("checkpoints/ckpt-1").unwrap();
}

#[test]
fn downloading_a_folder_with_nothing_in_it_is_an_error() {
    let (dir, storage) = temp_storage();
    let error = storage
        .download_dir("missing", &dir.path().join("copy"))
        .unwrap_err();
    assert!(matches!(error, StorageError::EmptyFolder { .. }), "{error}");
    assert!(error.to_string().contains("/out/missing"), "{error}");
}

#[test]
fn uploading_a_missing_local_folder_names_it() {
    let (dir, storage) = temp_storage();
    let missing = dir.path().join("no-such-folder");
    let error = storage
        .upload_dir_complete(&missing, "x")
        .unwrap_err()
        .to_string();
    assert!(error.contains("no-such-folder"), "{error}");
}

#[test]
fn get_head_reads_a_bounded_prefix_and_the_whole_size() {
    let (_dir, storage) = temp_storage();
    storage.put("data.jsonl", b"0123456789".to_vec()).unwrap();
    storage.put("empty.jsonl", Vec::new()).unwrap();
    assert_eq!(
        storage.get_head("data.jsonl", 4).unwrap(),
        Some((b"0123".to_vec(), 10))
    );
    assert_eq!(
        storage.get_head("data.jsonl", 100).unwrap(),
        Some((b"0123456789".to_vec(), 10))
    );
    assert_eq!(
        storage.get_head("empty.jsonl", 4).unwrap(),
        Some((Vec::new(), 0))
    );
    assert_eq!(storage.get_head("missing.jsonl", 4).unwrap(), None);
}

#[test]
fn the_async_core_reads_what_the_blocking_facade_wrote_on_another_runtime() {
    // The operator awaits AsyncStorage on its own runtime while a trainer writes
    // through Storage: both must see the same objects and the same COMPLETE check.
    let (dir, storage) = temp_storage();
    storage
        .put("events.jsonl", b"{\"step\":1}\n".to_vec())
        .unwrap();
    let folder = checkpoint_folder(dir.path());
    storage
        .upload_dir_complete(&folder, "checkpoints/ckpt-1")
        .unwrap();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let uri = storage.uri().to_owned();
    let (events, head, complete, children, missing) = runtime.block_on(async move {
        let remote = AsyncStorage::open(&uri).unwrap();
        (
            remote.get("events.jsonl").await.unwrap(),
            remote.get_head("events.jsonl", 3).await.unwrap(),
            remote.is_complete("checkpoints/ckpt-1").await.unwrap(),
            remote.list_children("checkpoints").await.unwrap(),
            remote.get("nothing-here").await.unwrap(),
        )
    });
    assert_eq!(events.as_deref(), Some(&b"{\"step\":1}\n"[..]));
    assert_eq!(head, Some((b"{\"s".to_vec(), 11)));
    assert!(complete);
    assert_eq!(children, vec!["ckpt-1".to_owned()]);
    assert_eq!(missing, None);
}
