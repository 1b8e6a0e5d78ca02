//! Which model a ModelDeployment serves: a checkpoint of its FineTuneJob (`final`,
//! `best` or one by name) or a base model with adapters, resolved to the URIs the
//! pods load, the names clients ask for and the model id. A pure function of the
//! deployment and the job it names: a job that is not done yet is a reason to wait,
//! never an error, and a checkpoint that does not exist is the user's to fix.

use anneal_crds::best_checkpoint::best_checkpoint_index;
use anneal_crds::finetunejob::{
    CheckpointStatus, FineTuneJobStatus, JobPhase, Task, TrainingType, fine_tuned_model_id,
};
use anneal_crds::{FineTuneJob, ModelDeployment};

use anneal_crds::trainer_failure::TrainerFailureReason;

use crate::config::OperatorConfig;
use crate::finetunejob::trainer_job::{credentials_secret, run_uri};
use crate::report::FoldRules;
use crate::shared::conditions;

/// A URI the pods read, and where it came from (error messages name it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub uri: String,
    pub field: String,
}

/// A LoRA adapter served under its own name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServedAdapter {
    pub name: String,
    pub source: Source,
}

/// What the serving pods load and under which names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServedModel {
    /// `status.modelId`: the fine-tuned checkpoint's id, or the base model's name.
    pub model_id: String,
    /// The name the base model (or a fully trained checkpoint) answers to.
    pub base_name: String,
    /// The base model's name as users know it (`Qwen/Qwen2.5-7B-Instruct`), whose
    /// built-in shape the GPU memory check reads.
    pub base_model: String,
    pub base: Source,
    pub adapters: Vec<ServedAdapter>,
    /// Secret with the storage credentials of the sources, if any.
    pub credentials_secret: Option<String>,
    /// An image (FLUX) pipeline: its server takes its adapters at start, not at runtime.
    pub image: bool,
    /// One line for `ModelResolved`'s message.
    pub summary: String,
}

/// The outcome for one deployment.
#[derive(Clone, Debug, PartialEq)]
pub enum Resolution {
    Resolved(ServedModel),
    /// Not servable yet (the job is still training): the deployment waits, `Pending`.
    Waiting {
        reason: &'static str,
        message: String,
    },
    /// Not servable until the spec (or the job) changes: `Failed`.
    Failed {
        reason: &'static str,
        message: String,
    },
}

/// The FineTuneJob a deployment serves from, if it names one.
pub fn fine_tune_job_name(deployment: &ModelDeployment) -> Option<&str> {
    deployment
        .spec
        .model
        .fine_tune_job
        .as_ref()
        .map(|job| job.name.as_str())
}

/// Resolves the deployment's model; `job` is the FineTuneJob it names, as read now.
pub fn resolve_model(
    deployment: &ModelDeployment,
    job: Option<&FineTuneJob>,
    config: &OperatorConfig,
) -> Resolution {
    let model = &deployment.spec.model;
    match (&model.fine_tune_job, &model.base_model) {
        (Some(reference), None) => match job {
            Some(job) => from_job(deployment, job, &reference.checkpoint, config),
            None => Resolution::Waiting {
                reason: "FineTuneJobNotFound",
                message: format!(
                    "waiting for FineTuneJob {} (spec.model.fineTuneJob.name): it does not exist in this namespace",
                    reference.name
                ),
            },
        },
        (None, Some(base)) => {
            let Some(base_uri) = base.source_uri() else {
                return Resolution::Failed {
                    reason: "InvalidSpec",
                    message: format!(
                        "spec.model.baseModel.source: not set, and spec.model.baseModel.name {:?} is not a hub repository (ORG/NAME)",
                        base.name
                    ),
                };
            };
            let served_name = deployment
                .spec
                .served_model_name
                .clone()
                .unwrap_or_else(|| base.name.clone());
            let adapters: Vec<ServedAdapter> = model
                .adapters
                .iter()
                .enumerate()
                .map(|(index, adapter)| ServedAdapter {
                    name: adapter.name.clone(),
                    source: Source {
                        uri: adapter.uri.clone(),
                        field: format!("spec.model.adapters[{index}].uri"),
                    },
                })
                .collect();
            let mut names: Vec<&str> = adapters.iter().map(|a| a.name.as_str()).collect();
            names.push(&served_name);
            names.sort_unstable();
            if let Some(twice) = names.windows(2).find(|pair| pair[0] == pair[1]) {
                return Resolution::Failed {
                    reason: "InvalidSpec",
                    message: format!(
                        "spec.model.adapters: the name {} is used twice (adapter names and the served model name must differ; clients pick a model by name)",
                        twice[0]
                    ),
                };
            }
            let summary = match adapters.len() {
                0 => format!("base model {}", base.name),
                count => format!("base model {} with {count} adapter(s)", base.name),
            };
            Resolution::Resolved(ServedModel {
                model_id: base.name.clone(),
                base_name: served_name,
                base_model: base.name.clone(),
                base: Source {
                    uri: base_uri,
                    field: "spec.model.baseModel.source".to_owned(),
                },
                adapters,
                credentials_secret: config.default_credentials_secret.clone(),
                image: (deployment.spec.task)
                    .map_or_else(|| is_flux_name(&base.name), Task::is_image),
                summary,
            })
        }
        // The CRD's CEL rule refuses both shapes; a manifest written without the
        // apiserver's checks still gets a clear answer.
        _ => Resolution::Failed {
            reason: "InvalidSpec",
            message: "spec.model: set exactly one of fineTuneJob and baseModel".to_owned(),
        },
    }
}

