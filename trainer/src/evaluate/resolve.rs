//! The models of a ModelEvaluation, here: a base model made local as `trainer train`
//! makes it, a FineTuneJob's checkpoint found in the newest run of that job under the
//! runs folder (with the base model its run recorded in `job.yaml`), and served
//! models: a ModelDeployment's endpoint or any OpenAI-compatible one, with its key
//! from the credentials Secret as the pod mounts it.

use std::path::{Path, PathBuf};

use anneal_crds::common::BaseModelSpec;
use anneal_crds::finetunejob::Task;
use anneal_crds::manifest::parse_finetunejob;
use anneal_crds::modelevaluation::{
    DeploymentModel, EndpointModel, EvaluatedCheckpoints, EvaluatedModel, JudgeModel,
};
use anneal_crds::storage::{Storage, StorageError};
use anneal_sources::{FolderSource, SourceError, make_local};
use anneal_train::checkpoint::{CHECKPOINTS, FINAL, complete_checkpoints};
use anneal_train::state::{STATE_FILE, TrainerState};

use super::endpoint::EndpointTarget;
use crate::train_command::JOB_FILE;

/// The port a ModelDeployment's Service serves the OpenAI API on.
const DEPLOYMENT_PORT: u16 = 8000;
/// The key of a credentials Secret that holds the API key.
pub const API_KEY: &str = "apiKey";

/// A model to ask: its weights here, or a server.
#[derive(Clone, Debug, PartialEq)]
pub enum Resolved {
    Local(LocalModel),
    Served(ServedModel),
}

impl Resolved {
    /// Its name in the report.
    pub fn name(&self) -> &str {
        match self {
            Resolved::Local(local) => &local.name,
            Resolved::Served(served) => &served.name,
        }
    }

    /// Where it is: a source URI, a run's checkpoint folder, or a server and model.
    pub fn origin(&self) -> String {
        match self {
            Resolved::Local(local) => local.origin.clone(),
            Resolved::Served(served) => format!(
                "{} model {}",
                served.target.url,
                served
                    .target
                    .model
                    .as_deref()
                    .unwrap_or("(the first it lists)")
            ),
        }
    }
}

/// A model behind an OpenAI-compatible endpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct ServedModel {
    pub name: String,
    pub target: EndpointTarget,
}

/// A model to answer with: a model folder and, for a LoRA checkpoint, its adapter.
#[derive(Clone, Debug, PartialEq)]
pub struct LocalModel {
    /// Its name in the report (`{name}/{checkpoint}` for `checkpoint: all`).
    pub name: String,
    pub model_dir: PathBuf,
    pub adapter: Option<PathBuf>,
    /// Where its weights came from (a source URI, a run's checkpoint folder): what
    /// its kept answers are tied to.
    pub origin: String,
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
/// relative to it), the runs of `trainer train`, its namespace and scratch space, the
/// mounted credentials Secrets (`{secrets_dir}/{secret}/apiKey`) and the URLs given
/// for ModelDeployments (else their in-cluster Service).
pub struct Places<'a> {
    pub manifest_dir: &'a Path,
    pub runs: &'a Storage,
    pub namespace: &'a str,
    pub work_dir: &'a Path,
    pub secrets_dir: &'a Path,
    pub deployment_urls: &'a [(String, String)],
    /// The run folder of a FineTuneJob, by name, where it is known (the operator's
    /// `--job-run`); other jobs' newest run under `runs` is taken.
    pub job_runs: &'a [(String, String)],
}

/// The model at `spec.models[index]` as one or more models (`checkpoint: all` gives
/// one per checkpoint).
pub fn resolve_model(
    index: usize,
    model: &EvaluatedModel,
    places: &Places<'_>,
) -> Result<Vec<Resolved>, ResolveError> {
    let field = format!("spec.models[{index}]");
    if let Some(base) = &model.base_model {
        let local = base_model(&format!("{field}.baseModel"), &model.name, base, places)?;
        return Ok(vec![Resolved::Local(local)]);
    }
    if let Some(job) = &model.fine_tune_job {
        let checkpoints =
            job_checkpoints(&format!("{field}.fineTuneJob"), &model.name, job, places)?;
        return Ok(checkpoints.into_iter().map(Resolved::Local).collect());
    }
    if let Some(deployment) = &model.model_deployment {
        return Ok(vec![Resolved::Served(deployment_model(
            &model.name,
            deployment,
            places,
        ))]);
    }
    let endpoint = model
        .endpoint
        .as_ref()
        .expect("one source, by the manifest's rules");
    let served = endpoint_model(&format!("{field}.endpoint"), &model.name, endpoint, places)?;
    Ok(vec![Resolved::Served(served)])
}

