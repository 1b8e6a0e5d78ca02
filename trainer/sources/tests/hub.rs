//! The model cache against a fake hub: what is fetched, what a second fetch costs,
//! resuming, gated and missing repositories, damaged transfers, an unreachable hub.

use std::path::{Path, PathBuf};

use anneal_crds::hub::{Hub, HubError, HubRef, HubSettings};
use anneal_fake_hub::FakeHub;
use anneal_sources::{HubCache, HubFetch};

fn tiny_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/models/anneal-tiny")
}

/// The tiny model plus files a model download must leave out.
fn model_with_extras() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(tiny_model()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    std::fs::write(dir.path().join("README.md"), "# a model card").unwrap();
    std::fs::write(dir.path().join("pytorch_model.bin"), vec![7u8; 4096]).unwrap();
    dir
}

fn settings(hub: &FakeHub, which: Hub, token: Option<&str>) -> HubSettings {
    HubSettings {
        hub: which,
        endpoint: hub.endpoint(),
        token: token.map(str::to_owned),
    }
}

fn reference(uri: &str) -> HubRef {
    HubRef::parse(uri).unwrap().unwrap()
}

/// `uri` fetched from `hub` into `cache`, with `token` if any.
fn fetch_with(
    cache: &HubCache,
    hub: &FakeHub,
    uri: &str,
    token: Option<&str>,
) -> Result<HubFetch, HubError> {
    let reference = reference(uri);
    let which = reference.hub;
    cache.fetch(&reference, settings(hub, which, token), &mut |_| {})
}

fn fetch(cache: &HubCache, hub: &FakeHub, uri: &str) -> Result<HubFetch, HubError> {
    fetch_with(cache, hub, uri, None)
}

/// An empty cache in a temporary folder (kept while the first value lives).
fn empty_cache() -> (tempfile::TempDir, HubCache) {
    let dir = tempfile::tempdir().unwrap();
    let cache = HubCache {
        root: dir.path().to_path_buf(),
    };
    (dir, cache)
}

fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The tiny model's files a download takes (its README.md is not one).
fn tiny_model_files() -> Vec<String> {
    file_names(&tiny_model())
        .into_iter()
        .filter(|name| name != "README.md")
        .collect()
}

fn size_of_model(dir: &Path) -> u64 {
    tiny_model_files()
        .iter()
        .map(|name| std::fs::metadata(dir.join(name)).unwrap().len())
        .sum()
}

#[test]
fn a_model_is_fetched_once_with_only_the_files_it_needs() {
    let hub = FakeHub::start();
    let source = model_with_extras();
    let commit = hub.publish_folder("anneal/tiny", "main", source.path());
    let (_dir, cache) = empty_cache();

    let mut progress = 0;
    let first = cache
        .fetch(
            &reference("hf://anneal/tiny"),
            settings(&hub, Hub::HuggingFace, None),
            &mut |n| progress += n,
        )
        .unwrap();
    assert_eq!(first.commit, commit);
    assert_eq!(
        file_names(&first.dir),
        tiny_model_files(),
        "no README.md, no .bin"
    );
    for name in tiny_model_files() {
        assert_eq!(
            std::fs::read(first.dir.join(&name)).unwrap(),
            std::fs::read(tiny_model().join(&name)).unwrap(),
            "{name}"
        );
    }
    let model_bytes = size_of_model(&tiny_model());
    assert_eq!(first.bytes_downloaded, model_bytes);
    assert_eq!(progress, model_bytes);
    assert_eq!(hub.bytes_served(), model_bytes);
    assert!(
        first
            .dir
            .starts_with(cache.root.join("hf/anneal/tiny/snapshots"))
    );

    let second = fetch(&cache, &hub, "hf://anneal/tiny@main").unwrap();
    assert_eq!((second.dir, second.bytes_downloaded), (first.dir, 0));
    assert_eq!(
        hub.bytes_served(),
        model_bytes,
        "the second fetch downloads nothing"
    );
}

#[test]
fn modelscope_repositories_are_fetched_and_checked_the_same_way() {
    let hub = FakeHub::start();
    hub.publish_folder("anneal/tiny", "master", &tiny_model());
    let (_dir, cache) = empty_cache();
    let fetched = fetch(&cache, &hub, "modelscope://anneal/tiny").unwrap();
    assert!(fetched.commit.starts_with("ms-"), "{}", fetched.commit);
    assert_eq!(file_names(&fetched.dir), tiny_model_files());
    assert_eq!(fetched.bytes_downloaded, size_of_model(&tiny_model()));
}

