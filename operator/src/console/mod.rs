//! The operator's console (`--console-listen`): the cluster's FineTuneJobs and
//! ModelDeployments in a browser, with the same run pages `trainer console` shows for
//! local runs (the `anneal-console` crate). A jobs list filtered by namespace and
//! phase and a page per job ([`job_routes`]: where it stands, its loss curve, its
//! checkpoints' answers side by side, its log, conditions, Events and manifest); a
//! deployments list and a page per deployment with a playground that chats with
//! what it serves ([`deployment_routes`]); the evaluations list and a page per
//! evaluation comparing its models ([`evaluation_routes`]). Everything is read when a page is asked
//! for; nothing is kept.
//!
//! It changes nothing in the cluster and shows no Secret. Without sign-in it shows
//! what the operator sees, and the chart binds it to the pod's loopback, so that only
//! who may `kubectl port-forward` into the operator's namespace reaches it; with
//! sign-in ([`viewer`], [`sign_in_routes`]) each viewer sees what they may read
//! themselves. Every replica serves it (the log lines come from the leader's report
//! endpoint; a follower shows the log events the run copied to storage).

pub mod deployment_routes;
pub mod evaluation_routes;
pub mod job_actions;
pub mod job_plan;
pub mod job_routes;
pub mod job_sources;
pub mod live;
pub mod sign_in_routes;
pub mod viewer;

use std::sync::{Arc, OnceLock};

use anneal_console::job_pages::refused_page;
use anneal_console::pages;
use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use kube::Client;
use tracing::warn;

use crate::config::OperatorConfig;
use crate::finetunejob::kube_report::KubeReportCluster;
use crate::report::ReportState;
use viewer::{AuthSettings, ConsoleAuth, Identified, Viewer, identify, may};

/// What every console request reads with.
#[derive(Clone)]
pub struct ConsoleState {
    pub client: Client,
    pub config: OperatorConfig,
    /// The watched namespace; `None`: all.
    pub namespace: Option<String>,
    /// The report endpoint, once this replica leads.
    pub reports: Arc<OnceLock<ReportState<KubeReportCluster>>>,
    pub auth: AuthSettings,
    /// Where a ModelDeployment's server answers (`http://HOST:PORT`), from the
    /// deployment; by default its Service, as `status.endpoint` names it.
    pub serving_address: ServingAddress,
    /// Turns true when the operator stops: the live pages' streams end, so that the
    /// server's graceful shutdown does not wait on them.
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

/// How the console is set up: who its viewers are, and where deployments answer.
#[derive(Clone)]
pub struct ConsoleSettings {
    pub auth: AuthSettings,
    pub serving_address: ServingAddress,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        Self {
            auth: AuthSettings::default(),
            serving_address: service_address(),
        }
    }
}

impl std::fmt::Debug for ConsoleSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleSettings")
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

/// Where a deployment's server answers, or `None` when it has no endpoint yet.
pub type ServingAddress =
    Arc<dyn Fn(&anneal_crds::ModelDeployment) -> Option<String> + Send + Sync>;

/// The deployment's Service, from its `status.endpoint` (`http://NAME.NS.svc:8000/v1`).
pub fn service_address() -> ServingAddress {
    Arc::new(|deployment| {
        let endpoint = deployment.status.as_ref()?.endpoint.clone()?;
        Some(
            endpoint
                .trim_end_matches('/')
                .trim_end_matches("/v1")
                .to_owned(),
        )
    })
}

/// The console's routes.
pub fn console_router(state: ConsoleState) -> Router {
    Router::new()
        .route("/", get(job_routes::jobs_list))
        .route("/watch", get(live::jobs_changes))
        .route("/jobs/{namespace}/{name}", get(job_routes::job_page))
        .route("/jobs/{namespace}/{name}/watch", get(live::job_changes))
        .route(
            "/jobs/{namespace}/{name}/samples/{checkpoint}/{file}",
            get(job_routes::job_sample_picture),
        )
        .route(
            "/jobs/{namespace}/{name}/suspend",
            post(job_actions::suspend_job),
        )
        .route(
            "/jobs/{namespace}/{name}/delete",
            post(job_actions::delete_job),
        )
        .route(
            "/jobs/{namespace}/{name}/deploy",
            post(job_actions::deploy_checkpoint),
        )
        .route(
            "/jobs/{namespace}/{name}/publish",
            post(job_actions::publish_checkpoint),
        )
        .route("/deployments", get(deployment_routes::deployments_list))
        .route(
            "/deployments/{namespace}/{name}",
            get(deployment_routes::deployment_page),
        )
        .route(
            "/deployments/{namespace}/{name}/playground",
            post(deployment_routes::playground_form),
        )
        .route(
            "/deployments/{namespace}/{name}/chat",
            post(deployment_routes::chat_stream),
        )
        .route(
            "/deployments/{namespace}/{name}/snippets",
            post(deployment_routes::request_snippets),
        )
        .route("/evaluations", get(evaluation_routes::evaluations_list))
        .route(
            "/evaluations/{namespace}/{name}",
            get(evaluation_routes::evaluation_detail),
        )
        .route(
            "/login",
            get(sign_in_routes::sign_in).post(sign_in_routes::sign_in_with_token),
        )
        .route("/logout", post(sign_in_routes::sign_out))
        .route("/health", get(|| async { "ok" }))
        .with_state(Arc::new(state))
}

pub(crate) fn html_page(status: StatusCode, markup: maud::Markup) -> Response {
    let headers = [(header::CACHE_CONTROL, "no-store")];
    (status, headers, Html(markup.into_string())).into_response()
}

