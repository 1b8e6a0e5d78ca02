//! The FineTuneJob controller: one `reconcile` per job, as a pipeline. Read what it
//! needs (the job, its trainer Job and pods), validate (spec, datasets, memory plan), apply
//! the children (report Secret, trainer Job) or remove them (suspend, delete), then
//! compute status from what is there. Level-based: a restarted operator, or a
//! reconcile run twice, arrives at the same objects and the same status.

use std::sync::Arc;
use std::time::Duration;

use anneal_crds::finetunejob::{FineTuneJobStatus, JobEstimate, JobPhase};
use anneal_crds::memory_plan::{ByteSize, DeviceMemory, plan_for_job};

use crate::finetunejob::starting_job::{StartResolution, as_trained, resolve_start};
use anneal_crds::{FineTuneJob, jiff};
use futures_util::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use tracing::{info, warn};

use crate::config::OperatorConfig;
use crate::error::{Error, Result};
use crate::finetunejob::dataset_check::{DatasetCheck, check_datasets};
use crate::finetunejob::job_estimate::estimate_job;
use crate::finetunejob::kube_report::KubeReportCluster;
use crate::finetunejob::memory_verdict::ShapeFound;
use crate::finetunejob::memory_verdict::judge_memory;
use crate::finetunejob::model_shape_check::{
    ModelSourceCheck, check_model_source, find_model_shape,
};
use crate::finetunejob::publishing::{PublishNews, reconcile_publishing};
use crate::finetunejob::trainer_deadline::{TrainerDeadline, apply_deadline, trainer_deadline};
use crate::finetunejob::trainer_job::{
    JOB_LABEL, TOKEN_KEY, from_hub, plan_trainer_job, plan_trainer_secret, run_uri,
    trainer_job_name, trainer_secret_name,
};
use crate::finetunejob::trainer_observation::{
    OUT_OF_MEMORY, TrainerState, last_failure_message, observe_trainer_job, plan_phase,
    repeating_failure, trainer_memory_limit,
};
use crate::finetunejob::validation_verdict::{Verdict, VerdictReason, judge_spec};
use crate::metrics::Metrics;
use crate::report::{FoldRules, ReportState, ReportTarget, ReportedStatus, fold_events_jsonl};
use crate::shared::conditions::{self, Desired, set_condition};
use crate::shared::controller_watch::{log_reconcile_failure, managed_children};
use crate::shared::status_apply::{apply_child, apply_status_at, random_token};
use anneal_crds::trainer_failure::TrainerFailureReason;

/// Finalizer that lets the operator stop the trainer and drop its state before the job goes.
pub const FINALIZER: &str = "anneal.dev/cleanup";
/// What every reconcile shares.
#[derive(Clone)]
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Metrics,
    pub config: OperatorConfig,
    pub reports: ReportState<KubeReportCluster>,
}

/// Runs the controller until `shutdown` resolves.
pub async fn run_finetunejob_controller(
    context: Arc<Context>,
    namespace: Option<String>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = context.client.clone();
    let (jobs, trainers): (Api<FineTuneJob>, Api<Job>) = match &namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client, ns),
        ),
        None => (Api::all(client.clone()), Api::all(client)),
    };
    let controller = Controller::new(jobs, watcher::Config::default().any_semantic());
    let store = controller.store();
    let metrics = context.metrics.clone();
    // Jobs by phase, from the controller's cache: a gauge needs the whole picture,
    // which no single reconcile has.
    let counter = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            count_phases(&metrics, &store.state());
        }
    });
    controller
        .owns(trainers, managed_children())
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, context)
        .for_each(log_reconcile_failure)
        .await;
    counter.abort();
}

/// Sets `anneal_finetunejobs{phase}` from the jobs in the cache.
pub fn count_phases(metrics: &Metrics, jobs: &[Arc<FineTuneJob>]) {
    let phases = jobs.iter().map(|job| {
        let phase = job.status.as_ref().and_then(|s| s.phase);
        format!("{:?}", phase.unwrap_or(JobPhase::Pending))
    });
    Metrics::set_phase_counts(
        &metrics.jobs_by_phase,
        &[
            "Pending",
            "Validating",
            "Queued",
            "Running",
            "Succeeded",
            "Failed",
            "Suspended",
            "Cancelled",
        ],
        phases,
    );
}