#[test]
fn a_cut_transfer_resumes_where_it_stopped() {
    let hub = FakeHub::start();
    hub.publish_folder("anneal/tiny", "main", &tiny_model());
    hub.cut_next_transfer("model.safetensors", 100_000);
    let (_dir, cache) = empty_cache();
    let fetched = fetch(&cache, &hub, "hf://anneal/tiny").unwrap();
    let model_bytes = size_of_model(&tiny_model());
    assert_eq!(hub.bytes_served(), model_bytes, "no byte sent twice");
    assert!(
        hub.requests()
            .iter()
            .any(|line| line.ends_with("bytes=100000-")),
        "{:?}",
        hub.requests()
    );
    assert_eq!(
        std::fs::read(fetched.dir.join("model.safetensors")).unwrap(),
        std::fs::read(tiny_model().join("model.safetensors")).unwrap()
    );
}

#[test]
fn a_download_left_partial_by_an_earlier_run_is_resumed_not_restarted() {
    let hub = FakeHub::start();
    let commit = hub.publish_folder("anneal/tiny", "main", &tiny_model());
    let cache = tempfile::tempdir().unwrap();
    let partial = cache.path().join("hf/anneal/tiny/partial").join(&commit);
    std::fs::create_dir_all(&partial).unwrap();
    let weights = std::fs::read(tiny_model().join("model.safetensors")).unwrap();
    std::fs::write(partial.join("model.safetensors"), &weights[..300_000]).unwrap();
    assert!(
        !cache
            .path()
            .join("hf/anneal/tiny/snapshots")
            .join(&commit)
            .exists()
    );

    let cache = HubCache {
        root: cache.path().to_path_buf(),
    };
    let fetched = fetch(&cache, &hub, "hf://anneal/tiny").unwrap();
    assert_eq!(
        fetched.bytes_downloaded,
        size_of_model(&tiny_model()) - 300_000
    );
    assert_eq!(
        std::fs::read(fetched.dir.join("model.safetensors")).unwrap(),
        weights
    );
    assert!(!partial.exists(), "the partial folder became the snapshot");
}

#[test]
fn a_gated_model_needs_a_token_that_can_read_it_even_when_cached() {
    let hub = FakeHub::start();
    hub.publish_folder("meta-llama/tiny", "main", &tiny_model());
    hub.gate("meta-llama/tiny", "hf_good");
    let (_dir, cache) = empty_cache();

    let error = fetch(&cache, &hub, "hf://meta-llama/tiny").unwrap_err();
    assert!(
        matches!(
            error,
            HubError::Gated {
                token_given: false,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "hf://meta-llama/tiny: the model is gated and needs a token: accept its license on the hub, then put a token that can read it in HF_TOKEN (for a cluster job, a key of spec.output.credentialsSecret)"
    );
    let error = fetch_with(&cache, &hub, "hf://meta-llama/tiny", Some("hf_other")).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("the token in HF_TOKEN cannot read it"),
        "{error}"
    );
    assert!(!error.may_pass_on_retry());

    fetch_with(&cache, &hub, "hf://meta-llama/tiny", Some("hf_good")).unwrap();
    let error = fetch(&cache, &hub, "hf://meta-llama/tiny").unwrap_err();
    assert!(
        matches!(error, HubError::Gated { .. }),
        "the cache does not open the gate: {error:?}"
    );
}

#[test]
fn missing_repositories_and_revisions_say_which() {
    let hub = FakeHub::start();
    hub.publish_folder("anneal/tiny", "main", &tiny_model());
    let (_dir, cache) = empty_cache();
    for uri in ["hf://anneal/tiny@v9", "modelscope://anneal/tiny@v9"] {
        let error = fetch(&cache, &hub, uri).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("{uri}: the repository has no revision \"v9\" (a branch, tag or commit)")
        );
    }
    for uri in ["hf://anneal/nothing", "modelscope://anneal/nothing"] {
        let error = fetch(&cache, &hub, uri).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "{uri}: no such repository on {} (or it is private: give a token that can read it)",
                hub.endpoint()
            )
        );
    }
    assert_eq!(
        std::fs::read_dir(&cache.root)
            .map(|d| d.count())
            .unwrap_or(0),
        0,
        "nothing cached"
    );
}

#[test]
fn a_damaged_transfer_never_becomes_a_snapshot() {
    let hub = FakeHub::start();
    let source = model_with_extras();
    let commit = hub.publish_folder("anneal/tiny", "main", source.path());
    // The listing keeps the old hash; the bytes served change.
    let config = source.path().join("config.json");
    let mut text = std::fs::read(&config).unwrap();
    text[0] = b' ';
    std::fs::write(&config, text).unwrap();
    let (_dir, cache) = empty_cache();
    let error = fetch(&cache, &hub, "hf://anneal/tiny").unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("config.json: the download's git blob id is "),
        "{error}"
    );
    assert!(
        !cache
            .root
            .join("hf/anneal/tiny/snapshots")
            .join(commit)
            .exists()
    );
}

