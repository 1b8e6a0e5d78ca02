//! The models of a ModelEvaluation, here: a base model made local as `trainer train`
//! makes it, and a FineTuneJob's checkpoint found in the newest run of that job
//! under the runs folder, with the base model its run recorded (`job.yaml`).

use std::path::{Path, PathBuf};

use anneal_crds::finetunejob::Task;
use anneal_crds::manifest::parse_finetunejob;
use anneal_crds::modelevaluation::{EvaluatedCheckpoints, EvaluatedModel};
use anneal_crds::storage::{Storage, StorageError};
use anneal_sources::{FolderSource, SourceError, make_local};
use anneal_train::checkpoint::{CHECKPOINTS, FINAL, complete_checkpoints};
use anneal_train::state::{STATE_FILE, TrainerState};

use crate::train_command::JOB_FILE;

/// A model to answer with: a model folder and, for a LoRA checkpoint, its adapter.
#[derive(Clone, Debug, PartialEq)]
pub struct LocalModel {
    /// Its name in the report (`{name}/{checkpoint}` for `checkpoint: all`).
    pub name: String,
    pub model_dir: PathBuf,
    pub adapter: Option<PathBuf>,
}

/// Why a model cannot be evaluated here; each message names its field.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("{field}: {message}")]
    Field { field: String, message: String },
    #[error("{field}: {source}")]
    Source {
        field: String,
        #[source]
        source: SourceError,
    },
    #[error("{field}: {source}")]
    Storage {
        field: String,
        #[source]
        source: Box<StorageError>,
    },
}

/// Where the evaluation finds things: the manifest's folder (`file://` sources are
/// relative to it), the runs of `trainer train`, its namespace and scratch space.
pub struct Places<'a> {
    pub manifest_dir: &'a Path,
    pub runs: &'a Storage,
    pub namespace: &'a str,
    pub work_dir: &'a Path,
}

/// The model at `spec.models[index]` as one or more local models.
pub fn resolve_model(
    index: usize,
    model: &EvaluatedModel,
    places: &Places<'_>,
) -> Result<Vec<LocalModel>, ResolveError> {
    let field = format!("spec.models[{index}]");
    if let Some(base) = &model.base_model {
        let what = "spec.models[].baseModel.source";
        let uri = base.source_uri().unwrap_or_default();
        let source =
            FolderSource::from_manifest(&uri, places.manifest_dir, what).map_err(|source| {
                ResolveError::Source {
                    field: format!("{field}.baseModel.source"),
                    source,
                }
            })?;
        let dir = make_local(
            &source,
            &places.work_dir.join("models").join(&model.name),
            what,
        )
        .map_err(|source| ResolveError::Source {
            field: format!("{field}.baseModel.source"),
            source,
        })?;
        return Ok(vec![LocalModel {
            name: model.name.clone(),
            model_dir: dir,
            adapter: None,
        }]);
    }
    if let Some(job) = &model.fine_tune_job {
        return job_checkpoints(&format!("{field}.fineTuneJob"), &model.name, job, places);
    }
    let (kind, hint) = if model.model_deployment.is_some() {
        (
            "modelDeployment",
            "evaluate its checkpoint with fineTuneJob, or its weights with baseModel",
        )
    } else {
        (
            "endpoint",
            "evaluate models whose weights this machine can load",
        )
    };
    Err(ResolveError::Field {
        field: format!("{field}.{kind}"),
        message: format!("this version of trainer evaluate does not ask served models yet; {hint}"),
    })
}

