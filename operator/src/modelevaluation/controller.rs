//! The ModelEvaluation controller: one `reconcile` per evaluation, as a pipeline.
//!
//! 1. Read the FineTuneJobs it compares. The evaluation waits (Pending) until they
//!    have succeeded, and fails if one failed.
//! 2. Plan its Secret and Job (pure).
//! 3. Create them.
//! 4. Read the Job's state back into status. On success, that includes the scores
//!    the pod wrote to `status.json` in the output storage.
//!
//! An evaluation that ended is left alone until its spec changes. A changed spec
//! replaces the Job, and the new pod starts a new run. The children go with the
//! evaluation through owner references.

use std::sync::Arc;
use std::time::Duration;

use anneal_crds::modelevaluation::{
    EvaluationPhase, EvaluationProgress, ModelEvaluation, ModelEvaluationStatus,
};
use anneal_crds::{FineTuneJob, jiff};
use futures_util::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, ListParams, PostParams, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use tracing::{debug, info, instrument, warn};

use crate::error::{Error, Result};
use crate::finetunejob::dataset_check::secret_storage_settings;
use crate::finetunejob::storage_access::{StorageAccess, operator_storage_access};
use crate::finetunejob::trainer_job::run_uri;
use crate::finetunejob::trainer_observation::last_failure_message_of;
use crate::modelevaluation::evaluation_job::{
    EVALUATE_CONTAINER, EVALUATION_LABEL, EvaluationPlanError, JobRun, evaluation_job_name,
    evaluation_run_uri, plan_evaluation_job, plan_evaluation_secret,
};
use crate::modelevaluation::evaluation_observation::{
    Stage, WrittenResults, fine_tune_job_stage, job_outcome, plan_evaluation_status,
};
use crate::shared::status_apply::{StatusWrite, apply_child, apply_observed_status};

/// The progress file `trainer evaluate` keeps in its run folder.
const PROGRESS_FILE: &str = "progress.json";

/// How long reading a file of the run folder may take.
const RUN_FILE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a running evaluation's progress is read.
const PROGRESS_EVERY: Duration = Duration::from_secs(15);

/// The annotation on the Job with the evaluation generation it runs.
const GENERATION_ANNOTATION: &str = "anneal.dev/generation";

pub use crate::shared::controller_context::Context;
use crate::shared::controller_watch::{log_reconcile_failure, managed_children};

/// Runs the controller until `shutdown` resolves.
pub async fn run_modelevaluation_controller(
    context: Arc<Context>,
    namespace: Option<String>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = context.client.clone();
    let (evaluations, jobs, fine_tune_jobs): (Api<ModelEvaluation>, Api<Job>, Api<FineTuneJob>) =
        match &namespace {
            Some(ns) => (
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client, ns),
            ),
            None => (
                Api::all(client.clone()),
                Api::all(client.clone()),
                Api::all(client),
            ),
        };
    let controller = Controller::new(evaluations, watcher::Config::default().any_semantic());
    let store = controller.store();
    let children = managed_children();
    controller
        .owns(jobs, children)
        // A FineTuneJob finishing starts the evaluations waiting for it.
        .watches(
            fine_tune_jobs,
            watcher::Config::default().any_semantic(),
            move |job| evaluations_naming(&store.state(), &job),
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, context)
        .for_each(log_reconcile_failure)
        .await;
}

/// The evaluations (from the cache) that compare a checkpoint of `job`.
pub fn evaluations_naming(
    evaluations: &[Arc<ModelEvaluation>],
    job: &FineTuneJob,
) -> Vec<ObjectRef<ModelEvaluation>> {
    evaluations
        .iter()
        .filter(|e| {
            e.namespace() == job.namespace()
                && fine_tune_jobs(e)
                    .iter()
                    .any(|name| Some(*name) == job.metadata.name.as_deref())
        })
        .map(|e| ObjectRef::from_obj(e.as_ref()))
        .collect()
}

/// The FineTuneJobs an evaluation compares checkpoints of.
fn fine_tune_jobs(evaluation: &ModelEvaluation) -> Vec<&str> {
    evaluation
        .spec
        .models
        .iter()
        .filter_map(|m| Some(m.fine_tune_job.as_ref()?.name.as_str()))
        .collect()
}

pub fn error_policy(
    _evaluation: Arc<ModelEvaluation>,
    error: &Error,
    context: Arc<Context>,
) -> Action {
    context.metrics.reconcile_failed("ModelEvaluation", error)
}

