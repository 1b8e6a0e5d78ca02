//! `trainer publish` against a fake Hugging Face Hub: an adapter and a merged model
//! saved to repositories and read back, publishing again changing nothing, the merged
//! model answering exactly as the base model with the adapter, and a publish without a
//! token refused.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anneal_fake_hub::FakeHub;

use crate::train_cli::{expect, job_dir, repo, trainer_train};

const WRITER: &str = "hf_writer";

fn tiny_model() -> PathBuf {
    repo().join("examples/models/anneal-tiny")
}

/// A trained adapter: the final checkpoint of `train_cli`'s job, trained hard enough
/// (learning rate 0.01, 3 epochs) that it changes the model's greedy answers.
fn trained(dir: &Path) -> PathBuf {
    let manifest = job_dir(dir, None);
    let text = std::fs::read_to_string(&manifest).unwrap();
    let text = text
        .replace("learningRate: 0.003", "learningRate: 0.01")
        .replace("epochs: 2", "epochs: 3");
    std::fs::write(&manifest, text).unwrap();
    expect(
        &trainer_train(&manifest, &dir.join("out"), &[])
            .output()
            .unwrap(),
        0,
    );
    dir.join("out/team-a/cli/r1/final")
}

fn trainer(hub: &FakeHub, cache: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(args)
        .env("HF_ENDPOINT", hub.endpoint())
        .env("HF_TOKEN", WRITER)
        .env("ANNEAL_MODEL_CACHE", cache)
        .output()
        .unwrap()
}

fn json_line(output: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// The greedy answer to a chat question of the training data's kind.
fn greedy(args: &[&str]) -> String {
    let messages = tempfile::NamedTempFile::new().unwrap();
    let chat = r#"[{"role": "user", "content": "What should I wear when it is windy?"}]"#;
    std::fs::write(messages.path(), chat).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .arg("generate")
        .args(args)
        .arg("--messages")
        .arg(messages.path())
        .args(["--max-new-tokens", "24", "--device", "cpu"])
        .output()
        .unwrap();
    expect(&output, 0);
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn an_adapter_is_published_once_and_a_second_publish_changes_nothing() {
    let hub = FakeHub::start();
    hub.allow_writes(WRITER);
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = trained(dir.path());
    let cache = dir.path().join("cache");
    let publish = |hub: &FakeHub| {
        trainer(
            hub,
            &cache,
            &[
                "publish",
                checkpoint.to_str().unwrap(),
                "hf://team/support-adapter",
                "--json",
            ],
        )
    };

    let first = publish(&hub);
    expect(&first, 0);
    let outcome = json_line(&first);
    let commit = hub.branch_commit("team/support-adapter", "main").unwrap();
    assert_eq!(outcome["commit"], commit.as_str());
    assert_eq!(outcome["filesChanged"], 3);
    assert_eq!(hub.commits_made(), 1);
    let adapter_bytes = std::fs::metadata(checkpoint.join("adapter_model.safetensors"))
        .unwrap()
        .len();
    assert_eq!(
        hub.lfs_bytes_received(),
        adapter_bytes,
        "the weights through LFS, once"
    );

    let again = publish(&hub);
    expect(&again, 0);
    assert_eq!(json_line(&again)["filesChanged"], 0);
    assert_eq!(json_line(&again)["commit"], commit.as_str());
    assert_eq!(hub.commits_made(), 1, "publishing again makes no commit");

    // Read back through the hub client: the PEFT files and the card, nothing else.
    let fetched = dir.path().join("fetched");
    let output = trainer(
        &hub,
        &cache,
        &[
            "fetch",
            "hf://team/support-adapter",
            fetched.to_str().unwrap(),
        ],
    );
    expect(&output, 0);
    let mut names: Vec<String> = std::fs::read_dir(&fetched)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["adapter_config.json", "adapter_model.safetensors"],
        "a download takes the model's files"
    );
    for name in &names {
        assert_eq!(
            std::fs::read(fetched.join(name)).unwrap(),
            std::fs::read(checkpoint.join(name)).unwrap()
        );
    }
    assert_eq!(
        greedy(&[
            "--model",
            tiny_model().to_str().unwrap(),
            "--adapter",
            fetched.to_str().unwrap()
        ]),
        greedy(&[
            "--model",
            tiny_model().to_str().unwrap(),
            "--adapter",
            checkpoint.to_str().unwrap()
        ])
    );
}

#[test]
fn a_merged_model_answers_as_the_base_with_its_adapter() {
    let hub = FakeHub::start();
    hub.allow_writes(WRITER);
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = trained(dir.path());
    let cache = dir.path().join("cache");
    let output = trainer(
        &hub,
        &cache,
        &[
            "publish",
            checkpoint.to_str().unwrap(),
            "hf://team/support-merged",
            "--merge",
            "--base-model",
            tiny_model().to_str().unwrap(),
            "--json",
        ],
    );
    expect(&output, 0);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("merged 28 projections"), "{stderr}");

    let merged = dir.path().join("merged");
    expect(
        &trainer(
            &hub,
            &cache,
            &[
                "fetch",
                "hf://team/support-merged",
                merged.to_str().unwrap(),
            ],
        ),
        0,
    );
    assert!(
        !merged.join("adapter_config.json").exists(),
        "a whole model, no adapter"
    );
    assert_eq!(
        std::fs::read(merged.join("tokenizer.json")).unwrap(),
        std::fs::read(tiny_model().join("tokenizer.json")).unwrap()
    );
    let base = tiny_model();
    let with_adapter = greedy(&[
        "--model",
        base.to_str().unwrap(),
        "--adapter",
        checkpoint.to_str().unwrap(),
    ]);
    assert_eq!(greedy(&["--model", merged.to_str().unwrap()]), with_adapter);
    assert_ne!(
        greedy(&["--model", base.to_str().unwrap()]),
        with_adapter,
        "the adapter changes the answer"
    );

    // The card, in the repository beside the weights.
    let card = hub_file(&hub, "team/support-merged", "README.md");
    assert!(
        card.starts_with("---\nbase_model: anneal-tiny\nlibrary_name: transformers\n"),
        "{card}"
    );
    assert!(
        card.contains("| train: `train.jsonl` |") && card.contains("(this one)"),
        "{card}"
    );
}