/// A checkpoint of a job that succeeded; anything else waits or fails.
fn from_job(
    deployment: &ModelDeployment,
    job: &FineTuneJob,
    checkpoint: &str,
    config: &OperatorConfig,
) -> Resolution {
    let job_name = job.metadata.name.clone().unwrap_or_default();
    if let Some(task) = deployment.spec.task
        && task != job.spec.task
    {
        return Resolution::Failed {
            reason: "InvalidSpec",
            message: format!(
                "spec.task: {}, but FineTuneJob {job_name} (spec.model.fineTuneJob.name) trained {} (its spec.task); leave spec.task out to serve what the job trained",
                task.as_str(),
                job.spec.task.as_str()
            ),
        };
    }
    let status = job.status.clone().unwrap_or_default();
    if let Some(not_yet) = unless_succeeded(&job_name, &status) {
        return not_yet;
    }
    let chosen = match chosen_checkpoint(job, &job_name, &status, checkpoint) {
        Ok(chosen) => chosen,
        Err(resolution) => return *resolution,
    };
    served_checkpoint(deployment, job, &job_name, chosen, config)
}

/// Why a job that has not succeeded has nothing to serve yet (or ever). A job that
/// ran past `spec.activeDeadlineSeconds` kept its checkpoints: they serve as a
/// succeeded job's do (`final` is then its last checkpoint).
fn unless_succeeded(job_name: &str, status: &FineTuneJobStatus) -> Option<Resolution> {
    let phase = status.phase.unwrap_or(JobPhase::Pending);
    let past_deadline = status.conditions.iter().any(|c| {
        c.type_ == conditions::FAILED
            && c.status == "True"
            && c.reason == TrainerFailureReason::DeadlineExceeded.as_str()
    });
    match phase {
        JobPhase::Succeeded => None,
        JobPhase::Failed if past_deadline && !status.checkpoints.is_empty() => None,
        JobPhase::Failed | JobPhase::Cancelled => Some(Resolution::Failed {
            reason: "FineTuneJobFailed",
            message: format!(
                "FineTuneJob {job_name} is {phase:?}, so it has no model to serve: {}",
                status.message.as_deref().unwrap_or("no message")
            ),
        }),
        _ => Some(Resolution::Waiting {
            reason: "FineTuneJobNotReady",
            message: format!(
                "waiting for FineTuneJob {job_name} to succeed; it is {phase:?}{}",
                status
                    .message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            ),
        }),
    }
}

/// The checkpoint a deployment names, found in the job's status.
struct ChosenCheckpoint {
    model_id: String,
    uri: String,
    /// The status field its folder comes from, for messages.
    field: String,
    label: String,
}

/// `final`, `best` or a named checkpoint of the job; the resolution to report when
/// there is no such checkpoint.
fn chosen_checkpoint(
    job: &FineTuneJob,
    job_name: &str,
    status: &FineTuneJobStatus,
    checkpoint: &str,
) -> Result<ChosenCheckpoint, Box<Resolution>> {
    let base_model = &job.trained_base_model();
    let id_of = |name: &str| fine_tuned_model_id(&base_model.name, job_name, name);
    let (model_id, uri, field, label) = match checkpoint {
        "final" => match (&status.result, status.checkpoints.last()) {
            (Some(result), _) => (
                result.model_id.clone(),
                result.uri.clone(),
                "status.result.uri".to_owned(),
                "final".to_owned(),
            ),
            // The result is recorded from the trainer's last event; the final adapter
            // is the last checkpoint's weights, so its id and folder stand in.
            (None, Some(last)) => (
                id_of(&last.name),
                last.uri.clone(),
                format!("status.checkpoints[{}].uri", last.name),
                last.name.clone(),
            ),
            (None, None) => {
                return Err(Box::new(Resolution::Waiting {
                    reason: "FineTuneJobResultMissing",
                    message: format!(
                        "FineTuneJob {job_name} succeeded but its status has no result or checkpoint yet"
                    ),
                }));
            }
        },
        "best" => match best_checkpoint(&status.checkpoints) {
            Some(best) => (
                id_of(&best.name),
                best.uri.clone(),
                format!("status.checkpoints[{}].uri", best.name),
                best.name.clone(),
            ),
            None => {
                return Err(Box::new(Resolution::Failed {
                    reason: "NoValidationLoss",
                    message: format!(
                        "checkpoint best: no checkpoint of FineTuneJob {job_name} has a validation loss or a checkpoints.evaluation score (it held out no validation data); name a checkpoint or use final"
                    ),
                }));
            }
        },
        name => match status.checkpoints.iter().find(|c| c.name == name) {
            Some(found) => (
                id_of(&found.name),
                found.uri.clone(),
                format!("status.checkpoints[{name}].uri"),
                found.name.clone(),
            ),
            None => {
                let known: Vec<&str> = status.checkpoints.iter().map(|c| c.name.as_str()).collect();
                return Err(Box::new(Resolution::Failed {
                    reason: "CheckpointNotFound",
                    message: format!(
                        "spec.model.fineTuneJob.checkpoint: FineTuneJob {job_name} has no checkpoint {name}; it has {}, or use final or best",
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ),
                }));
            }
        },
    };
    Ok(ChosenCheckpoint {
        model_id,
        uri,
        field,
        label,
    })
}

