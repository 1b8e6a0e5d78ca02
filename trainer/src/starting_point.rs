//! A job that starts from another FineTuneJob's checkpoint
//! (`spec.baseModel.fineTuneJob`), made into what the run loads: the base model that
//! job trained, and its adapter to train further (a LoRA checkpoint), or the
//! checkpoint itself as the base (a fully trained one).
//!
//! Locally the checkpoint is found in that job's newest run under the runs folder
//! (`--output`), whose `job.yaml` names the base model it trained. In a pod the
//! operator has already written the base model into the manifest and names the
//! checkpoint's folder with `--starts-from JOB/CHECKPOINT=URI`.

use std::path::{Path, PathBuf};

use anneal_crds::FineTuneJob;
use anneal_crds::finetunejob::{StartedFrom, TrainingType};
use anneal_crds::manifest::parse_finetunejob;
use anneal_crds::storage::{Storage, StorageError};
use anneal_train::checkpoint::{CHECKPOINTS, FINAL};

use crate::evaluate::resolve::best_checkpoint;
use crate::train_command::JOB_FILE;

/// The file a LoRA checkpoint has and a whole model does not.
const ADAPTER_CONFIG: &str = "adapter_config.json";

/// `--starts-from JOB/CHECKPOINT=URI`: the checkpoint the operator resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct StartsFromArg {
    pub job: String,
    pub checkpoint: String,
    pub uri: String,
}

/// Reads `--starts-from` as clap takes it.
pub fn starts_from_arg(value: &str) -> Result<StartsFromArg, String> {
    let parsed = value.split_once('=').and_then(|(what, uri)| {
        let (job, checkpoint) = what.split_once('/')?;
        (!job.is_empty() && !checkpoint.is_empty() && uri.contains("://")).then(|| StartsFromArg {
            job: job.to_owned(),
            checkpoint: checkpoint.to_owned(),
            uri: uri.trim_end_matches('/').to_owned(),
        })
    });
    parsed.ok_or_else(|| format!("{value:?} is not JOB/CHECKPOINT=URI (e.g. sft/ckpt-80=s3://runs/ns/sft/uid/checkpoints/ckpt-80)"))
}

/// Why a job cannot start from the checkpoint it names.
#[derive(Debug, thiserror::Error)]
pub enum StartingPointError {
    #[error("{field}: {message}")]
    Field { field: String, message: String },
    #[error("{field}: {source}")]
    Storage {
        field: String,
        #[source]
        source: Box<StorageError>,
    },
}

const FIELD: &str = "spec.baseModel.fineTuneJob";

fn field_error(field: &str, message: String) -> StartingPointError {
    StartingPointError::Field {
        field: field.to_owned(),
        message,
    }
}

fn storage_error(source: StorageError) -> StartingPointError {
    StartingPointError::Storage {
        field: FIELD.to_owned(),
        source: Box::new(source),
    }
}

/// What the run starts from, made local.
pub struct StartingPoint {
    pub started_from: StartedFrom,
    /// A LoRA checkpoint's adapter, downloaded: trained further.
    pub adapter: Option<PathBuf>,
}