pub(crate) fn unavailable(what: &str, error: &kube::Error) -> Response {
    warn!(%error, "console: {what}");
    let page = pages::not_found(&format!("The Kubernetes API did not answer: {error}"));
    html_page(StatusCode::SERVICE_UNAVAILABLE, page)
}

/// The request's viewer, or the answer for one who is not signed in (sent to sign
/// in) or not accepted.
pub(crate) async fn viewer_of(
    state: &ConsoleState,
    headers: &HeaderMap,
) -> Result<Viewer, Response> {
    match identify(&state.auth, headers, &state.client).await {
        Identified::Viewer(viewer) => Ok(viewer),
        Identified::SignIn => Err(Redirect::to("/login").into_response()),
        Identified::Refused(why) => {
            let sign_in = state.auth.mode == ConsoleAuth::Token;
            Err(html_page(
                StatusCode::UNAUTHORIZED,
                refused_page(&why, sign_in),
            ))
        }
    }
}

/// The namespaces among `namespaces` where the viewer may list `resource`: all of
/// them when they may list it in every namespace (and the console watches all).
pub(crate) async fn listable_namespaces(
    state: &ConsoleState,
    viewer: &Viewer,
    resource: &str,
    mut namespaces: Vec<String>,
) -> kube::Result<Vec<String>> {
    namespaces.sort();
    namespaces.dedup();
    let cluster_wide = state.namespace.is_none();
    if !matches!(viewer, Viewer::User(_))
        || (cluster_wide && may(&state.client, viewer, "list", resource, None, None).await?)
    {
        return Ok(namespaces);
    }
    let mut allowed = Vec::new();
    for namespace in namespaces {
        if may(
            &state.client,
            viewer,
            "list",
            resource,
            Some(&namespace),
            None,
        )
        .await?
        {
            allowed.push(namespace);
        }
    }
    Ok(allowed)
}

/// Whether the viewer may get `resource` `namespace/name`, or the answer refusing
/// them (asked before the object is read: a refusal says nothing of whether it is
/// there).
pub(crate) async fn check_get(
    state: &ConsoleState,
    viewer: &Viewer,
    resource: &str,
    namespace: &str,
    name: &str,
) -> Result<(), Response> {
    match may(
        &state.client,
        viewer,
        "get",
        resource,
        Some(namespace),
        Some(name),
    )
    .await
    {
        Ok(true) => Ok(()),
        Ok(false) => {
            let who = viewer.name().unwrap_or("you");
            let kind = match resource {
                viewer::MODELDEPLOYMENTS => "ModelDeployment",
                viewer::MODELEVALUATIONS => "ModelEvaluation",
                _ => "FineTuneJob",
            };
            let why = format!("{who} may not get the {kind} {namespace}/{name}.");
            Err(html_page(StatusCode::FORBIDDEN, refused_page(&why, false)))
        }
        Err(error) => Err(unavailable("reviewing access", &error)),
    }
}

/// The `K` objects the console watches that the viewer may list (`resource`, its
/// plural), ordered by namespace and name; or the answer when the API does not
/// answer.
pub(crate) async fn listed<K>(
    state: &ConsoleState,
    viewer: &Viewer,
    resource: &str,
) -> Result<Vec<K>, Response>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: kube::Api<K> = match &state.namespace {
        Some(namespace) => kube::Api::namespaced(state.client.clone(), namespace),
        None => kube::Api::all(state.client.clone()),
    };
    let listing = api.list(&kube::api::ListParams::default()).await;
    let mut objects = listing
        .map_err(|error| unavailable(&format!("listing {resource}"), &error))?
        .items;
    let present = objects
        .iter()
        .filter_map(|o| o.meta().namespace.clone())
        .collect();
    let allowed = listable_namespaces(state, viewer, resource, present)
        .await
        .map_err(|error| unavailable("reviewing access", &error))?;
    objects.retain(|o| {
        o.meta()
            .namespace
            .as_ref()
            .is_some_and(|n| allowed.contains(n))
    });
    objects.sort_by_key(|o| (o.meta().namespace.clone(), o.meta().name.clone()));
    Ok(objects)
}

/// The `K` object `namespace/name` the viewer asked for (`resource`, its plural; `kind`
/// for messages), or the answer when they may not get it (asked before it is read: a
/// refusal says nothing of whether it is there), it is not there, or not in the
/// watched namespace.
pub(crate) async fn viewed<K>(
    state: &ConsoleState,
    headers: &HeaderMap,
    resource: &str,
    namespace: &str,
    name: &str,
) -> Result<(Viewer, K), Response>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let viewer = viewer_of(state, headers).await?;
    check_get(state, &viewer, resource, namespace, name).await?;
    let api: kube::Api<K> = kube::Api::namespaced(state.client.clone(), namespace);
    let found = if watched(state, namespace) {
        api.get_opt(name).await
    } else {
        Ok(None)
    };
    let kind = K::kind(&());
    match found {
        Ok(Some(object)) => Ok((viewer, object)),
        Ok(None) => {
            let page = pages::not_found(&format!("There is no {kind} {namespace}/{name}."));
            Err(html_page(StatusCode::NOT_FOUND, page))
        }
        Err(error) => Err(unavailable(&format!("reading a {kind}"), &error)),
    }
}

/// Whether the console shows `namespace` at all (it watches one, or all).
pub(crate) fn watched(state: &ConsoleState, namespace: &str) -> bool {
    state.namespace.as_deref().is_none_or(|n| n == namespace)
}
