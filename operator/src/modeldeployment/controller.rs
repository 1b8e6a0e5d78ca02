//! The ModelDeployment controller: one `reconcile` per deployment, as a pipeline. Read
//! what it needs (the deployment, the FineTuneJob it names, its Deployment and
//! Service), resolve the model (pure), plan the children (pure), apply them with
//! server-side apply, then compute status from what is there. A FineTuneJob still
//! training keeps the deployment `Pending` and the FineTuneJob watch wakes it up when
//! that changes; the children go with the deployment through owner references. For
//! runtime `builtin` it then brings every running pod's adapters in line with the
//! spec (`replica_adapters`); the pods watch wakes it up when one becomes ready.

use std::sync::Arc;
use std::time::Duration;

use anneal_crds::hub::HubRef;
use anneal_crds::modeldeployment::ReplicaStatus;
use anneal_crds::modeldeployment::{DeploymentPhase, ModelDeploymentStatus};
use anneal_crds::{FineTuneJob, ModelDeployment, jiff};
use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use tracing::{debug, info, warn};

use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::modeldeployment::model_resolution::{
    Resolution, ServedModel, fine_tune_job_name, resolve_model,
};
use crate::modeldeployment::replica_adapters::sync_replicas;
use crate::modeldeployment::serving_deployment::{
    DEPLOYMENT_LABEL, RUNTIME_LORA_TOKEN_ENV, adapters_config_map_name, check_servable, endpoint,
    loads_adapters_at_runtime, plan_adapters_config_map, plan_deployment, plan_runtime_lora_secret,
    plan_service, runtime_adapters, runtime_lora_secret_name,
};
use crate::modeldeployment::serving_observation::{ModelState, plan_status};
use crate::shared::conditions::{ADAPTERS_LOADED, Desired, set_condition};
use crate::shared::hub_check::{HubCheck, check_hub_model, operator_hub_settings};
use crate::shared::status_apply::{
    FIELD_MANAGER, StatusWrite, apply_child, apply_observed_status, random_token,
};

pub use crate::shared::controller_context::Context;
use crate::shared::controller_watch::{log_reconcile_failure, managed_children};

/// Runs the controller until `shutdown` resolves.
pub async fn run_modeldeployment_controller(
    context: Arc<Context>,
    namespace: Option<String>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = context.client.clone();
    // Every API the controller watches, in the one namespace or in all.
    fn scoped<K>(client: &kube::Client, namespace: Option<&str>) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let namespace = namespace.as_deref();
    let deployments: Api<ModelDeployment> = scoped(&client, namespace);
    let servers: Api<Deployment> = scoped(&client, namespace);
    let services: Api<Service> = scoped(&client, namespace);
    let jobs: Api<FineTuneJob> = scoped(&client, namespace);
    let pods: Api<Pod> = scoped(&client, namespace);
    let controller = Controller::new(deployments, watcher::Config::default().any_semantic());
    let store = controller.store();
    let metrics = context.metrics.clone();
    let counted = store.clone();
    // Deployments by phase, from the controller's cache: a gauge needs the whole
    // picture, which no single reconcile has.
    let counter = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            count_phases(&metrics, &counted.state());
        }
    });
    let children = managed_children();
    controller
        .owns(servers, children.clone())
        .owns(services, children)
        // A job's status decides what its deployments serve: a change wakes them.
        .watches(
            jobs,
            watcher::Config::default().any_semantic(),
            move |job| deployments_naming(&store.state(), &job),
        )
        // A serving pod whose server came up needs its adapters (and its gate).
        .watches(
            pods,
            watcher::Config::default()
                .labels(DEPLOYMENT_LABEL)
                .any_semantic(),
            |pod| deployment_of_pod(&pod),
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, context)
        .for_each(log_reconcile_failure)
        .await;
    counter.abort();
}

/// The deployments (from the cache) that serve from `job`.
pub fn deployments_naming(
    deployments: &[Arc<ModelDeployment>],
    job: &FineTuneJob,
) -> Vec<ObjectRef<ModelDeployment>> {
    deployments
        .iter()
        .filter(|d| {
            d.namespace() == job.namespace()
                && fine_tune_job_name(d) == job.metadata.name.as_deref()
        })
        .map(|d| ObjectRef::from_obj(d.as_ref()))
        .collect()
}