/// The checkpoint(s) `job` names, from the newest run of the job.
fn job_checkpoints(
    field: &str,
    name: &str,
    job: &EvaluatedCheckpoints,
    places: &Places<'_>,
) -> Result<Vec<LocalModel>, ResolveError> {
    let storage_error = |source| ResolveError::Storage {
        field: field.to_owned(),
        source: Box::new(source),
    };
    let runs = places
        .runs
        .child(&format!("{}/{}", places.namespace, job.name));
    let mut ids = runs.list_children("").map_err(storage_error)?;
    ids.sort();
    let Some(run_id) = ids.pop() else {
        return Err(ResolveError::Field {
            field: format!("{field}.name"),
            message: format!(
                "no run of FineTuneJob {} under {}: train it first (trainer train JOB.yaml), or give --runs",
                job.name,
                runs.uri()
            ),
        });
    };
    let run = runs.child(&run_id);
    let model_dir = recorded_base_model(field, &run, places)?;
    let folders: Vec<(String, String)> = match job.checkpoint.as_str() {
        "final" => vec![(name.to_owned(), FINAL.to_owned())],
        "all" => complete_checkpoints(&run)
            .map_err(|e| ResolveError::Field {
                field: field.to_owned(),
                message: e.to_string(),
            })?
            .into_iter()
            .map(|checkpoint| {
                (
                    format!("{name}/{checkpoint}"),
                    format!("{CHECKPOINTS}/{checkpoint}"),
                )
            })
            .collect(),
        "best" => {
            let best = best_checkpoint(&run).map_err(storage_error)?.ok_or_else(|| {
                ResolveError::Field {
                    field: format!("{field}.checkpoint"),
                    message: format!(
                        "best: no checkpoint of run {run_id} has a validation loss; name a checkpoint or use final"
                    ),
                }
            })?;
            vec![(name.to_owned(), format!("{CHECKPOINTS}/{best}"))]
        }
        checkpoint => vec![(name.to_owned(), format!("{CHECKPOINTS}/{checkpoint}"))],
    };
    let mut models = Vec::new();
    for (model_name, folder) in folders {
        if !run.is_complete(&folder).map_err(storage_error)? {
            return Err(ResolveError::Field {
                field: format!("{field}.checkpoint"),
                message: format!("run {run_id} has no complete {folder}"),
            });
        }
        let local = places
            .work_dir
            .join("checkpoints")
            .join(model_name.replace('/', "_"));
        let _ = std::fs::remove_dir_all(&local);
        run.download_dir(&folder, &local).map_err(storage_error)?;
        models.push(LocalModel {
            name: model_name,
            model_dir: model_dir.clone(),
            adapter: Some(local),
        });
    }
    Ok(models)
}

/// The base model the run trained, from its `job.yaml`, made local.
fn recorded_base_model(
    field: &str,
    run: &Storage,
    places: &Places<'_>,
) -> Result<PathBuf, ResolveError> {
    let missing = |why: String| ResolveError::Field {
        field: field.to_owned(),
        message: why,
    };
    let text = run
        .get(JOB_FILE)
        .map_err(|source| ResolveError::Storage {
            field: field.to_owned(),
            source: Box::new(source),
        })?
        .ok_or_else(|| {
            missing(format!(
                "{} has no {JOB_FILE} (a run of an older trainer): train the job again",
                run.uri()
            ))
        })?;
    let job = parse_finetunejob(&String::from_utf8_lossy(&text))
        .map_err(|e| missing(format!("{}/{JOB_FILE}: {e}", run.uri())))?;
    if job.spec.task == Task::TextToImage {
        return Err(missing(
            "an image job: trainer evaluate compares chat models".to_owned(),
        ));
    }
    let what = "the run's job.yaml spec.baseModel.source";
    let uri = job.spec.base_model.source_uri().unwrap_or_default();
    let source = FolderSource::from_manifest(&uri, Path::new("/"), what).map_err(|source| {
        ResolveError::Source {
            field: field.to_owned(),
            source,
        }
    })?;
    make_local(
        &source,
        &places
            .work_dir
            .join("base-models")
            .join(job.spec.base_model.name.replace('/', "_")),
        what,
    )
    .map_err(|source| ResolveError::Source {
        field: field.to_owned(),
        source,
    })
}

/// The run's best checkpoint (lowest validation loss), from the state its last
/// complete checkpoint or `final/` recorded.
fn best_checkpoint(run: &Storage) -> Result<Option<String>, StorageError> {
    let text = match run.get(&format!("{FINAL}/{STATE_FILE}"))? {
        Some(text) => text,
        None => return Ok(None),
    };
    Ok(TrainerState::from_json(&String::from_utf8_lossy(&text))
        .ok()
        .and_then(|state| state.best_checkpoint))
}