#[instrument(skip_all, fields(evaluation = %evaluation.name_any(), namespace = evaluation.namespace()))]
async fn reconcile(evaluation: Arc<ModelEvaluation>, context: Arc<Context>) -> Result<Action> {
    let before = evaluation.status.clone().unwrap_or_default();
    let generation = evaluation.metadata.generation;
    let ended = matches!(
        before.phase,
        Some(EvaluationPhase::Succeeded | EvaluationPhase::Failed)
    );
    if ended && before.observed_generation == generation {
        return Ok(Action::await_change());
    }
    let namespace = evaluation.namespace().unwrap_or_default();
    let name = evaluation.name_any();
    let jobs: Api<Job> = Api::namespaced(context.client.clone(), &namespace);
    let job_name = evaluation_job_name(&name);
    let existing = jobs.get_opt(&job_name).await?;
    let ours = |job: &Job| {
        job.owner_references()
            .iter()
            .any(|o| Some(&o.uid) == evaluation.uid().as_ref())
    };
    let taken = existing.as_ref().is_some_and(|job| !ours(job));
    let current = existing.filter(ours);

    // A Job of an earlier spec goes first; its deletion wakes this one up.
    if let Some(job) = &current
        && job.annotations().get(GENERATION_ANNOTATION)
            != generation.map(|g| g.to_string()).as_ref()
    {
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..DeleteParams::default()
        };
        jobs.delete(&job_name, &params).await?;
        info!("the spec changed: replacing the evaluation Job");
        return Ok(Action::requeue(Duration::from_secs(2)));
    }

    let stage = match current {
        Some(job) => observe(&evaluation, &job, &context).await?,
        // Another object's Job (most often a deleted evaluation's of the same name,
        // which the garbage collector is removing) is never taken over.
        None if taken => Stage::Waiting {
            reason: "NameTaken",
            message: format!(
                "waiting for the Job {job_name}, which does not belong to this ModelEvaluation, to go"
            ),
        },
        None => start(&evaluation, &context).await?,
    };
    let now = Time(jiff::Timestamp::now());
    let next = plan_evaluation_status(&before, stage, generation, &now);
    write_status(&evaluation, &before, &next, &context).await?;
    Ok(match next.phase {
        Some(EvaluationPhase::Succeeded | EvaluationPhase::Failed) => Action::await_change(),
        // The pod's progress is in storage, which nothing watches.
        Some(EvaluationPhase::Running) => Action::requeue(PROGRESS_EVERY),
        // A Job in the way goes without an event this controller sees.
        Some(EvaluationPhase::Pending) => Action::requeue(Duration::from_secs(30)),
        // The Job and FineTuneJob watches bring every other change; a safety net.
        _ => Action::requeue(Duration::from_secs(300)),
    })
}

/// No Job yet: wait for the FineTuneJobs, then plan and create the Secret and Job.
async fn start(evaluation: &ModelEvaluation, context: &Context) -> Result<Stage> {
    let namespace = evaluation.namespace().unwrap_or_default();
    let fine_tune: Api<FineTuneJob> = Api::namespaced(context.client.clone(), &namespace);
    let mut runs = Vec::new();
    for name in fine_tune_jobs(evaluation) {
        let job = fine_tune.get_opt(name).await?;
        if let Some(stage) = fine_tune_job_stage(name, job.as_ref()) {
            return Ok(stage);
        }
        let job = job.expect("a job that is done exists");
        let run_uri = match run_uri(&job, &context.config) {
            Ok(uri) => uri,
            Err(problem) => {
                return Ok(Stage::Refused {
                    reason: "FineTuneJobOutput",
                    message: format!("FineTuneJob {name}: {problem}"),
                });
            }
        };
        runs.push(JobRun {
            job: name.to_owned(),
            run_uri,
        });
    }
    let planned = plan_evaluation_secret(evaluation)
        .map_err(EvaluationPlanError::from)
        .and_then(|secret| {
            Ok((
                secret,
                plan_evaluation_job(evaluation, &runs, &context.config)?,
            ))
        });
    let (secret, mut job) = match planned {
        Ok(planned) => planned,
        Err(problem) => {
            return Ok(Stage::Refused {
                reason: "InvalidSpec",
                message: problem.to_string(),
            });
        }
    };
    let generation = evaluation
        .metadata
        .generation
        .unwrap_or_default()
        .to_string();
    job.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(GENERATION_ANNOTATION.to_owned(), generation);
    let secrets: Api<Secret> = Api::namespaced(context.client.clone(), &namespace);
    let secret_name = secret.metadata.name.clone().unwrap_or_default();
    apply_child(&secrets, &secret_name, &secret).await?;
    let jobs: Api<Job> = Api::namespaced(context.client.clone(), &namespace);
    match jobs.create(&PostParams::default(), &job).await {
        Ok(_) => info!("created the evaluation Job"),
        // Made by a reconcile a moment ago: the next one observes it.
        Err(kube::Error::Api(response)) if response.code == 409 => {}
        Err(error) => return Err(error.into()),
    }
    Ok(Stage::Running { progress: None })
}