/// The deployment a serving pod belongs to, by its label.
pub fn deployment_of_pod(pod: &Pod) -> Option<ObjectRef<ModelDeployment>> {
    let name = pod.labels().get(DEPLOYMENT_LABEL)?;
    Some(ObjectRef::new(name).within(&pod.namespace()?))
}

/// Sets `anneal_modeldeployments{phase}` from the deployments in the cache.
pub fn count_phases(metrics: &Metrics, deployments: &[Arc<ModelDeployment>]) {
    let phases = deployments.iter().map(|deployment| {
        let phase = deployment.status.as_ref().and_then(|s| s.phase);
        format!("{:?}", phase.unwrap_or(DeploymentPhase::Pending))
    });
    Metrics::set_phase_counts(
        &metrics.deployments_by_phase,
        &["Pending", "Loading", "Ready", "Failed"],
        phases,
    );
}

/// One reconcile of one ModelDeployment.
pub async fn reconcile(deployment: Arc<ModelDeployment>, context: Arc<Context>) -> Result<Action> {
    let namespace = deployment.namespace().unwrap_or_default();
    let name = deployment.name_any();
    let work = apply(&deployment, &context);
    context
        .metrics
        .observe_reconcile("ModelDeployment", &namespace, &name, work)
        .await
}

/// Retry soon on failures the next attempt may not see (API hiccups).
pub fn error_policy(
    _deployment: Arc<ModelDeployment>,
    error: &Error,
    context: Arc<Context>,
) -> Action {
    context.metrics.reconcile_failed("ModelDeployment", error)
}

/// The deployment exists (deleting it deletes its children by owner references, so
/// there is nothing to clean up): resolve, apply, report.
async fn apply(deployment: &ModelDeployment, context: &Context) -> Result<Action> {
    let namespace = deployment.namespace().unwrap_or_default();
    let name = deployment.name_any();
    let before = deployment.status.clone().unwrap_or_default();

    // Read.
    let job = match fine_tune_job_name(deployment) {
        Some(job_name) => {
            let jobs: Api<FineTuneJob> = Api::namespaced(context.client.clone(), &namespace);
            jobs.get_opt(job_name).await?
        }
        None => None,
    };
    let servers: Api<Deployment> = Api::namespaced(context.client.clone(), &namespace);
    let services: Api<Service> = Api::namespaced(context.client.clone(), &namespace);
    let existing = servers.get_opt(&name).await?;
    let existing_service = services.get_opt(&name).await?;

    // Validate (pure): which model, and can the pods read it.
    let mut resolution = resolve_model(deployment, job.as_ref(), &context.config);
    if let Resolution::Resolved(model) = &resolution
        && let Err(problem) = check_servable(deployment, model, &context.config)
    {
        let Some(reason) = problem.user_reason() else {
            return Err(problem.into());
        };
        resolution = Resolution::Failed {
            reason,
            message: problem.to_string(),
        };
    }
    // Hub models (the base, adapters) are looked up before the first pods are planned:
    // a wrong repository, revision or token fails here, a hub that does not answer waits.
    if let Resolution::Resolved(model) = &resolution
        && existing
            .as_ref()
            .is_none_or(|d| !owned_by(&d.metadata, deployment))
        && let Some(failed) = check_hub_sources(context, &namespace, model).await?
    {
        resolution = failed;
    }
    // Objects of the same name that are not this deployment's are never taken over.
    for (kind, found) in [
        ("Deployment", existing.as_ref().map(|d| d.meta())),
        ("Service", existing_service.as_ref().map(|s| s.meta())),
    ] {
        if let (Some(meta), Resolution::Resolved(_)) = (found, &resolution)
            && let Some(in_the_way) = not_ours(kind, &name, meta, deployment, "")
        {
            resolution = in_the_way;
        }
    }

    let token = prepare_runtime_adapters(deployment, context, &mut resolution).await?;

    // Build (pure) and apply.
    let mut server = existing.filter(|d| owned_by(&d.metadata, deployment));
    if let Resolution::Resolved(model) = &resolution {
        let planned_service = plan_service(deployment)?;
        let planned = plan_deployment(deployment, model, &context.config)?;
        let params = PatchParams::apply(FIELD_MANAGER).force();
        services
            .patch(&name, &params, &Patch::Apply(&planned_service))
            .await?;
        let applied = servers
            .patch(&name, &params, &Patch::Apply(&planned))
            .await?;
        if server.is_none() {
            info!("created the serving Deployment and Service");
        }
        server = Some(applied);
    }

    // Every running builtin pod serves the spec's adapters.
    let mut replicas = Vec::new();
    if let (Resolution::Resolved(model), Some(token)) = (&resolution, &token) {
        let wanted = runtime_adapters(deployment, model)?;
        replicas = sync_replicas(&context.client, &namespace, &name, token, &wanted).await?;
    }

    // Status from what is there.
    let next = next_status(
        deployment,
        &before,
        &resolution,
        server.as_ref(),
        token.is_some().then_some(replicas.as_slice()),
    );
    write_status(deployment, &before, &next, context).await?;
    Ok(match &resolution {
        // Nothing watched changes when the user removes an object in the way.
        Resolution::Failed {
            reason: "NameConflict",
            ..
        } => Action::requeue(Duration::from_secs(60)),
        Resolution::Waiting {
            reason: "HubUnreachable",
            ..
        } => Action::requeue(Duration::from_secs(15)),
        // A failed load (storage that did not answer, a pod busy) is tried again.
        Resolution::Resolved(_) if replicas.iter().any(|r| !r.in_sync) => {
            Action::requeue(Duration::from_secs(30))
        }
        // The watches on the FineTuneJob and the children bring every other change;
        // this is a safety net.
        _ => Action::requeue(Duration::from_secs(300)),
    })
}