/// One reconcile of one FineTuneJob.
pub async fn reconcile(job: Arc<FineTuneJob>, context: Arc<Context>) -> Result<Action> {
    let namespace = job.namespace().unwrap_or_default();
    let name = job.name_any();
    let api: Api<FineTuneJob> = Api::namespaced(context.client.clone(), &namespace);
    let work = finalizer(&api, FINALIZER, job, |event| async {
        match event {
            Finalizer::Apply(job) => apply(&job, &context).await,
            Finalizer::Cleanup(job) => cleanup(&job, &context).await,
        }
    });
    context
        .metrics
        .observe_reconcile("FineTuneJob", &namespace, &name, work)
        .await
        .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// Retry soon on failures the next attempt may not see (API hiccups, storage).
pub fn error_policy(_job: Arc<FineTuneJob>, error: &Error, context: Arc<Context>) -> Action {
    context.metrics.reconcile_failed("FineTuneJob", error)
}

/// The job exists: move it along.
async fn apply(job: &FineTuneJob, context: &Context) -> Result<Action> {
    let status = job.status.clone().unwrap_or_default();
    let mut next = status.clone();
    let now = Time(jiff::Timestamp::now());
    next.observed_generation = job.metadata.generation;

    if matches!(status.phase, Some(JobPhase::Succeeded | JobPhase::Failed)) {
        return keep_finished(job, &status, &now, context).await;
    }

    // A job that starts from another job's checkpoint waits for it, then trains as
    // the resolution says (recorded in status.startedFrom).
    let trained;
    let job = match start_from_job(job, &status, &mut next, &now, context).await? {
        Ok(Some(resolved)) => {
            trained = resolved;
            &trained
        }
        Ok(None) => job,
        Err(action) => return Ok(action),
    };

    // Validating: the spec, then the datasets, then the memory plan, once (the training
    // fields are immutable).
    if !conditions::is_true(&status.conditions, conditions::VALIDATED)
        && let Some(action) = validate(job, &status, &mut next, &now, context).await?
    {
        return Ok(action);
    }

    let mut trainer = match find_trainer(job, context).await? {
        Found::Trainer(trainer) => *trainer,
        Found::Conflict(message) => {
            end_failed(
                &mut next,
                NAME_CONFLICT,
                &message,
                job.metadata.generation,
                &now,
            );
            write_status(job, &status, &next, context).await?;
            return Ok(Action::await_change());
        }
    };
    if let Some(action) =
        start_or_stop_trainer(job, &status, &mut next, &mut trainer, &now, context).await?
    {
        return Ok(action);
    }
    record_trainer(job, &status, next, trainer, &now, context).await
}

/// A finished job keeps its Job (for `kubectl logs`) and its status as they are; its
/// trainer's token posts no more. A result that could not be read back when the job
/// ended is read again until it is there, and its checkpoints are published.
async fn keep_finished(
    job: &FineTuneJob,
    status: &FineTuneJobStatus,
    now: &Time,
    context: &Context,
) -> Result<Action> {
    // An error here (storage or the API server unavailable) is retried with the
    // controller's backoff.
    if status.phase == Some(JobPhase::Succeeded) && status.result.is_none() {
        recover_result(job, context).await?;
    }
    context
        .reports
        .close_job(&job.namespace().unwrap_or_default(), &job.name_any());
    if status.phase == Some(JobPhase::Succeeded)
        && status.result.is_some()
        && (!job.spec.publish.is_empty() || !status.published.is_empty())
    {
        return publish_checkpoints(job, status, now, context).await;
    }
    Ok(Action::await_change())
}

/// The job's trainer Job as the reconcile sees it, and why it may wait.
struct TrainerJob {
    found: Option<Job>,
    waiting: Option<String>,
    requeue: Duration,
}

enum Found {
    Trainer(Box<TrainerJob>),
    /// A Job of the trainer's name that belongs to something else.
    Conflict(String),
}

/// The trainer Job of this job, if there is one of its own.
async fn find_trainer(job: &FineTuneJob, context: &Context) -> Result<Found> {
    let trainers: Api<Job> =
        Api::namespaced(context.client.clone(), &job.namespace().unwrap_or_default());
    let job_name = trainer_job_name(&job.name_any());
    let found = trainers.get_opt(&job_name).await?;
    let mut trainer = TrainerJob {
        found: None,
        waiting: None,
        requeue: Duration::from_secs(300),
    };
    match found.as_ref().map(|found| ownership(found, job)) {
        Some(Ownership::Other) => return Ok(Found::Conflict(name_conflict("Job", &job_name))),
        Some(Ownership::EarlierJob) => {
            // Its deletion (garbage collection) wakes this job up through the Job watch.
            trainer.waiting = Some(format!(
                "waiting for the Job {job_name} of a deleted FineTuneJob of the same name to go"
            ));
            trainer.requeue = Duration::from_secs(5);
        }
        Some(Ownership::Ours) => {
            readmit_trainer(job, context).await?;
            trainer.found = found;
        }
        None => {}
    }
    Ok(Found::Trainer(Box::new(trainer)))
}

/// Suspended: the trainer Job deleted (its pod checkpoints on SIGTERM). Otherwise,
/// with no trainer and none still stopping, a new one created. `Some` when the
/// reconcile ends here.
async fn start_or_stop_trainer(
    job: &FineTuneJob,
    status: &FineTuneJobStatus,
    next: &mut FineTuneJobStatus,
    trainer: &mut TrainerJob,
    now: &Time,
    context: &Context,
) -> Result<Option<Action>> {
    let namespace = job.namespace().unwrap_or_default();
    let name = job.name_any();
    let trainers: Api<Job> = Api::namespaced(context.client.clone(), &namespace);
    if job.spec.suspend {
        if let Some(found) = &trainer.found
            && found.metadata.deletion_timestamp.is_none()
        {
            // Deleting the Job stops its pod with SIGTERM; the trainer checkpoints first.
            info!("suspending: deleting the trainer Job");
            let delete = DeleteParams {
                propagation_policy: Some(PropagationPolicy::Background),
                ..DeleteParams::default()
            };
            trainers.delete(&trainer_job_name(&name), &delete).await?;
        }
        return Ok(None);
    }
    if trainer.found.is_some() || trainer.waiting.is_some() {
        return Ok(None);
    }
    if previous_trainer_running(job, context).await? {
        // A trainer stopped for a suspend may still be writing its checkpoint; two
        // trainers must never write the same run.
        trainer.waiting = Some("waiting for the previous trainer pod to stop".to_owned());
        trainer.requeue = Duration::from_secs(5);
        return Ok(None);
    }
    if ended_or_suspended_since(job, context).await? {
        return Ok(Some(Action::requeue(Duration::from_secs(1))));
    }
    match issue_report_token(job, context).await? {
        TokenIssue::Issued => {}
        TokenIssue::Waiting(message) => {
            next.message = Some(message);
            write_status(job, status, next, context).await?;
            return Ok(Some(Action::requeue(Duration::from_secs(5))));
        }
        TokenIssue::Conflict(message) => {
            end_failed(next, NAME_CONFLICT, &message, job.metadata.generation, now);
            write_status(job, status, next, context).await?;
            return Ok(Some(Action::await_change()));
        }
    }
    // The model's size sizes the pod's scratch disk.
    let shape = match find_model_shape(&context.client, job, &context.config).await? {
        ShapeFound::ConfigJson(shape) | ShapeFound::BuiltIn(shape) => Some(shape),
        ShapeFound::Unknown(_) => None,
    };
    let mut planned = plan_trainer_job(job, &context.config, shape)?;
    let deadline = trainer_deadline(job, now);
    if let TrainerDeadline::Passed(message) = &deadline {
        let reason = TrainerFailureReason::DeadlineExceeded.as_str();
        end_failed(next, reason, message, job.metadata.generation, now);
        write_status(job, status, next, context).await?;
        return Ok(Some(Action::await_change()));
    }
    apply_deadline(&mut planned, &deadline);
    match trainers.create(&PostParams::default(), &planned).await {
        Ok(created) => {
            info!("created the trainer Job");
            trainer.found = Some(created);
        }
        Err(kube::Error::Api(e)) if e.code == 409 => trainer.requeue = Duration::from_secs(2),
        Err(e) => return Err(e.into()),
    }
    Ok(None)
}

/// Whether a pod of an earlier trainer of this job is still running.
async fn previous_trainer_running(job: &FineTuneJob, context: &Context) -> Result<bool> {
    let pods: Api<Pod> =
        Api::namespaced(context.client.clone(), &job.namespace().unwrap_or_default());
    let selector = format!("{JOB_LABEL}={}", job.name_any());
    Ok(pods
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
        .into_iter()
        .any(|pod| {
            let phase = pod.status.and_then(|s| s.phase).unwrap_or_default();
            phase != "Succeeded" && phase != "Failed"
        }))
}

/// The trainer's state read into the job's phase, conditions and times: a trainer
/// that keeps failing ends the job; a finished one has its last events flushed and
/// its result read.
async fn record_trainer(
    job: &FineTuneJob,
    status: &FineTuneJobStatus,
    mut next: FineTuneJobStatus,
    trainer: TrainerJob,
    now: &Time,
    context: &Context,
) -> Result<Action> {
    let namespace = job.namespace().unwrap_or_default();
    let name = job.name_any();
    let generation = job.metadata.generation;
    let trainer_pods = match &trainer.found {
        Some(_) => {
            let pods: Api<Pod> = Api::namespaced(context.client.clone(), &namespace);
            pods.list(&ListParams::default().labels(&format!("{JOB_LABEL}={name}")))
                .await?
                .items
        }
        None => Vec::new(),
    };
    if end_on_repeating_failure(
        job,
        context,
        trainer.found.as_ref(),
        &trainer_pods,
        &mut next,
        now,
    )
    .await?
    {
        write_status(job, status, &next, context).await?;
        return Ok(Action::await_change());
    }
    let state = observe_trainer_job(
        trainer.found.as_ref(),
        last_failure_message(&trainer_pods).as_deref(),
    );
    let plan = plan_phase(job.spec.suspend, &state);
    let mut requeue = trainer.requeue;
    if matches!(
        state,
        TrainerState::Starting { .. } | TrainerState::Deleting
    ) {
        requeue = requeue.min(Duration::from_secs(30));
    }
    for desired in plan.conditions {
        set_condition(&mut next.conditions, desired, generation, now);
    }
    if plan.phase == JobPhase::Running && next.start_time.is_none() {
        next.start_time = Some(now.clone());
    }
    if matches!(plan.phase, JobPhase::Succeeded | JobPhase::Failed) {
        next.completion_time = Some(now.clone());
        // The pod's exit code is the final word; its last events may still be queued.
        if let Err(error) = context.reports.flush_now(&namespace, &name).await {
            warn!(%error, "flushing the trainer's last events");
        }
        if plan.phase == JobPhase::Succeeded {
            // The Job's success stands even when storage cannot be read now; the
            // result is then missing rather than the phase held back in a retry loop.
            if let Err(error) = recover_result(job, context).await {
                warn!(%error, "reading the result from events.jsonl");
            }
        }
        context.reports.close_job(&namespace, &name);
    }
    next.message = Some(trainer.waiting.unwrap_or(plan.message));
    next.phase = Some(plan.phase);
    write_status(job, status, &next, context).await?;
    Ok(match plan.phase {
        JobPhase::Succeeded | JobPhase::Failed => Action::await_change(),
        _ => Action::requeue(requeue),
    })
}

/// How soon a job waiting for the job it starts from looks again.
const STARTING_JOB_RETRY: Duration = Duration::from_secs(15);

/// For a job that starts from another job's checkpoint (`spec.baseModel.fineTuneJob`):
/// `Ok(Some(job))`, the job as it trains (its base model resolved); `Err(action)`
/// while it waits for that job, or when it failed (status written). `Ok(None)` for
/// any other job.
async fn start_from_job(
    job: &FineTuneJob,
    status: &FineTuneJobStatus,
    next: &mut FineTuneJobStatus,
    now: &Time,
    context: &Context,
) -> Result<std::result::Result<Option<FineTuneJob>, Action>> {
    if job.spec.base_model.fine_tune_job.is_none() {
        return Ok(Ok(None));
    }
    if let Some(from) = &status.started_from {
        return Ok(Ok(Some(as_trained(job, from))));
    }
    match resolve_start(&context.client, job).await? {
        StartResolution::Waiting(message) => {
            next.phase = Some(JobPhase::Pending);
            next.message = Some(message);
            write_status(job, status, next, context).await?;
            Ok(Err(Action::requeue(STARTING_JOB_RETRY)))
        }
        StartResolution::Refused(message) => {
            end_failed(
                next,
                VerdictReason::InvalidSpec.as_str(),
                &message,
                job.metadata.generation,
                now,
            );
            write_status(job, status, next, context).await?;
            Ok(Err(Action::await_change()))
        }
        StartResolution::Resolved(from) => {
            next.started_from = Some(from.clone());
            Ok(Ok(Some(as_trained(job, &from))))
        }
    }
}

/// How soon a job waiting for a hub that did not answer asks again.
const MODEL_SOURCE_RETRY: Duration = Duration::from_secs(15);

/// The Validating phase: the spec, the datasets, the model (hub models), then (GPU
/// jobs) the memory plan.
/// `Some` when the job stops here for now: waiting for what it names, or failed.
async fn validate(
    job: &FineTuneJob,
    status: &FineTuneJobStatus,
    next: &mut FineTuneJobStatus,
    now: &Time,
    context: &Context,
) -> Result<Option<Action>> {
    let generation = job.metadata.generation;
    let mut verdict = judge_spec(job);
    let plan_problem = crate::finetunejob::trainer_job::check_sources(job)
        .and_then(|()| crate::finetunejob::trainer_job::output_uri(job, &context.config))
        .and_then(|_| crate::finetunejob::trainer_job::check_trainer_image(job, &context.config));
    let plan_problem = plan_problem.map_err(|problem| problem.to_string());
    if verdict.passed()
        && let Err(problem) = plan_problem
    {
        verdict = Verdict {
            reason: VerdictReason::InvalidSpec,
            message: format!("invalid spec: {problem}"),
        };
    }
    if verdict.passed() {
        if status.phase.is_none() {
            next.phase = Some(JobPhase::Validating);
            next.message = Some("checking the datasets".to_owned());
            // Only onto the object as read: this write, delayed in flight from an
            // operator stopped meanwhile, must not land after a later phase.
            write_status_at(
                job,
                status,
                next,
                context,
                job.metadata.resource_version.as_deref(),
            )
            .await?;
        }
        match check_datasets(&context.client, job, &context.config).await? {
            DatasetCheck::Waiting(message) => {
                next.phase = Some(JobPhase::Pending);
                next.message = Some(message);
                write_status(job, status, next, context).await?;
                return Ok(Some(Action::requeue(Duration::from_secs(10))));
            }
            DatasetCheck::Judged(judged) => verdict = judged,
        }
    }
    // The model, once the datasets passed (and the storage credentials are known to
    // exist): a hub model must exist and be readable with the job's token; then the
    // memory plan of a GPU job. Refused here, a job never holds a GPU.
    let shape = if verdict.passed() && (job.spec.resources.gpus > 0 || from_hub(job)) {
        match check_model_source(&context.client, job, &context.config).await? {
            ModelSourceCheck::Passed(shape) => Some(shape),
            ModelSourceCheck::Waiting(message) => {
                next.phase = Some(JobPhase::Pending);
                next.message = Some(message);
                write_status(job, status, next, context).await?;
                return Ok(Some(Action::requeue(MODEL_SOURCE_RETRY)));
            }
            ModelSourceCheck::Refused(message) => {
                verdict = Verdict {
                    reason: VerdictReason::ModelUnavailable,
                    message,
                };
                None
            }
        }
    } else {
        None
    };
    if verdict.passed() && !job.spec.task.is_image() {
        next.estimate = estimate_run(job, shape.as_ref(), context).await?;
    }
    if let Some(shape) = shape.filter(|_| verdict.passed() && job.spec.resources.gpus > 0) {
        let memory = judge_memory(job, &shape, context.config.gpu_memory);
        verdict = if memory.passed() {
            Verdict {
                message: format!("{}; {}", verdict.message, memory.message),
                ..verdict
            }
        } else {
            memory
        };
    }
    set_condition(
        &mut next.conditions,
        Desired {
            type_: conditions::VALIDATED,
            status: verdict.passed(),
            reason: verdict.reason.as_str(),
            message: verdict.message.clone(),
        },
        generation,
        now,
    );
    if !verdict.passed() {
        end_failed(
            next,
            verdict.reason.as_str(),
            &verdict.message,
            generation,
            now,
        );
        write_status(job, status, next, context).await?;
        return Ok(Some(Action::await_change()));
    }
    Ok(None)
}

/// `status.estimate` of a job that passed its checks, on its model's shape (`shape`
/// when Validating found it); none, with the reason logged, when it cannot be made.
async fn estimate_run(
    job: &FineTuneJob,
    shape: Option<&ShapeFound>,
    context: &Context,
) -> Result<Option<JobEstimate>> {
    let shape = match shape {
        Some(found) => found.clone(),
        None => find_model_shape(&context.client, job, &context.config).await?,
    };
    let why = match shape {
        ShapeFound::ConfigJson(shape) | ShapeFound::BuiltIn(shape) => {
            match estimate_job(&context.client, job, &context.config, shape).await? {
                Ok(estimate) => return Ok(Some(estimate)),
                Err(why) => why,
            }
        }
        ShapeFound::Unknown(why) => why,
    };
    info!(%why, "no estimate for the job");
    Ok(None)
}

/// The job is being deleted: stop its trainer (it checkpoints on SIGTERM) and forget
/// what the operator holds for it. The Job and Secret would also go by owner-reference
/// garbage collection; deleting them here makes the pod stop now.
async fn cleanup(job: &FineTuneJob, context: &Context) -> Result<Action> {
    let namespace = job.namespace().unwrap_or_default();
    let name = job.name_any();
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    let trainers: Api<Job> = Api::namespaced(context.client.clone(), &namespace);
    if let Some(trainer) = trainers.get_opt(&trainer_job_name(&name)).await?
        && owned_by(&trainer, job)
    {
        trainers.delete(&trainer_job_name(&name), &params).await?;
    }
    let secrets: Api<Secret> = Api::namespaced(context.client.clone(), &namespace);
    if let Some(secret) = secrets.get_opt(&trainer_secret_name(&name)).await?
        && owned_by(&secret, job)
    {
        secrets.delete(&trainer_secret_name(&name), &params).await?;
    }
    context.reports.forget_job(&namespace, &name);
    context.metrics.forget_job(&namespace, &name);
    if !matches!(
        job.status.as_ref().and_then(|s| s.phase),
        Some(JobPhase::Succeeded | JobPhase::Failed)
    ) {
        publish(
            context,
            job,
            EventType::Normal,
            "Cancelled",
            "the job was deleted; its trainer is stopped and its checkpoints stay in storage"
                .to_owned(),
        )
        .await;
    }
    Ok(Action::await_change())
}

/// Reason of a job ended because an object in its way is not its own.
const NAME_CONFLICT: &str = "NameConflict";

fn name_conflict(kind: &str, name: &str) -> String {
    format!(
        "a {kind} named {name} already exists and does not belong to this FineTuneJob; delete it or rename the FineTuneJob"
    )
}

/// What became of the token for a trainer Job about to be created.
enum TokenIssue {
    /// The job's Secret holds a new token and the report endpoint takes it.
    Issued,
    /// The Secret of a deleted job of the same name is still there.
    Waiting(String),
    /// A Secret of that name belongs to something else: it is never touched.
    Conflict(String),
}

/// Gives the trainer Job about to be created a token of its own: the job's Secret is
/// written with a new one (created, or replaced when it is this job's) and the report
/// endpoint admits the job with it, so the previous trainer's token stops working.
async fn issue_report_token(job: &FineTuneJob, context: &Context) -> Result<TokenIssue> {
    let namespace = job.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(context.client.clone(), &namespace);
    let name = trainer_secret_name(&job.name_any());
    if let Some(existing) = secrets.get_opt(&name).await? {
        match ownership(&existing, job) {
            Ownership::Ours => {}
            Ownership::EarlierJob => {
                return Ok(TokenIssue::Waiting(format!(
                    "waiting for the Secret {name} of a deleted FineTuneJob of the same name to go"
                )));
            }
            Ownership::Other => return Ok(TokenIssue::Conflict(name_conflict("Secret", &name))),
        }
    }
    let token = random_token();
    let secret = plan_trainer_secret(job, &token)?;
    apply_child(&secrets, &name, &secret).await?;
    admit(job, context, token)?;
    Ok(TokenIssue::Issued)
}

/// After an operator restart, the running trainer's token is read back from the job's
/// Secret once, so its posts are taken again.
async fn readmit_trainer(job: &FineTuneJob, context: &Context) -> Result<()> {
    let namespace = job.namespace().unwrap_or_default();
    if context
        .reports
        .is_admitted(&namespace, &job.name_any(), &job.uid().unwrap_or_default())
    {
        return Ok(());
    }
    let secrets: Api<Secret> = Api::namespaced(context.client.clone(), &namespace);
    let Some(secret) = secrets
        .get_opt(&trainer_secret_name(&job.name_any()))
        .await?
    else {
        return Ok(());
    };
    let token = secret
        .data
        .as_ref()
        .and_then(|data| data.get(TOKEN_KEY))
        .map(|bytes| String::from_utf8_lossy(&bytes.0).into_owned());
    if let (Ownership::Ours, Some(token)) = (ownership(&secret, job), token) {
        admit(job, context, token)?;
    }
    Ok(())
}

fn admit(job: &FineTuneJob, context: &Context, token: String) -> Result<()> {
    let target = ReportTarget {
        uid: job.uid().unwrap_or_default(),
        token,
        run_prefix: run_uri(job, &context.config)?,
        reported: ReportedStatus::from_status(&job.status.clone().unwrap_or_default()),
    };
    context.reports.admit_job(
        &job.namespace().unwrap_or_default(),
        &job.name_any(),
        target,
    );
    Ok(())
}

/// Whether the job has ended or been suspended since the copy this reconcile works
/// on was read. The controller's copy comes from its watch, which can lag behind the
/// controller's own status writes: after ending a job (deleting its trainer Job and
/// writing `Failed`), a reconcile woken by the Job's deletion may still see the job
/// `Running` with no trainer, and would start a new one that resumes the run. So
/// the API server's copy is read once before a trainer Job is created.
async fn ended_or_suspended_since(job: &FineTuneJob, context: &Context) -> Result<bool> {
    let api: Api<FineTuneJob> =
        Api::namespaced(context.client.clone(), &job.namespace().unwrap_or_default());
    let Some(current) = api.get_opt(&job.name_any()).await? else {
        return Ok(true);
    };
    if current.metadata.uid != job.metadata.uid {
        return Ok(true);
    }
    let phase = current.status.as_ref().and_then(|s| s.phase);
    let ended = matches!(
        phase,
        Some(JobPhase::Succeeded | JobPhase::Failed | JobPhase::Cancelled)
    );
    if ended || current.spec.suspend {
        info!(
            ?phase,
            "not creating a trainer Job: the job's watched copy is stale"
        );
        return Ok(true);
    }
    Ok(false)
}

/// Ends the job `Failed` at once when its trainer pods show a failure every retry of
/// the same plan would repeat (an OOM kill, a full scratch disk), deleting the trainer
/// Job that would otherwise retry it. Returns whether it did.
async fn end_on_repeating_failure(
    job: &FineTuneJob,
    context: &Context,
    trainer: Option<&Job>,
    pods: &[Pod],
    next: &mut FineTuneJobStatus,
    now: &Time,
) -> Result<bool> {
    let Some(trainer) = trainer else {
        return Ok(false);
    };
    if observe_trainer_job(Some(trainer), None) == TrainerState::Succeeded {
        return Ok(false);
    }
    let namespace = job.namespace().unwrap_or_default();
    let name = job.name_any();
    // The endpoint's folded progress is newer than the status it has yet to write.
    let reported = context.reports.reported_status(&namespace, &name);
    let step = (reported.and_then(|r| r.progress))
        .or_else(|| next.progress.clone())
        .map(|p| p.step);
    let limit = trainer_memory_limit(trainer);
    let Some(mut failure) = repeating_failure(pods, step, limit.as_deref(), None) else {
        return Ok(false);
    };
    // The Job goes first: the memory plan's note below may read the model's config
    // from storage, and the Job controller's back-off (10 s) is all that keeps a
    // retry from starting meanwhile.
    if trainer.metadata.deletion_timestamp.is_none() {
        info!(
            reason = failure.reason,
            "deleting the trainer Job: its retries would fail the same way"
        );
        let trainers: Api<Job> = Api::namespaced(context.client.clone(), &namespace);
        match trainers
            .delete(
                &trainer_job_name(&name),
                &DeleteParams {
                    propagation_policy: Some(PropagationPolicy::Background),
                    ..DeleteParams::default()
                },
            )
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(error) => return Err(error.into()),
        }
    }
    if failure.reason == OUT_OF_MEMORY
        && let Some(plan) = cpu_plan_note(job, context, limit.as_deref()).await
    {
        failure = repeating_failure(pods, step, limit.as_deref(), Some(&plan)).unwrap_or(failure);
    }
    if let Err(error) = context.reports.flush_now(&namespace, &name).await {
        warn!(%error, "flushing the trainer's last events");
    }
    context.reports.close_job(&namespace, &name);
    let generation = job.metadata.generation;
    end_failed(next, failure.reason, &failure.message, generation, now);
    Ok(true)
}

