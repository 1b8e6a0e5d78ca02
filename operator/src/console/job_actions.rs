//! The console's actions on a job: suspend or resume it, delete it, deploy one of its
//! checkpoints, publish one. Each is taken only for a signed-in viewer the API server
//! allows to do that very thing (a SubjectAccessReview per action: `patch` or
//! `delete` on the FineTuneJob, `create` on ModelDeployments in its namespace), and
//! only from the
//! console's own pages: a request another site's page makes a browser send is
//! refused by its `Origin`. Without sign-in the console takes none.

use std::sync::Arc;

use anneal_console::actions::{
    PUBLISH_EXAMPLE, Permitted, default_deployment_name, deployable_checkpoints,
    deployment_manifest, patch_yaml, publish_patch, suspend_patch,
};
use anneal_console::job_pages::refused_page;
use anneal_console::jobs::JobActions;
use anneal_console::relay::same_origin;
use anneal_crds::{FineTuneJob, ModelDeployment};
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde::Deserialize;
use tracing::info;

use super::viewer::{FINETUNEJOBS, MODELDEPLOYMENTS, Viewer, may};
use super::{ConsoleState, html_page, unavailable};

/// The field manager of what the console writes.
const CONSOLE_MANAGER: &str = "anneal-console";

/// What `viewer` may do with `job`, asked of the API server (nothing without
/// sign-in).
pub async fn permitted(
    state: &ConsoleState,
    viewer: &Viewer,
    job: &FineTuneJob,
) -> kube::Result<Permitted> {
    if !matches!(viewer, Viewer::User(_)) {
        return Ok(Permitted::default());
    }
    let namespace = job.namespace().unwrap_or_default();
    let name = job.name_any();
    let ask = |verb: &'static str, resource: &'static str, named: bool| {
        let (namespace, name) = (namespace.clone(), name.clone());
        async move {
            let name = named.then_some(name.as_str());
            may(
                &state.client,
                viewer,
                verb,
                resource,
                Some(&namespace),
                name,
            )
            .await
        }
    };
    let (patch, delete, deploy) = tokio::join!(
        ask("patch", FINETUNEJOBS, true),
        ask("delete", FINETUNEJOBS, true),
        ask("create", MODELDEPLOYMENTS, false),
    );
    Ok(Permitted {
        patch: patch?,
        delete: delete?,
        deploy: deploy?,
    })
}

/// The actions section of `job`'s page for a viewer who may take `permitted`
/// (`None`: sign-in is off, the console is read-only).
pub fn job_actions(viewer: &Viewer, job: &FineTuneJob, permitted: Permitted) -> Option<JobActions> {
    if !matches!(viewer, Viewer::User(_)) {
        return None;
    }
    let checkpoints = deployable_checkpoints(job);
    let deployment_preview = checkpoints.first().and_then(|checkpoint| {
        let name = default_deployment_name(job, checkpoint);
        deployment_manifest(job, checkpoint, &name, 1)
            .ok()
            .map(|(yaml, _)| yaml)
    });
    let publish_preview = (checkpoints.first())
        .and_then(|checkpoint| publish_patch(job, checkpoint, PUBLISH_EXAMPLE, false).ok())
        .map(|patch| patch_yaml(&patch));
    Some(JobActions {
        href: anneal_console::jobs::job_href(&job.namespace().unwrap_or_default(), &job.name_any()),
        name: job.name_any(),
        permitted,
        suspended: job.spec.suspend,
        checkpoints,
        deployment_preview,
        publish_preview,
        outcome: None,
    })
}

fn refused(status: StatusCode, why: &str) -> Response {
    html_page(status, refused_page(why, false))
}

/// The job an action is about, for a signed-in viewer who may take it, from the
/// console's own page; else the answer refusing it.
async fn acting_on(
    state: &ConsoleState,
    headers: &HeaderMap,
    namespace: &str,
    name: &str,
    allowed: impl Fn(Permitted) -> bool,
    action: &str,
) -> Result<(Viewer, FineTuneJob), Response> {
    if !same_origin(headers) {
        return Err(refused(
            StatusCode::FORBIDDEN,
            "This request came from another site's page; the console takes actions from its own pages only.",
        ));
    }
    let viewer = super::viewer_of(state, headers).await?;
    if !matches!(viewer, Viewer::User(_)) {
        return Err(refused(
            StatusCode::FORBIDDEN,
            "The console is read-only: sign-in is off (--console-auth none).",
        ));
    }
    super::check_get(state, &viewer, FINETUNEJOBS, namespace, name).await?;
    let api: Api<FineTuneJob> = Api::namespaced(state.client.clone(), namespace);
    let found = if super::watched(state, namespace) {
        api.get_opt(name).await
    } else {
        Ok(None)
    };
    let job = match found {
        Ok(Some(job)) => job,
        Ok(None) => {
            let why = format!("There is no FineTuneJob {namespace}/{name}.");
            return Err(refused(StatusCode::NOT_FOUND, &why));
        }
        Err(error) => return Err(unavailable("reading a FineTuneJob", &error)),
    };
    match permitted(state, &viewer, &job).await {
        Ok(permitted) if allowed(permitted) => Ok((viewer, job)),
        Ok(_) => {
            let who = viewer.name().unwrap_or("you");
            Err(refused(
                StatusCode::FORBIDDEN,
                &format!("{who} may not {action} the FineTuneJob {namespace}/{name}."),
            ))
        }
        Err(error) => Err(unavailable("reviewing access", &error)),
    }
}

#[derive(Deserialize)]
pub struct SuspendForm {
    suspend: bool,
}