/// The status from how the model resolved, the serving Deployment as applied, and
/// (runtime adapters) what each pod serves.
fn next_status(
    deployment: &ModelDeployment,
    before: &ModelDeploymentStatus,
    resolution: &Resolution,
    server: Option<&Deployment>,
    replicas: Option<&[ReplicaStatus]>,
) -> ModelDeploymentStatus {
    let model_state = match resolution {
        Resolution::Resolved(model) => ModelState::Resolved {
            summary: &model.summary,
        },
        Resolution::Waiting { reason, message } => ModelState::Waiting { reason, message },
        Resolution::Failed { reason, message } => ModelState::Failed { reason, message },
    };
    let observed = plan_status(model_state, deployment.spec.replicas, server);
    let now = Time(jiff::Timestamp::now());
    let generation = deployment.metadata.generation;
    let mut next = before.clone();
    for desired in observed.conditions {
        set_condition(&mut next.conditions, desired, generation, &now);
    }
    if let Some(replicas) = replicas {
        let adapters = match resolution {
            Resolution::Resolved(model) => model.adapters.len(),
            _ => 0,
        };
        let loaded = adapters_loaded(replicas, adapters);
        set_condition(&mut next.conditions, loaded, generation, &now);
    }
    next.replicas = replicas.unwrap_or_default().to_vec();
    next.phase = Some(observed.phase);
    next.ready_replicas = observed.ready_replicas;
    next.message = Some(observed.message);
    next.observed_generation = generation;
    next.endpoint = server.map(|_| {
        endpoint(
            &deployment.name_any(),
            &deployment.namespace().unwrap_or_default(),
        )
    });
    next.model_id = match (resolution, server) {
        (Resolution::Resolved(model), _) => Some(model.model_id.clone()),
        // Pods of an earlier spec still serve the model the status named.
        (_, Some(_)) => before.model_id.clone(),
        (_, None) => None,
    };
    next
}

/// `AdaptersLoaded`: whether every pod the operator reached serves the spec's
/// `adapters` adapters, else which pod is behind and why.
fn adapters_loaded(replicas: &[ReplicaStatus], adapters: usize) -> Desired<'static> {
    let in_sync = replicas.iter().filter(|r| r.in_sync).count();
    let what = match adapters {
        0 => "the base model alone".to_owned(),
        count => format!("the spec's {count} adapter(s)"),
    };
    let (status, reason, message) =
        if let Some(failed) = replicas.iter().find(|r| r.message.is_some()) {
            (
                false,
                "AdapterChangeFailed",
                format!(
                    "pod {}: {} ({in_sync} of {} pods serve {what})",
                    failed.pod,
                    failed.message.as_deref().unwrap_or_default(),
                    replicas.len()
                ),
            )
        } else if replicas.is_empty() {
            (
                false,
                "NoServingPods",
                format!("no serving pod is up yet to load {what} into"),
            )
        } else if in_sync < replicas.len() {
            (
                false,
                "Loading",
                format!("{in_sync} of {} pods serve {what}", replicas.len()),
            )
        } else {
            (
                true,
                "Loaded",
                format!("{in_sync} of {} pods serve {what}", replicas.len()),
            )
        };
    Desired {
        type_: ADAPTERS_LOADED,
        status,
        reason,
        message,
    }
}