/// What the memory plan predicted for a CPU trainer at its pod's memory limit
/// (`", where the memory plan predicted 5.1 GiB at micro-batch 2"`), when the model's
/// shape is known; GPU jobs plan GPU memory, not the host's.
async fn cpu_plan_note(
    job: &FineTuneJob,
    context: &Context,
    limit: Option<&str>,
) -> Option<String> {
    if job.spec.resources.gpus > 0 {
        return None;
    }
    let memory: ByteSize = limit?.parse().ok()?;
    let shape = match find_model_shape(&context.client, job, &context.config)
        .await
        .ok()?
    {
        ShapeFound::ConfigJson(shape) | ShapeFound::BuiltIn(shape) => shape,
        ShapeFound::Unknown(_) => return None,
    };
    let plan = plan_for_job(&job.spec, shape, DeviceMemory::cpu(memory)).ok()?;
    Some(format!(
        ", where the memory plan predicted {} at micro-batch {}",
        plan.peak, plan.micro_batch
    ))
}

/// Marks the job failed and complete with `reason`: a verdict of Validating, a
/// failure every retry would repeat, or an object in its way.
fn end_failed(
    next: &mut FineTuneJobStatus,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: &Time,
) {
    for type_ in [conditions::FAILED, conditions::COMPLETE] {
        set_condition(
            &mut next.conditions,
            Desired {
                type_,
                status: type_ == conditions::FAILED,
                reason,
                message: message.to_owned(),
            },
            generation,
            now,
        );
    }
    next.phase = Some(JobPhase::Failed);
    next.message = Some(message.to_owned());
    next.completion_time = Some(now.clone());
}