#[test]
fn publishing_to_a_folder_writes_a_complete_marker_and_without_a_token_is_refused() {
    let hub = FakeHub::start();
    hub.allow_writes(WRITER);
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = trained(dir.path());
    let folder = dir.path().join("published");
    let output = trainer(
        &hub,
        &dir.path().join("cache"),
        &[
            "publish",
            checkpoint.to_str().unwrap(),
            folder.to_str().unwrap(),
        ],
    );
    expect(&output, 0);
    for name in [
        "adapter_config.json",
        "adapter_model.safetensors",
        "README.md",
        "COMPLETE",
    ] {
        assert!(folder.join(name).is_file(), "{name}");
    }
    assert!(!folder.join("optimizer.safetensors").exists());

    let refused = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(["publish", checkpoint.to_str().unwrap(), "hf://team/x"])
        .env("HF_ENDPOINT", hub.endpoint())
        .env_remove("HF_TOKEN")
        .output()
        .unwrap();
    expect(&refused, 2);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("hf://team/x") && stderr.contains("401"),
        "{stderr}"
    );
    assert_eq!(hub.commits_made(), 0);
}

/// A file of a repository's main branch, as text, through the resolve endpoint.
fn hub_file(hub: &FakeHub, repo: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let commit = hub.branch_commit(repo, "main").unwrap();
    let address = hub.endpoint().trim_start_matches("http://").to_owned();
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    write!(
        stream,
        "GET /{repo}/resolve/{commit}/{path} HTTP/1.1\r\nHost: {address}\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    let (head, body) = reply.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_owned()
}

#[test]
fn an_adapter_is_published_to_modelscope_and_read_back() {
    let hub = FakeHub::start();
    hub.allow_writes(WRITER);
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = trained(dir.path());
    let cache = dir.path().join("cache");
    let publish = || {
        Command::new(env!("CARGO_BIN_EXE_trainer"))
            .args([
                "publish",
                checkpoint.to_str().unwrap(),
                "modelscope://team/bot",
                "--json",
            ])
            .env("MODELSCOPE_ENDPOINT", hub.endpoint())
            .env("MODELSCOPE_API_TOKEN", WRITER)
            .output()
            .unwrap()
    };
    let first = publish();
    expect(&first, 0);
    assert_eq!(json_line(&first)["filesChanged"], 3);
    assert_eq!(
        hub.files_at("team/bot", "master"),
        [
            "README.md",
            "adapter_config.json",
            "adapter_model.safetensors"
        ]
    );
    let weights = std::fs::metadata(checkpoint.join("adapter_model.safetensors"))
        .unwrap()
        .len();
    assert_eq!(hub.lfs_bytes_received(), weights, "the weights through LFS");
    let again = publish();
    expect(&again, 0);
    assert_eq!(json_line(&again)["filesChanged"], 0);
    assert_eq!(json_line(&again)["commit"], json_line(&first)["commit"]);
    assert_eq!(hub.commits_made(), 1, "publishing again makes no commit");

    let fetched = dir.path().join("fetched");
    let output = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(["fetch", "modelscope://team/bot", fetched.to_str().unwrap()])
        .env("MODELSCOPE_ENDPOINT", hub.endpoint())
        .env("MODELSCOPE_API_TOKEN", WRITER)
        .env("ANNEAL_MODEL_CACHE", &cache)
        .output()
        .unwrap();
    expect(&output, 0);
    assert_eq!(
        std::fs::read(fetched.join("adapter_model.safetensors")).unwrap(),
        std::fs::read(checkpoint.join("adapter_model.safetensors")).unwrap()
    );
}