/// What pods whose adapters are loaded at runtime need before they start: the token
/// the operator presents to them (returned), and the list of adapters their server
/// loads when it starts. `None` for other pods, or when a child of the same name is
/// in the way (`resolution` then says so).
async fn prepare_runtime_adapters(
    deployment: &ModelDeployment,
    context: &Context,
    resolution: &mut Resolution,
) -> Result<Option<String>> {
    let Resolution::Resolved(model) = &*resolution else {
        return Ok(None);
    };
    if !loads_adapters_at_runtime(deployment, model) {
        return Ok(None);
    }
    let token = match runtime_lora_token(deployment, context).await? {
        Ok(issued) => issued,
        Err(blocked) => {
            *resolution = blocked;
            return Ok(None);
        }
    };
    if let Some(blocked) = write_adapters_list(deployment, model, context).await? {
        *resolution = blocked;
        return Ok(None);
    }
    Ok(Some(token))
}

/// The token the operator presents to the deployment's pods to change their
/// adapters, from the deployment's Secret (created with a new one when missing; kept
/// after that, since running pods read it at start). A Secret of that name that is
/// not the deployment's is never touched: the resolution says so.
async fn runtime_lora_token(
    deployment: &ModelDeployment,
    context: &Context,
) -> Result<std::result::Result<String, Resolution>> {
    let name = deployment.name_any();
    let secrets: Api<Secret> = Api::namespaced(
        context.client.clone(),
        &deployment.namespace().unwrap_or_default(),
    );
    let secret_name = runtime_lora_secret_name(&name);
    if let Some(existing) = secrets.get_opt(&secret_name).await? {
        let why = " (its pods' adapter-change token goes there)";
        if let Some(in_the_way) =
            not_ours("Secret", &secret_name, &existing.metadata, deployment, why)
        {
            return Ok(Err(in_the_way));
        }
        let token = (existing.data.as_ref())
            .and_then(|data| data.get(RUNTIME_LORA_TOKEN_ENV))
            .map(|bytes| String::from_utf8_lossy(&bytes.0).into_owned())
            .filter(|token| !token.is_empty());
        if let Some(token) = token {
            return Ok(Ok(token));
        }
    }
    let token = random_token();
    let secret = plan_runtime_lora_secret(deployment, &token)?;
    apply_child(&secrets, &secret_name, &secret).await?;
    info!(secret = %secret_name, "created the adapter-change token of the serving pods");
    Ok(Ok(token))
}

/// Writes the ConfigMap listing the adapters `model`'s pods serve, which their server
/// loads at start; `Some` when a ConfigMap of that name is not the deployment's (it is
/// never touched).
async fn write_adapters_list(
    deployment: &ModelDeployment,
    model: &ServedModel,
    context: &Context,
) -> Result<Option<Resolution>> {
    let namespace = deployment.namespace().unwrap_or_default();
    let config_maps: Api<ConfigMap> = Api::namespaced(context.client.clone(), &namespace);
    let name = adapters_config_map_name(&deployment.name_any());
    if let Some(existing) = config_maps.get_opt(&name).await? {
        let why = " (the list of adapters its pods load at start goes there)";
        if let Some(in_the_way) = not_ours("ConfigMap", &name, &existing.metadata, deployment, why)
        {
            return Ok(Some(in_the_way));
        }
    }
    let planned = plan_adapters_config_map(deployment, &runtime_adapters(deployment, model)?)?;
    apply_child(&config_maps, &name, &planned).await?;
    Ok(None)
}