/// The judge of `spec.metrics[index].judge`: one of the evaluated models (already
/// resolved in `models`) or a model of its own.
pub fn resolve_judge(
    index: usize,
    judge: &JudgeModel,
    models: &[Resolved],
    places: &Places<'_>,
) -> Result<Resolved, ResolveError> {
    let field = format!("spec.metrics[{index}].judge.model");
    let name = format!("judge-{index}");
    if let Some(evaluated) = &judge.evaluated_model {
        return models
            .iter()
            .find(|m| m.name() == evaluated)
            .cloned()
            .ok_or_else(|| ResolveError::Field {
                field: format!("{field}.evaluatedModel"),
                message: format!(
                    "no evaluated model is named {evaluated} (a fineTuneJob with checkpoint: all is one model per checkpoint, named NAME/ckpt-N)"
                ),
            });
    }
    if let Some(base) = &judge.base_model {
        return Ok(Resolved::Local(base_model(
            &format!("{field}.baseModel"),
            &name,
            base,
            places,
        )?));
    }
    if let Some(deployment) = &judge.model_deployment {
        return Ok(Resolved::Served(deployment_model(
            &name, deployment, places,
        )));
    }
    let endpoint = judge
        .endpoint
        .as_ref()
        .expect("one source, by the manifest's rules");
    Ok(Resolved::Served(endpoint_model(
        &format!("{field}.endpoint"),
        &name,
        endpoint,
        places,
    )?))
}

/// A base model's folder, made local.
fn base_model(
    field: &str,
    name: &str,
    base: &BaseModelSpec,
    places: &Places<'_>,
) -> Result<LocalModel, ResolveError> {
    let what = "spec.models[].baseModel.source";
    let source_error = |source| ResolveError::Source {
        field: format!("{field}.source"),
        source,
    };
    let uri = base.source_uri().unwrap_or_default();
    let source =
        FolderSource::from_manifest(&uri, places.manifest_dir, what).map_err(source_error)?;
    let dir = make_local(&source, &places.work_dir.join("models").join(name), what)
        .map_err(source_error)?;
    Ok(LocalModel {
        name: name.to_owned(),
        model_dir: dir,
        adapter: None,
        origin: uri,
    })
}

/// A ModelDeployment in the evaluation's namespace: the URL given for it, else its
/// Service's (`http://NAME.NAMESPACE.svc:8000/v1`, as its status reports).
fn deployment_model(name: &str, deployment: &DeploymentModel, places: &Places<'_>) -> ServedModel {
    let url = places
        .deployment_urls
        .iter()
        .find(|(given, _)| *given == deployment.name)
        .map(|(_, url)| url.clone())
        .unwrap_or_else(|| {
            format!(
                "http://{}.{}.svc:{DEPLOYMENT_PORT}/v1",
                deployment.name, places.namespace
            )
        });
    ServedModel {
        name: name.to_owned(),
        target: EndpointTarget {
            url,
            model: deployment.model.clone(),
            api_key: None,
        },
    }
}

/// An OpenAI-compatible endpoint, with its key read from the mounted Secret.
fn endpoint_model(
    field: &str,
    name: &str,
    endpoint: &EndpointModel,
    places: &Places<'_>,
) -> Result<ServedModel, ResolveError> {
    let api_key = match &endpoint.credentials_secret {
        None => None,
        Some(secret) => {
            let path = places.secrets_dir.join(secret).join(API_KEY);
            let key = std::fs::read_to_string(&path).map_err(|e| ResolveError::Field {
                field: format!("{field}.credentialsSecret"),
                message: format!(
                    "reading the key of Secret {secret} at {}: {e} (in a cluster the pod mounts the Secret there; locally give --secrets-dir DIR with {secret}/{API_KEY} in it)",
                    path.display()
                ),
            })?;
            Some(key.trim().to_owned())
        }
    };
    Ok(ServedModel {
        name: name.to_owned(),
        target: EndpointTarget {
            url: endpoint.url.clone(),
            model: Some(endpoint.model.clone()),
            api_key,
        },
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
    let (run, run_id) = match places.job_runs.iter().find(|(name, _)| *name == job.name) {
        Some((_, uri)) => {
            let run = Storage::open(uri).map_err(storage_error)?;
            let id = uri.trim_end_matches('/').rsplit('/').next().unwrap_or(uri);
            (run, id.to_owned())
        }
        None => newest_run(field, job, places)?,
    };
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
                        "best: no checkpoint of run {run_id} has a validation loss or a checkpoints.evaluation score; name a checkpoint or use final"
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
            origin: run.child(&folder).uri().to_owned(),
        });
    }
    Ok(models)
}

/// The newest run of `job` under the runs folder, and its id.
fn newest_run(
    field: &str,
    job: &EvaluatedCheckpoints,
    places: &Places<'_>,
) -> Result<(Storage, String), ResolveError> {
    let runs = places
        .runs
        .child(&format!("{}/{}", places.namespace, job.name));
    let mut ids = runs
        .list_children("")
        .map_err(|source| ResolveError::Storage {
            field: field.to_owned(),
            source: Box::new(source),
        })?;
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
    Ok((runs.child(&run_id), run_id))
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

/// The run's best checkpoint (`anneal_crds::best_checkpoint`), from the state its last
/// complete checkpoint or `final/` recorded.
pub(crate) fn best_checkpoint(run: &Storage) -> Result<Option<String>, StorageError> {
    let text = match run.get(&format!("{FINAL}/{STATE_FILE}"))? {
        Some(text) => text,
        None => return Ok(None),
    };
    Ok(TrainerState::from_json(&String::from_utf8_lossy(&text))
        .ok()
        .and_then(|state| state.best_checkpoint))
}