pub async fn suspend_job(
    State(state): State<Arc<ConsoleState>>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
    Form(form): Form<SuspendForm>,
) -> Response {
    let verb = if form.suspend { "suspend" } else { "resume" };
    let (viewer, job) =
        match acting_on(&state, &headers, &namespace, &name, |p| p.patch, verb).await {
            Ok(found) => found,
            Err(response) => return response,
        };
    let api: Api<FineTuneJob> = Api::namespaced(state.client.clone(), &namespace);
    let params = PatchParams {
        field_manager: Some(CONSOLE_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    if let Err(error) = api
        .patch(
            &job.name_any(),
            &params,
            &Patch::Merge(suspend_patch(form.suspend)),
        )
        .await
    {
        return unavailable("patching a FineTuneJob", &error);
    }
    info!(viewer = viewer.name(), %namespace, %name, verb, "console action");
    Redirect::to(&anneal_console::jobs::job_href(&namespace, &name)).into_response()
}

#[derive(Deserialize)]
pub struct DeleteForm {
    confirm: String,
}

pub async fn delete_job(
    State(state): State<Arc<ConsoleState>>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
    Form(form): Form<DeleteForm>,
) -> Response {
    let (viewer, job) =
        match acting_on(&state, &headers, &namespace, &name, |p| p.delete, "delete").await {
            Ok(found) => found,
            Err(response) => return response,
        };
    if form.confirm.trim() != name {
        let why = format!(
            "Type the job's name, {name}, to delete it; {:?} is not it.",
            form.confirm
        );
        return refused(StatusCode::UNPROCESSABLE_ENTITY, &why);
    }
    let api: Api<FineTuneJob> = Api::namespaced(state.client.clone(), &namespace);
    // Only the job the viewer saw: not a new one of the same name.
    let params = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: job.uid(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    if let Err(error) = api.delete(&name, &params).await {
        return unavailable("deleting a FineTuneJob", &error);
    }
    info!(viewer = viewer.name(), %namespace, %name, "console action: delete");
    Redirect::to("/").into_response()
}

#[derive(Deserialize)]
pub struct DeployForm {
    checkpoint: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    replicas: String,
}

pub async fn deploy_checkpoint(
    State(state): State<Arc<ConsoleState>>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
    Form(form): Form<DeployForm>,
) -> Response {
    let (viewer, job) =
        match acting_on(&state, &headers, &namespace, &name, |p| p.deploy, "deploy").await {
            Ok(found) => found,
            Err(response) => return response,
        };
    let deployment_name = match form.name.trim() {
        "" => default_deployment_name(&job, &form.checkpoint),
        given => given.to_owned(),
    };
    let Some(replicas) = (form.replicas.trim().parse::<u32>().ok()).filter(|r| *r >= 1) else {
        let why = format!(
            "replicas must be a whole number from 1, not {:?}",
            form.replicas
        );
        return refused(StatusCode::UNPROCESSABLE_ENTITY, &why);
    };
    let deployment: ModelDeployment =
        match deployment_manifest(&job, &form.checkpoint, &deployment_name, replicas) {
            Ok((_, deployment)) => deployment,
            Err(why) => return refused(StatusCode::UNPROCESSABLE_ENTITY, &why),
        };
    let api: Api<ModelDeployment> = Api::namespaced(state.client.clone(), &namespace);
    let params = PostParams {
        field_manager: Some(CONSOLE_MANAGER.to_owned()),
        ..PostParams::default()
    };
    match api.create(&params, &deployment).await {
        Ok(_) => {}
        Err(kube::Error::Api(response)) if response.code == 409 => {
            let why = format!(
                "A ModelDeployment {namespace}/{deployment_name} is already there: name this one otherwise."
            );
            return refused(StatusCode::CONFLICT, &why);
        }
        Err(error) => return unavailable("creating a ModelDeployment", &error),
    }
    info!(viewer = viewer.name(), %namespace, job = %name, deployment = %deployment_name, "console action: deploy");
    let page = anneal_console::deployments::deployment_href(&namespace, &deployment_name);
    Redirect::to(&page).into_response()
}

#[derive(Deserialize)]
pub struct PublishForm {
    checkpoint: String,
    #[serde(default)]
    to: String,
    /// A checkbox: present when ticked.
    #[serde(default)]
    merge: Option<String>,
}

/// Adds a `spec.publish` entry: the operator saves the checkpoint once the job has
/// succeeded.
pub async fn publish_checkpoint(
    State(state): State<Arc<ConsoleState>>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
    Form(form): Form<PublishForm>,
) -> Response {
    let (viewer, job) =
        match acting_on(&state, &headers, &namespace, &name, |p| p.patch, "publish").await {
            Ok(found) => found,
            Err(response) => return response,
        };
    let merge = form.merge.is_some();
    let patch = match publish_patch(&job, &form.checkpoint, &form.to, merge) {
        Ok(patch) => patch,
        Err(why) => return refused(StatusCode::UNPROCESSABLE_ENTITY, &why),
    };
    let api: Api<FineTuneJob> = Api::namespaced(state.client.clone(), &namespace);
    let params = PatchParams {
        field_manager: Some(CONSOLE_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    match api.patch(&name, &params, &Patch::Merge(&patch)).await {
        Ok(_) => {}
        Err(kube::Error::Api(response)) if response.code == 409 => {
            let why = format!(
                "The FineTuneJob {namespace}/{name} changed since its page was read: reload it and publish again."
            );
            return refused(StatusCode::CONFLICT, &why);
        }
        Err(error) => return unavailable("patching a FineTuneJob", &error),
    }
    info!(viewer = viewer.name(), %namespace, %name, checkpoint = %form.checkpoint, to = %form.to.trim(), merge, "console action: publish");
    Redirect::to(&anneal_console::jobs::job_href(&namespace, &name)).into_response()
}