/// The first hub source of `model` (its base, then its adapters) the hub refuses or
/// does not answer for, as the resolution it makes.
async fn check_hub_sources(
    context: &Context,
    namespace: &str,
    model: &ServedModel,
) -> Result<Option<Resolution>> {
    let sources = std::iter::once(&model.base).chain(model.adapters.iter().map(|a| &a.source));
    let mut secret = None;
    for source in sources {
        let Some(Ok(reference)) = HubRef::parse(&source.uri) else {
            continue;
        };
        if secret.is_none() {
            secret = Some(
                secret_settings(context, namespace, model.credentials_secret.as_deref()).await?,
            );
        }
        let settings = operator_hub_settings(
            &reference,
            secret.as_deref().unwrap_or_default(),
            &context.config,
        );
        match check_hub_model(&source.field, &reference, settings).await {
            HubCheck::Readable { .. } => {}
            HubCheck::Refused(message) => {
                return Ok(Some(Resolution::Failed {
                    reason: "ModelUnavailable",
                    message,
                }));
            }
            HubCheck::Unreachable(message) => {
                return Ok(Some(Resolution::Waiting {
                    reason: "HubUnreachable",
                    message,
                }));
            }
        }
    }
    Ok(None)
}

/// The keys of the credentials Secret the serving pods get (none when there is no
/// Secret, or it is not there: the pods would fail to start on it, and say so).
async fn secret_settings(
    context: &Context,
    namespace: &str,
    secret: Option<&str>,
) -> Result<Vec<(String, String)>> {
    let Some(name) = secret else {
        return Ok(Vec::new());
    };
    let api: Api<Secret> = Api::namespaced(context.client.clone(), namespace);
    let Some(found) = api.get_opt(name).await? else {
        return Ok(Vec::new());
    };
    let mut settings: Vec<(String, String)> = found
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(key, value)| (key, String::from_utf8_lossy(&value.0).into_owned()))
        .collect();
    settings.extend(found.string_data.unwrap_or_default());
    Ok(settings)
}

/// Writes the status (server-side apply) when it changed, and announces a phase
/// change as a Kubernetes Event.
async fn write_status(
    deployment: &ModelDeployment,
    before: &ModelDeploymentStatus,
    next: &ModelDeploymentStatus,
    context: &Context,
) -> Result<()> {
    if before == next {
        return Ok(());
    }
    let api: Api<ModelDeployment> = Api::namespaced(
        context.client.clone(),
        &deployment.namespace().unwrap_or_default(),
    );
    let fields = serde_json::to_value(next).expect("a status serializes");
    if apply_observed_status(&api, deployment, fields).await? == StatusWrite::MovedOn {
        debug!("the deployment moved on since it was read: the next reconcile decides");
        return Ok(());
    }
    if before.phase != next.phase
        && let Some(phase) = next.phase
    {
        let event = Event {
            type_: if phase == DeploymentPhase::Failed {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: format!("{phase:?}"),
            note: next.message.clone(),
            action: "Reconcile".to_owned(),
            secondary: None,
        };
        if let Err(error) = context
            .recorder
            .publish(&event, &deployment.object_ref(&()))
            .await
        {
            warn!(%error, "publishing a Kubernetes Event");
        }
    }
    Ok(())
}

/// Why the `kind` object `name` (with `meta`), in the way of one of `deployment`'s
/// children, holds the deployment back; `None` when it is the deployment's own. It is
/// never taken over: a deleted ModelDeployment's (of the same name) goes with the
/// garbage collector, whose deletion wakes this one up; anything else is the user's to
/// move. `why` says what the name is for.
fn not_ours(
    kind: &str,
    name: &str,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    deployment: &ModelDeployment,
    why: &str,
) -> Option<Resolution> {
    if owned_by(meta, deployment) {
        return None;
    }
    Some(if owned_by_earlier(meta, &deployment.name_any()) {
        Resolution::Waiting {
            reason: "PreviousChildrenTerminating",
            message: format!(
                "waiting for the {kind} {name} of a deleted ModelDeployment of the same name to go"
            ),
        }
    } else {
        Resolution::Failed {
            reason: "NameConflict",
            message: format!(
                "a {kind} named {name} already exists and does not belong to this ModelDeployment{why}; delete it or rename the ModelDeployment"
            ),
        }
    })
}

/// Whether the object names `deployment` (this very one, by uid) as its controller.
fn owned_by(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    deployment: &ModelDeployment,
) -> bool {
    let uid = deployment.metadata.uid.as_deref();
    meta.owner_references
        .iter()
        .flatten()
        .any(|owner| owner.controller == Some(true) && Some(owner.uid.as_str()) == uid)
}

/// Whether the object belongs to another ModelDeployment called `name` (an earlier one
/// of the same name, since names are unique while an object exists).
fn owned_by_earlier(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    name: &str,
) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|owner| owner.kind == "ModelDeployment" && owner.name == name)
}