/// Fills `status.result` from the run's `events.jsonl` when the trainer's last events
/// did not reach the operator (an operator restart, a network split): storage holds
/// the complete record.
async fn recover_result(job: &FineTuneJob, context: &Context) -> Result<()> {
    let namespace = job.namespace().unwrap_or_default();
    let name = job.name_any();
    let known = context
        .reports
        .reported_status(&namespace, &name)
        .unwrap_or_else(|| ReportedStatus::from_status(&job.status.clone().unwrap_or_default()));
    if known.result.is_some() {
        return Ok(());
    }
    let run = run_uri(job, &context.config)?;
    let access = crate::finetunejob::dataset_check::job_storage_access(
        &context.client,
        job,
        &context.config,
    )
    .await?;
    let settings = match access {
        crate::finetunejob::storage_access::StorageAccess::Allowed(settings) => settings,
        crate::finetunejob::storage_access::StorageAccess::Refused(why) => {
            warn!(%why, "not reading the run's events.jsonl");
            return Ok(());
        }
    };
    let text = anneal_crds::storage::AsyncStorage::open_with(&run, settings)?
        .get("events.jsonl")
        .await?;
    let Some(text) = text else {
        warn!("the trainer succeeded but its events.jsonl is missing");
        return Ok(());
    };
    let mut recovered = known;
    let rules = FoldRules::for_run(&run);
    fold_events_jsonl(&mut recovered, &String::from_utf8_lossy(&text), &rules)?;
    // Through the endpoint when it holds the job: a write of its older state that is
    // still due (one that failed a moment ago) must not land after this one.
    if context
        .reports
        .adopt_recovered(&namespace, &name, recovered.clone())
        .await?
    {
        info!("recovered the result from events.jsonl");
        return Ok(());
    }
    let api: Api<FineTuneJob> = Api::namespaced(context.client.clone(), &namespace);
    let mut patch = recovered.to_status_patch();
    patch["metadata"] = serde_json::json!({"uid": job.uid()});
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    info!("recovered the result from events.jsonl");
    Ok(())
}