/// The chosen checkpoint as the server loads it: an adapter on the job's base model
/// (LoRA) or a whole model (full training), if its folder is the job's own.
fn served_checkpoint(
    deployment: &ModelDeployment,
    job: &FineTuneJob,
    job_name: &str,
    chosen: ChosenCheckpoint,
    config: &OperatorConfig,
) -> Resolution {
    let ChosenCheckpoint {
        model_id,
        uri,
        field,
        label,
    } = chosen;
    let base_model = &job.trained_base_model();
    // The status is written from the trainer's events, which are checked the same way;
    // this guards against a status edited by hand or by an older operator.
    let inside_run = run_uri(job, config)
        .is_ok_and(|run| FoldRules::for_run(&run).check_uri("uri", &uri).is_ok());
    if !inside_run {
        return Resolution::Failed {
            reason: "CheckpointOutsideRun",
            message: format!(
                "FineTuneJob {job_name} {field} is {uri}, outside the job's own run folder; it is not served"
            ),
        };
    }
    let served_name = deployment
        .spec
        .served_model_name
        .clone()
        .unwrap_or_else(|| model_id.clone());
    let checkpoint_source = Source {
        uri,
        field: format!("FineTuneJob {job_name} {field}"),
    };
    let summary = format!("FineTuneJob {job_name} checkpoint {label} as {model_id}");
    let credentials_secret = credentials_secret(job, config);
    match job.spec.training {
        // The server answers to the base model's name too; one name, one model.
        TrainingType::Lora if served_name == base_model.name => Resolution::Failed {
            reason: "InvalidSpec",
            message: format!(
                "spec.servedModelName: {served_name} is the name of the base model, which is served too; give the fine-tuned model a name of its own"
            ),
        },
        // A LoRA checkpoint is an adapter on the job's base model; clients ask for it
        // by the served name.
        TrainingType::Lora => Resolution::Resolved(ServedModel {
            model_id,
            base_name: base_model.name.clone(),
            base_model: base_model.name.clone(),
            base: Source {
                // A validated job's model always has one.
                uri: base_model.source_uri().unwrap_or_default(),
                field: format!("FineTuneJob {job_name} spec.baseModel.source"),
            },
            adapters: vec![ServedAdapter {
                name: served_name,
                source: checkpoint_source,
            }],
            credentials_secret,
            image: job.spec.task.is_image(),
            summary,
        }),
        // A fully trained checkpoint is a whole model folder.
        TrainingType::Full => Resolution::Resolved(ServedModel {
            model_id,
            base_name: served_name,
            base_model: base_model.name.clone(),
            base: checkpoint_source,
            adapters: Vec::new(),
            credentials_secret,
            image: job.spec.task.is_image(),
            summary,
        }),
    }
}

/// Whether a base model's name is one of the FLUX image models (black-forest-labs'
/// FLUX.1-dev, -schnell and most fine-tunes keep "flux" in their names): what a
/// deployment without `spec.task` serves.
pub fn is_flux_name(name: &str) -> bool {
    name.to_ascii_lowercase()
        .rsplit('/')
        .next()
        .is_some_and(|model| model.contains("flux"))
}

/// The best checkpoint: by the first metric of `checkpoints.evaluation` where the job
/// has one, else by the lowest validation loss (`anneal_crds::best_checkpoint`); the
/// same choice the report endpoint keeps in the status when it trims the list.
pub fn best_checkpoint(checkpoints: &[CheckpointStatus]) -> Option<&CheckpointStatus> {
    best_checkpoint_index(checkpoints).map(|index| &checkpoints[index])
}

#[cfg(test)]
mod tests;