/// The Job is there: running, failed, or done, in which case its results are read
/// from storage.
async fn observe(evaluation: &ModelEvaluation, job: &Job, context: &Context) -> Result<Stage> {
    let report_uri = match evaluation_run_uri(evaluation, &context.config) {
        Ok(uri) => uri,
        Err(problem) => {
            return Ok(Stage::Failed {
                message: problem.to_string(),
            });
        }
    };
    match job_outcome(job) {
        None => Ok(Stage::Running {
            progress: read_progress(evaluation, &report_uri, context).await,
        }),
        Some(Err(job_words)) => {
            // The pod's last words say why (trainer evaluate's error line); the Job's
            // only which rule ended it.
            let namespace = evaluation.namespace().unwrap_or_default();
            let pods: Api<Pod> = Api::namespaced(context.client.clone(), &namespace);
            let selector = format!("{EVALUATION_LABEL}={}", evaluation.name_any());
            let listed = pods.list(&ListParams::default().labels(&selector)).await?;
            let message = match last_failure_message_of(&listed.items, EVALUATE_CONTAINER) {
                Some(why) => format!("{why}; {job_words}"),
                None => job_words,
            };
            Ok(Stage::Failed { message })
        }
        Some(Ok(())) => {
            let results = read_results(evaluation, &report_uri, context).await?;
            Ok(Stage::Succeeded {
                results,
                progress: read_progress(evaluation, &report_uri, context).await,
                report_uri,
            })
        }
    }
}

/// The `status.json` beside the report; none (the report alone) where it cannot be
/// read.
async fn read_results(
    evaluation: &ModelEvaluation,
    report_uri: &str,
    context: &Context,
) -> Result<WrittenResults> {
    let (client, config) = (&context.client, &context.config);
    let Some(bytes) = read_run_file(evaluation, report_uri, "status.json", client, config).await?
    else {
        warn!("the evaluation succeeded but its status.json cannot be read");
        return Ok(WrittenResults::default());
    };
    Ok(serde_json::from_slice(&bytes).unwrap_or_else(|error| {
        warn!(%error, "status.json is not the results the trainer writes");
        WrittenResults::default()
    }))
}

/// The replies counted in the run's `progress.json`, when it can be read.
async fn read_progress(
    evaluation: &ModelEvaluation,
    report_uri: &str,
    context: &Context,
) -> Option<EvaluationProgress> {
    let (client, config) = (&context.client, &context.config);
    match read_run_file(evaluation, report_uri, PROGRESS_FILE, client, config).await {
        Ok(bytes) => serde_json::from_slice(&bytes?).ok(),
        Err(error) => {
            warn!(%error, "reading the evaluation's progress");
            None
        }
    }
}

/// A file of the evaluation's run folder, read with its storage credentials where the
/// install lets the operator read that storage, within [`RUN_FILE_TIMEOUT`] (a slow
/// store must not hold the controller); `None` where it is not there or may not be
/// read.
pub(crate) async fn read_run_file(
    evaluation: &ModelEvaluation,
    report_uri: &str,
    name: &str,
    client: &kube::Client,
    config: &crate::config::OperatorConfig,
) -> Result<Option<Vec<u8>>> {
    let namespace = evaluation.namespace().unwrap_or_default();
    let secret = evaluation
        .spec
        .output
        .as_ref()
        .and_then(|o| o.credentials_secret.clone())
        .or_else(|| config.default_credentials_secret.clone());
    let settings = secret_storage_settings(client, &namespace, secret)
        .await?
        .map_err(Error::Credentials)?;
    let settings = match operator_storage_access(settings, config) {
        StorageAccess::Allowed(settings) => settings,
        StorageAccess::Refused(why) => {
            warn!(%why, file = name, "not reading the evaluation's run folder");
            return Ok(None);
        }
    };
    let storage = anneal_crds::storage::AsyncStorage::open_with(report_uri, settings)?;
    match tokio::time::timeout(RUN_FILE_TIMEOUT, storage.get(name)).await {
        Ok(read) => Ok(read?.map(|bytes| bytes.to_vec())),
        Err(_) => Err(Error::Timeout {
            what: format!("{report_uri}/{name}"),
            limit: RUN_FILE_TIMEOUT,
        }),
    }
}

/// Writes `next` when it differs from `before`, with an Event when the phase moves.
async fn write_status(
    evaluation: &ModelEvaluation,
    before: &ModelEvaluationStatus,
    next: &ModelEvaluationStatus,
    context: &Context,
) -> Result<()> {
    if next == before {
        return Ok(());
    }
    let namespace = evaluation.namespace().unwrap_or_default();
    let api: Api<ModelEvaluation> = Api::namespaced(context.client.clone(), &namespace);
    let fields = serde_json::to_value(next).expect("a status serializes");
    if apply_observed_status(&api, evaluation, fields).await? == StatusWrite::MovedOn {
        debug!("the evaluation moved on since it was read: the next reconcile decides");
        return Ok(());
    }
    if next.phase != before.phase
        && let Some(phase) = next.phase
    {
        let type_ = match phase {
            EvaluationPhase::Failed => EventType::Warning,
            _ => EventType::Normal,
        };
        let event = Event {
            type_,
            reason: format!("{phase:?}"),
            note: next.message.clone(),
            action: "Evaluate".to_owned(),
            secondary: None,
        };
        if let Err(error) = context
            .recorder
            .publish(&event, &evaluation.object_ref(&()))
            .await
        {
            warn!(%error, "publishing an Event");
        }
    }
    Ok(())
}