/// Runs `spec.publish` for a succeeded job and records it in `status.published`.
async fn publish_checkpoints(
    job: &FineTuneJob,
    status: &FineTuneJobStatus,
    now: &Time,
    context: &Context,
) -> Result<Action> {
    let (published, news, running) = reconcile_publishing(job, status, now, context).await?;
    let next = FineTuneJobStatus {
        published,
        ..status.clone()
    };
    write_status(job, status, &next, context).await?;
    for item in news {
        match item {
            PublishNews::Published(note) => {
                publish(context, job, EventType::Normal, "Published", note).await;
            }
            PublishNews::Failed(note) => {
                publish(context, job, EventType::Warning, "PublishFailed", note).await;
            }
        }
    }
    Ok(if running {
        Action::requeue(Duration::from_secs(10))
    } else {
        Action::await_change()
    })
}

/// Writes the controller's part of the status (server-side apply) when it changed,
/// and announces a phase change as a Kubernetes Event.
async fn write_status(
    job: &FineTuneJob,
    before: &FineTuneJobStatus,
    next: &FineTuneJobStatus,
    context: &Context,
) -> Result<()> {
    write_status_at(job, before, next, context, None).await
}

/// [`write_status`], applied only while the job is at `resource_version` when given.
async fn write_status_at(
    job: &FineTuneJob,
    before: &FineTuneJobStatus,
    next: &FineTuneJobStatus,
    context: &Context,
    resource_version: Option<&str>,
) -> Result<()> {
    let owned = |s: &FineTuneJobStatus| {
        (
            s.phase,
            s.conditions.clone(),
            s.message.clone(),
            s.observed_generation,
            s.start_time.clone(),
            s.completion_time.clone(),
            s.published.clone(),
            s.started_from.clone(),
            s.estimate.clone(),
        )
    };
    if owned(before) == owned(next) {
        return Ok(());
    }
    let api: Api<FineTuneJob> =
        Api::namespaced(context.client.clone(), &job.namespace().unwrap_or_default());
    let owned_fields = serde_json::json!({
        "phase": next.phase,
        "conditions": next.conditions,
        "message": next.message,
        "observedGeneration": job.metadata.generation,
        "startTime": next.start_time,
        "completionTime": next.completion_time,
        // Left out while empty: a job without `spec.publish` keeps its status as it was.
        "published": (!next.published.is_empty()).then_some(&next.published),
        // Once resolved, a chained job's lineage is kept for good.
        "startedFrom": next.started_from,
        // Made once, in Validating.
        "estimate": next.estimate,
    });
    apply_status_at(&api, &job.name_any(), owned_fields, resource_version).await?;
    if before.phase != next.phase
        && let Some(phase) = next.phase
    {
        let warning = phase == JobPhase::Failed;
        publish(
            context,
            job,
            if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            &format!("{phase:?}"),
            next.message.clone().unwrap_or_default(),
        )
        .await;
    }
    Ok(())
}