/// `job` as the run trains it, its base model made concrete, and where it starts:
/// `None` for a job that names no other job. `namespace_runs` is where the runs of
/// the namespace's jobs go (`{output}/{namespace}`).
pub fn resolve(
    job: &FineTuneJob,
    given: Option<&StartsFromArg>,
    namespace_runs: &Storage,
    work_dir: &Path,
) -> Result<(FineTuneJob, Option<StartingPoint>), StartingPointError> {
    let mut resolved = job.clone();
    let (name, checkpoint, uri) = match (given, &job.spec.base_model.fine_tune_job) {
        (Some(arg), _) => (arg.job.clone(), arg.checkpoint.clone(), arg.uri.clone()),
        (None, None) => return Ok((resolved, None)),
        (None, Some(parent)) => {
            let (run, parent_job) = newest_run_of(namespace_runs, &parent.name)?;
            if parent_job.spec.base_model.name != job.spec.base_model.name {
                return Err(field_error(
                    "spec.baseModel.name",
                    format!(
                        "{:?}, but FineTuneJob {} trained {:?}: name the base model it trained",
                        job.spec.base_model.name, parent.name, parent_job.spec.base_model.name
                    ),
                ));
            }
            let folder = checkpoint_folder(&run, &parent.name, &parent.checkpoint)?;
            resolved.spec.base_model = parent_job.spec.base_model.clone();
            let checkpoint = folder.rsplit('/').next().unwrap_or(&folder).to_owned();
            (
                parent.name.clone(),
                checkpoint,
                run.child(&folder).uri().to_owned(),
            )
        }
    };
    resolved.spec.base_model.fine_tune_job = None;
    let checkpoint_storage = Storage::open(&uri).map_err(storage_error)?;
    let is_adapter = checkpoint_storage
        .get(ADAPTER_CONFIG)
        .map_err(storage_error)?
        .is_some();
    let adapter = if is_adapter {
        let local = work_dir.join("starting-adapter");
        let _ = std::fs::remove_dir_all(&local);
        checkpoint_storage
            .download_dir("", &local)
            .map_err(storage_error)?;
        Some(local)
    } else {
        // A fully trained checkpoint is a whole model: the base itself.
        resolved.spec.base_model.source = Some(uri.clone());
        None
    };
    let started_from = StartedFrom {
        fine_tune_job: name,
        checkpoint,
        uri,
        training: if is_adapter {
            TrainingType::Lora
        } else {
            TrainingType::Full
        },
        base_model: None,
    };
    Ok((
        resolved,
        Some(StartingPoint {
            started_from,
            adapter,
        }),
    ))
}

/// The newest run of the job `name` in `namespace_runs`, and the job as that run
/// recorded it (its `job.yaml`, base model made concrete).
fn newest_run_of(
    namespace_runs: &Storage,
    name: &str,
) -> Result<(Storage, FineTuneJob), StartingPointError> {
    let parent_runs = namespace_runs.child(name);
    let mut ids = parent_runs.list_children("").map_err(storage_error)?;
    ids.sort();
    let Some(id) = ids.pop() else {
        return Err(field_error(
            &format!("{FIELD}.name"),
            format!(
                "no run of FineTuneJob {name} under {}: train it first (trainer train with its manifest and the same --output)",
                parent_runs.uri()
            ),
        ));
    };
    let run = parent_runs.child(&id);
    let text = run.get(JOB_FILE).map_err(storage_error)?.ok_or_else(|| {
        field_error(
            &format!("{FIELD}.name"),
            format!(
                "{} has no {JOB_FILE} (a run of an older trainer): train {name} again",
                run.uri()
            ),
        )
    })?;
    let job = parse_finetunejob(&String::from_utf8_lossy(&text)).map_err(|e| {
        field_error(
            &format!("{FIELD}.name"),
            format!("{}/{JOB_FILE}: {e}", run.uri()),
        )
    })?;
    Ok((run, job))
}

/// The folder of `checkpoint` (`final`, `best` or `ckpt-N`) in `run`, complete.
fn checkpoint_folder(
    run: &Storage,
    job: &str,
    checkpoint: &str,
) -> Result<String, StartingPointError> {
    let field = format!("{FIELD}.checkpoint");
    let folder = match checkpoint {
        "final" => FINAL.to_owned(),
        "best" => {
            let best = best_checkpoint(run).map_err(storage_error)?.ok_or_else(|| {
                field_error(
                    &field,
                    format!(
                        "best: FineTuneJob {job}'s run {} has no finished state naming its best checkpoint: name a checkpoint",
                        run.uri()
                    ),
                )
            })?;
            format!("{CHECKPOINTS}/{best}")
        }
        name => format!("{CHECKPOINTS}/{name}"),
    };
    if !run.is_complete(&folder).map_err(storage_error)? {
        return Err(field_error(
            &field,
            format!(
                "{checkpoint}: FineTuneJob {job}'s run {} has no complete {folder}",
                run.uri()
            ),
        ));
    }
    Ok(folder)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_names_a_job_a_checkpoint_and_a_folder() {
        assert_eq!(
            starts_from_arg("sft/ckpt-80=s3://runs/team-a/sft/uid/checkpoints/ckpt-80/"),
            Ok(StartsFromArg {
                job: "sft".into(),
                checkpoint: "ckpt-80".into(),
                uri: "s3://runs/team-a/sft/uid/checkpoints/ckpt-80".into(),
            })
        );
        for bad in ["sft=s3://x", "sft/final", "/final=s3://x", "sft/final=x"] {
            assert!(starts_from_arg(bad).is_err(), "{bad}");
        }
    }
}