#[test]
fn an_unreachable_hub_falls_back_to_the_cached_revision_only() {
    let hub = FakeHub::start();
    hub.publish_folder("anneal/tiny", "main", &tiny_model());
    let (_dir, cache) = empty_cache();
    let online = fetch(&cache, &hub, "hf://anneal/tiny").unwrap();
    hub.set_down(true);
    let offline = fetch(&cache, &hub, "hf://anneal/tiny").unwrap();
    assert!(offline.offline);
    assert_eq!(offline.dir, online.dir);
    let error = fetch(&cache, &hub, "hf://anneal/tiny@other").unwrap_err();
    assert!(error.may_pass_on_retry(), "{error:?}");
}

#[test]
fn two_fetches_of_one_model_at_once_download_it_once() {
    let hub = FakeHub::start();
    hub.publish_folder("anneal/tiny", "main", &tiny_model());
    let cache = tempfile::tempdir().unwrap();
    let root = cache.path().to_path_buf();
    let endpoint = hub.endpoint();
    let fetches: Vec<_> = (0..2)
        .map(|_| {
            let root = root.clone();
            let endpoint = endpoint.clone();
            std::thread::spawn(move || {
                let settings = HubSettings {
                    hub: Hub::HuggingFace,
                    endpoint,
                    token: None,
                };
                HubCache { root }
                    .fetch(&reference("hf://anneal/tiny"), settings, &mut |_| {})
                    .unwrap()
            })
        })
        .map(|thread| thread.join().unwrap())
        .collect::<Vec<_>>();
    assert_eq!(fetches[0].dir, fetches[1].dir);
    let model_bytes = size_of_model(&tiny_model());
    assert_eq!(hub.bytes_served(), model_bytes);
    assert_eq!(
        fetches[0].bytes_downloaded + fetches[1].bytes_downloaded,
        model_bytes
    );
}

/// Every file under `dir`, as relative paths, sorted.
fn tree(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.push(
                    path.strip_prefix(dir)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    found.sort();
    found
}

#[test]
fn a_diffusers_pipeline_comes_with_its_component_folders_and_without_single_file_weights() {
    // The tiny FLUX pipeline of the reference fixtures, plus what FLUX.1-dev's repository
    // also holds and a pipeline does not need: single-file weights at the top, images.
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/reference/flux-tiny");
    let repo = tempfile::tempdir().unwrap();
    for component in [
        "transformer",
        "vae",
        "text_encoder",
        "text_encoder_2",
        "tokenizer",
        "tokenizer_2",
        "scheduler",
    ] {
        std::fs::create_dir(repo.path().join(component)).unwrap();
        for entry in std::fs::read_dir(fixture.join(component)).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(
                &path,
                repo.path().join(component).join(path.file_name().unwrap()),
            )
            .unwrap();
        }
    }
    std::fs::copy(
        fixture.join("model_index.json"),
        repo.path().join("model_index.json"),
    )
    .unwrap();
    std::fs::write(repo.path().join("flux1-dev.safetensors"), vec![1u8; 5000]).unwrap();
    std::fs::write(repo.path().join("ae.safetensors"), vec![2u8; 3000]).unwrap();
    std::fs::create_dir(repo.path().join("images")).unwrap();
    std::fs::write(repo.path().join("images/sample.png"), vec![3u8; 2000]).unwrap();
    std::fs::write(repo.path().join("README.md"), "# FLUX").unwrap();

    let hub = FakeHub::start();
    hub.publish_folder("black-forest-labs/flux-tiny", "main", repo.path());
    let (_dir, cache) = empty_cache();
    let fetched = fetch(&cache, &hub, "hf://black-forest-labs/flux-tiny").unwrap();
    let expected: Vec<String> = tree(repo.path())
        .into_iter()
        .filter(|path| {
            path.contains('/') && !path.starts_with("images/") || path == "model_index.json"
        })
        .collect();
    assert_eq!(tree(&fetched.dir), expected);
    assert!(expected.contains(&"transformer/diffusion_pytorch_model.safetensors".to_owned()));
    assert!(expected.contains(&"tokenizer/merges.txt".to_owned()));
    for path in &expected {
        assert_eq!(
            std::fs::read(fetched.dir.join(path)).unwrap(),
            std::fs::read(repo.path().join(path)).unwrap(),
            "{path}"
        );
    }
    let served = hub.bytes_served_by_file();
    assert!(
        served
            .keys()
            .all(|f| !f.ends_with("flux1-dev.safetensors") && !f.ends_with("ae.safetensors")),
        "{served:?}"
    );
    // A second job on the same pipeline downloads nothing.
    assert_eq!(
        fetch(&cache, &hub, "hf://black-forest-labs/flux-tiny")
            .unwrap()
            .bytes_downloaded,
        0
    );
}