/// Publishes a Kubernetes Event on the job; failing to is logged, never fatal.
async fn publish(
    context: &Context,
    job: &FineTuneJob,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: "Reconcile".to_owned(),
        secondary: None,
    };
    if let Err(error) = context.recorder.publish(&event, &job.object_ref(&())).await {
        warn!(%error, reason, "publishing a Kubernetes Event");
    }
}

/// Whose an object with one of the job's child names is.
enum Ownership {
    /// This job's (by uid).
    Ours,
    /// A deleted FineTuneJob's of the same name: the garbage collector removes it.
    EarlierJob,
    /// Something else's: never taken over, changed or deleted.
    Other,
}

fn ownership<K: Resource>(child: &K, job: &FineTuneJob) -> Ownership {
    if owned_by(child, job) {
        return Ownership::Ours;
    }
    let name = job.name_any();
    let earlier = child
        .meta()
        .owner_references
        .iter()
        .flatten()
        .any(|owner| owner.kind == "FineTuneJob" && owner.name == name);
    if earlier {
        Ownership::EarlierJob
    } else {
        Ownership::Other
    }
}

/// Whether `child` names `job` (this very object, by uid) as its controller.
fn owned_by<K: Resource>(child: &K, job: &FineTuneJob) -> bool {
    let uid = job.metadata.uid.as_deref();
    child
        .meta()
        .owner_references
        .iter()
        .flatten()
        .any(|owner| owner.controller == Some(true) && Some(owner.uid.as_str()) == uid)
}
