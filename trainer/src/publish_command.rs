//! `trainer publish CHECKPOINT DESTINATION [--merge]`: a checkpoint saved to a model
//! repository, as the operator's publish pod and a user at a shell run it. The adapter
//! (PEFT files only), or with `--merge` the base model with the adapter folded in
//! (a whole model any runtime loads), goes with a generated model card to a Hugging
//! Face or ModelScope repository (created private if missing; one commit, none when
//! nothing changed), an `s3://` prefix (with a `COMPLETE` marker) or a local folder.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anneal_crds::hub::{Hub, HubClient, HubRef, HubSettings, hub_form_of_name};
use anneal_crds::storage::Storage;
use anneal_model::lora::merge_folder::{SHARD_BYTES_MAX, merge_adapter_folder};
use anneal_model::lora::peft::read_adapter_config;
use anneal_sources::{FolderSource, make_local};

use crate::model_card::{CardFacts, model_card};

#[derive(clap::Args, Debug, Clone)]
pub struct PublishArgs {
    /// The checkpoint folder: a path, file://, s3:// (an adapter, or a fully trained model).
    pub checkpoint: String,
    /// Where to: hf://ORG/NAME[@BRANCH], modelscope://ORG/NAME[@BRANCH], s3://BUCKET/PREFIX,
    /// or a local folder.
    pub destination: String,
    /// Merge the adapter into its base model and publish the whole model.
    #[arg(long)]
    pub merge: bool,
    /// The base model to merge into (a folder, file://, s3://, hf://, modelscope://).
    /// Default: the adapter's base model when its name is a hub repository (ORG/NAME).
    #[arg(long)]
    pub base_model: Option<String>,
    /// The commit message (hub destinations).
    #[arg(long)]
    pub message: Option<String>,
    /// Scratch folder for downloads and the merged model (default: a temporary one).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Print the outcome as one JSON line on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Why a publish failed; `retry` says whether trying again may help (exit 1) or not (2).
struct Failure {
    message: String,
    retry: bool,
}

impl Failure {
    fn wrong(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retry: false,
        }
    }
}

/// What was published.
struct Outcome {
    /// Where it can be read back from.
    uri: String,
    /// The hub commit, for hub destinations.
    commit: Option<String>,
    files_changed: Option<usize>,
}

/// 0 published, 1 a failure a retry may fix, 2 a wrong checkpoint, destination or token.
pub fn run(args: PublishArgs) -> ExitCode {
    match publish(&args) {
        Ok(outcome) => {
            eprintln!(
                "trainer publish: {} -> {}{}",
                args.checkpoint,
                outcome.uri,
                outcome
                    .commit
                    .as_deref()
                    .map(|c| format!(" at commit {c}"))
                    .unwrap_or_default()
            );
            let line = serde_json::json!({
                "destination": args.destination,
                "uri": outcome.uri,
                "commit": outcome.commit,
                "filesChanged": outcome.files_changed,
                "merged": args.merge,
            });
            if args.json {
                println!("{line}");
            }
            // In a pod, the outcome is what the operator reads back into the job's status.
            termination_log(&line.to_string());
            ExitCode::SUCCESS
        }
        Err(failure) => {
            eprintln!("trainer publish: {}", failure.message);
            termination_log(&format!("trainer publish: {}", failure.message));
            ExitCode::from(if failure.retry { 1 } else { 2 })
        }
    }
}

/// Writes `text` to the file `ANNEAL_TERMINATION_LOG` names, when it names one.
fn termination_log(text: &str) {
    if let Some(path) = std::env::var_os("ANNEAL_TERMINATION_LOG")
        && let Err(error) = std::fs::write(&path, text)
    {
        eprintln!(
            "trainer publish: {}: {error}",
            PathBuf::from(path).display()
        );
    }
}

