//! The console's deployment pages: the ModelDeployments list, a deployment's page,
//! and its playground. The playground's requests go from the console to the
//! deployment's server (its Service), so a browser outside the cluster can chat with
//! it: as a form the console answers whole, or as JSON whose answer streams back as
//! the server's `text/event-stream`. Each needs `get` on the ModelDeployment.

use std::sync::Arc;
use std::time::Duration;

use anneal_console::deployment_pages::{self, deployments_page};
use anneal_console::deployments::{deployment_row, served_models};
use anneal_console::playground::{
    ChatSettings, Exchange, PlaygroundFields, chat_settings, default_settings,
};
use anneal_console::relay::{exchange_status, plain, snippets, streamed_answer, whole_answer};
use anneal_crds::ModelDeployment;
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::Value;

use super::viewer::MODELDEPLOYMENTS;
use super::{ConsoleState, html_page, listed, viewed, viewer_of};

/// The longest the console waits for a server's model list.
const MODELS_TIMEOUT: Duration = Duration::from_secs(3);
/// Why a deployment without an endpoint cannot answer.
const NOT_SERVING: &str = "the deployment has no endpoint yet: it is not serving";

pub async fn deployments_list(
    State(state): State<Arc<ConsoleState>>,
    headers: HeaderMap,
) -> Response {
    let viewer = match viewer_of(&state, &headers).await {
        Ok(viewer) => viewer,
        Err(response) => return response,
    };
    let deployments: Vec<ModelDeployment> = match listed(&state, &viewer, MODELDEPLOYMENTS).await {
        Ok(deployments) => deployments,
        Err(response) => return response,
    };
    let rows: Vec<_> = deployments.iter().map(deployment_row).collect();
    html_page(StatusCode::OK, deployments_page(&rows))
}

/// The deployment the viewer asked for, or the answer refusing them.
async fn viewed_deployment(
    state: &ConsoleState,
    headers: &HeaderMap,
    namespace: &str,
    name: &str,
) -> Result<ModelDeployment, Response> {
    let (_, deployment) = viewed(state, headers, MODELDEPLOYMENTS, namespace, name).await?;
    Ok(deployment)
}

/// The models the deployment's server lists, else the one its status names.
async fn models_of(state: &ConsoleState, deployment: &ModelDeployment) -> Vec<String> {
    let listing = match (state.serving_address)(deployment) {
        Some(address) => {
            let request = reqwest::Client::new()
                .get(format!("{address}/v1/models"))
                .timeout(MODELS_TIMEOUT)
                .send();
            match request.await {
                Ok(response) if response.status().is_success() => response
                    .bytes()
                    .await
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Value>(&b).ok()),
                _ => None,
            }
        }
        None => None,
    };
    served_models(deployment, listing.as_ref())
}

pub async fn deployment_page(
    State(state): State<Arc<ConsoleState>>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let deployment = match viewed_deployment(&state, &headers, &namespace, &name).await {
        Ok(deployment) => deployment,
        Err(response) => return response,
    };
    let models = models_of(&state, &deployment).await;
    let settings = default_settings(models.first().map_or("", String::as_str));
    let page = deployment_page_markup(&deployment, &models, &settings, &Exchange::default());
    html_page(StatusCode::OK, page)
}

fn deployment_page_markup(
    deployment: &ModelDeployment,
    models: &[String],
    settings: &ChatSettings,
    exchange: &Exchange,
) -> maud::Markup {
    deployment_pages::deployment_page(&deployment_row(deployment), models, settings, exchange)
}

/// The form's round trip: the whole answer in the page, the settings kept.
pub async fn playground_form(
    State(state): State<Arc<ConsoleState>>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
    Form(fields): Form<PlaygroundFields>,
) -> Response {
    let deployment = match viewed_deployment(&state, &headers, &namespace, &name).await {
        Ok(deployment) => deployment,
        Err(response) => return response,
    };
    let models = models_of(&state, &deployment).await;
    let (settings, exchange) = match chat_settings(&fields, &models) {
        Err(error) => (fields.kept(), Exchange::failed(error)),
        Ok(settings) => {
            let exchange = match (state.serving_address)(&deployment) {
                Some(address) => whole_answer(&address, &settings).await,
                None => Exchange::failed(NOT_SERVING.to_owned()),
            };
            (settings, exchange)
        }
    };
    let page = deployment_page_markup(&deployment, &models, &settings, &exchange);
    html_page(exchange_status(&exchange), page)
}

/// The deployment and the chat of a request the page's script sends (JSON), or the
/// answer refusing it: the viewer may not get the deployment, the body is not JSON,
/// or a field is out of range (named, as plain text for the script to show).
async fn scripted_request(
    state: &ConsoleState,
    headers: &HeaderMap,
    namespace: &str,
    name: &str,
    fields: Result<Json<PlaygroundFields>, JsonRejection>,
) -> Result<(ModelDeployment, ChatSettings), Response> {
    let deployment = viewed_deployment(state, headers, namespace, name).await?;
    let Json(fields) =
        fields.map_err(|rejection| plain(rejection.status(), rejection.body_text()))?;
    let models = models_of(state, &deployment).await;
    let settings = chat_settings(&fields, &models)
        .map_err(|error| plain(StatusCode::UNPROCESSABLE_ENTITY, error))?;
    Ok((deployment, settings))
}

/// The page's script's request: the answer streamed back as the server sends it
/// (`data: {chunk}` lines). Only JSON is taken, so another site's page cannot send
/// it without the browser asking the console first (which it does not allow).
pub async fn chat_stream(
    State(state): State<Arc<ConsoleState>>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
    fields: Result<Json<PlaygroundFields>, JsonRejection>,
) -> Response {
    let (deployment, settings) =
        match scripted_request(&state, &headers, &namespace, &name, fields).await {
            Ok(request) => request,
            Err(response) => return response,
        };
    let address = (state.serving_address)(&deployment).ok_or_else(|| NOT_SERVING.to_owned());
    streamed_answer(address, &settings).await
}

/// The `curl` and OpenAI SDK code of the playground's request, for the page's script.
pub async fn request_snippets(
    State(state): State<Arc<ConsoleState>>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
    fields: Result<Json<PlaygroundFields>, JsonRejection>,
) -> Response {
    let (deployment, settings) =
        match scripted_request(&state, &headers, &namespace, &name, fields).await {
            Ok(request) => request,
            Err(response) => return response,
        };
    let endpoint = deployment_row(&deployment)
        .endpoint
        .unwrap_or_else(|| "http://SERVICE:8000/v1".to_owned());
    snippets(&endpoint, &settings)
}