fn publish(args: &PublishArgs) -> Result<Outcome, Failure> {
    let temporary;
    let work = match &args.work_dir {
        Some(dir) => dir.clone(),
        None => {
            temporary = tempfile::Builder::new()
                .prefix("anneal-publish-")
                .tempdir()
                .map_err(|e| Failure::wrong(format!("a scratch folder: {e}")))?;
            temporary.path().to_path_buf()
        }
    };
    let source = |value: &str, what: &'static str, target: &Path| {
        let source =
            FolderSource::from_flag(value, what).map_err(|e| Failure::wrong(e.to_string()))?;
        make_local(&source, target, what).map_err(|e| Failure {
            retry: e.may_pass_on_retry(),
            message: e.to_string(),
        })
    };
    let checkpoint = source(&args.checkpoint, "CHECKPOINT", &work.join("checkpoint"))?;
    let adapter = checkpoint.join("adapter_config.json").is_file();
    if args.merge && !adapter {
        return Err(Failure::wrong(format!(
            "{}: a whole model already (full training); publish it without --merge",
            args.checkpoint
        )));
    }
    let staged = work.join("publish");
    if staged.exists() {
        std::fs::remove_dir_all(&staged)
            .map_err(|e| Failure::wrong(format!("{}: {e}", staged.display())))?;
    }
    std::fs::create_dir_all(&staged)
        .map_err(|e| Failure::wrong(format!("{}: {e}", staged.display())))?;
    if args.merge {
        let config = read_adapter_config(&checkpoint).map_err(|e| Failure::wrong(e.to_string()))?;
        let base = match &args.base_model {
            Some(base) => base.clone(),
            None => config
                .base_model_name_or_path
                .as_deref()
                .and_then(hub_form_of_name)
                .ok_or_else(|| {
                    Failure::wrong(format!(
                        "--merge needs the base model: the adapter's base {:?} is not a hub repository; give --base-model",
                        config.base_model_name_or_path.unwrap_or_default()
                    ))
                })?,
        };
        let base_dir = source(&base, "--base-model", &work.join("base-model"))?;
        let report = merge_adapter_folder(&base_dir, &checkpoint, &staged, SHARD_BYTES_MAX)
            .map_err(|e| Failure::wrong(format!("merging: {e}")))?;
        eprintln!(
            "trainer publish: merged {} projections into {base} ({} shard(s), {} bytes)",
            report.merged, report.shards, report.weight_bytes
        );
    } else {
        copy_published_files(&checkpoint, &staged, adapter)?;
    }
    let name = checkpoint_name(&args.checkpoint);
    let card = model_card(
        &checkpoint,
        &CardFacts {
            checkpoint: &name,
            adapter: adapter && !args.merge,
            merged: args.merge,
        },
    );
    std::fs::write(staged.join("README.md"), card).map_err(|e| Failure::wrong(e.to_string()))?;
    upload(args, &staged, &name)
}

/// The files a published checkpoint keeps: what PEFT or transformers load, never the
/// optimizer state or the trainer's own records.
fn copy_published_files(checkpoint: &Path, staged: &Path, adapter: bool) -> Result<(), Failure> {
    let entries = std::fs::read_dir(checkpoint)
        .map_err(|e| Failure::wrong(format!("{}: {e}", checkpoint.display())))?;
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let keep = if adapter {
            name == "adapter_config.json" || name == "adapter_model.safetensors"
        } else {
            !matches!(
                name.as_str(),
                "optimizer.safetensors"
                    | "trainer_state.json"
                    | "samples.json"
                    | "COMPLETE"
                    | "README.md"
            )
        };
        if keep && path.is_file() {
            std::fs::copy(&path, staged.join(&name))
                .map_err(|e| Failure::wrong(format!("{}: {e}", path.display())))?;
        }
    }
    Ok(())
}

fn upload(args: &PublishArgs, staged: &Path, name: &str) -> Result<Outcome, Failure> {
    let destination = args.destination.trim_end_matches('/');
    if let Some(reference) = HubRef::parse(destination) {
        let reference = reference.map_err(Failure::wrong)?;
        let settings = HubSettings::from_env(reference.hub);
        let endpoint = settings.endpoint.clone();
        let client = HubClient::new(settings).map_err(|e| Failure::wrong(e.to_string()))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Failure::wrong(e.to_string()))?;
        let message = args
            .message
            .clone()
            .unwrap_or_else(|| format!("Publish {name} with Anneal"));
        let published = runtime
            .block_on(client.publish_folder(&reference, staged, &message))
            .map_err(|e| Failure {
                retry: e.may_pass_on_retry(),
                message: format!("{destination}: {e}"),
            })?;
        let uri = match reference.hub {
            Hub::HuggingFace => format!("{endpoint}/{}/tree/{}", reference.repo, published.commit),
            Hub::ModelScope => format!("{endpoint}/models/{}/files", reference.repo),
        };
        eprintln!(
            "trainer publish: {} file(s) changed, {} bytes to LFS storage",
            published.files_changed, published.lfs_bytes
        );
        return Ok(Outcome {
            uri,
            commit: Some(published.commit),
            files_changed: Some(published.files_changed),
        });
    }
    if destination.starts_with("s3://") || destination.starts_with("file://") {
        let storage = Storage::open(destination).map_err(|e| Failure::wrong(e.to_string()))?;
        storage
            .upload_dir_complete(staged, "")
            .map_err(|e| Failure {
                retry: true,
                message: format!("{destination}: {e}"),
            })?;
        return Ok(Outcome {
            uri: destination.to_owned(),
            commit: None,
            files_changed: None,
        });
    }
    if destination.contains("://") {
        return Err(Failure::wrong(format!(
            "{destination}: publish to hf://ORG/NAME, modelscope://ORG/NAME, s3://BUCKET/PREFIX or a local folder"
        )));
    }
    let target = std::path::absolute(destination).map_err(|e| Failure::wrong(e.to_string()))?;
    let storage = Storage::open(&format!("file://{}", target.display()))
        .map_err(|e| Failure::wrong(e.to_string()))?;
    storage
        .upload_dir_complete(staged, "")
        .map_err(|e| Failure::wrong(format!("{}: {e}", target.display())))?;
    Ok(Outcome {
        uri: target.display().to_string(),
        commit: None,
        files_changed: None,
    })
}

/// `ckpt-81` of `.../checkpoints/ckpt-81`, `final` of `.../final`.
fn checkpoint_name(checkpoint: &str) -> String {
    checkpoint
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(checkpoint)
        .to_owned()
}
