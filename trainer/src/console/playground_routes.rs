//! `trainer console`'s playground routes for a run: its page (`GET …/playground`,
//! `?checkpoint=ckpt-N` picks the model), the form's whole answer (`POST
//! …/playground`), the page script's streamed answer (`POST …/chat`, JSON) and the
//! snippets of the same request (`POST …/snippets`, JSON). Answers come from the one
//! `trainer serve` the console keeps ([`ModelServer`]).

use std::sync::Arc;

use anneal_console::playground::{
    ChatSettings, Exchange, PlaygroundFields, chat_settings, default_settings,
};
use anneal_console::relay::{
    exchange_status, plain, same_origin, snippets, streamed_answer, whole_answer,
};
use anneal_console::run_playground::{ServerState, run_playground_page};
use anneal_console::runs::{RunKey, RunSummary, read_run};
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use super::ConsoleState;
use super::run_models::RunModels;

type RunPath = Path<(String, String, String)>;

/// The run a playground route is about, with its models, or the page saying why
/// there is none: no such run (404), or a run that cannot be tried here (the page
/// says why, 200 with no form).
async fn run_and_models(
    state: &ConsoleState,
    (namespace, job, run): (String, String, String),
) -> Result<(RunSummary, Result<RunModels, String>), Response> {
    let Some(key) = RunKey::from_segments(&namespace, &job, &run) else {
        return Err(not_found(
            "A run is named by its namespace, job and run id.",
        ));
    };
    let root = state.root.clone();
    let read = tokio::task::spawn_blocking(move || {
        let summary = read_run(&root, &key)?;
        Some((summary, RunModels::read(&root, &key)))
    })
    .await;
    match read {
        Ok(Some(found)) => Ok(found),
        Ok(None) => Err(not_found(&format!(
            "There is no run {namespace}/{job}/{run}."
        ))),
        Err(_) => Err(StatusCode::INTERNAL_SERVER_ERROR.into_response()),
    }
}

fn not_found(what: &str) -> Response {
    let page = anneal_console::pages::not_found(what);
    (StatusCode::NOT_FOUND, Html(page.into_string())).into_response()
}

/// What the page shows of the model server.
async fn server_state(state: &ConsoleState, models: &RunModels) -> ServerState {
    match state.server.current_address(models).await {
        Some(address) => ServerState::Serving(address),
        None => ServerState::NotStarted,
    }
}

async fn render(
    state: &ConsoleState,
    summary: &RunSummary,
    models: &Result<RunModels, String>,
    settings: &ChatSettings,
    exchange: &Exchange,
) -> Response {
    let page = match models {
        Ok(models) => {
            let server = server_state(state, models).await;
            run_playground_page(summary, &models.ids(), settings, exchange, &server, None)
        }
        Err(why) => run_playground_page(
            summary,
            &[],
            settings,
            exchange,
            &ServerState::NotStarted,
            Some(why),
        ),
    };
    (exchange_status(exchange), Html(page.into_string())).into_response()
}

#[derive(Deserialize, Debug, Default)]
pub struct PlaygroundQuery {
    /// `ckpt-N` or `final`: the model chosen first.
    #[serde(default)]
    checkpoint: Option<String>,
}

/// The playground page, its model chosen by `?checkpoint=` (else the newest).
pub async fn playground_page(
    State(state): State<Arc<ConsoleState>>,
    Path(path): RunPath,
    Query(query): Query<PlaygroundQuery>,
) -> Response {
    let (summary, models) = match run_and_models(&state, path).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let chosen = models.as_ref().ok().and_then(|models| {
        (query.checkpoint.as_deref())
            .and_then(|name| models.id_of_folder(name))
            .or_else(|| models.models.first().map(|m| m.id.as_str()))
            .map(str::to_owned)
    });
    let settings = default_settings(chosen.as_deref().unwrap_or(""));
    render(&state, &summary, &models, &settings, &Exchange::default()).await
}

/// The form's round trip: the whole answer in the page, the settings kept. Only
/// from the console's own page, as it may start a server.
pub async fn playground_form(
    State(state): State<Arc<ConsoleState>>,
    Path(path): RunPath,
    headers: HeaderMap,
    Form(fields): Form<PlaygroundFields>,
) -> Response {
    if !same_origin(&headers) {
        return from_elsewhere();
    }
    let (summary, models) = match run_and_models(&state, path).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let Ok(run_models) = &models else {
        return render(
            &state,
            &summary,
            &models,
            &fields.kept(),
            &Exchange::default(),
        )
        .await;
    };
    let (settings, exchange) = match chat_settings(&fields, &run_models.ids()) {
        Err(error) => (fields.kept(), Exchange::failed(error)),
        Ok(settings) => {
            let exchange = match state.server.address_for(run_models, &settings.model).await {
                Ok(address) => whole_answer(&address, &settings).await,
                Err(error) => Exchange::failed(error),
            };
            (settings, exchange)
        }
    };
    render(&state, &summary, &models, &settings, &exchange).await
}

/// The answer to a request from another site's page: each may start a server.
fn from_elsewhere() -> Response {
    plain(
        StatusCode::FORBIDDEN,
        "only the console's own pages may ask".into(),
    )
}

/// The run's models and the chat of a request the page's script sends (JSON), or
/// the plain-text answer refusing it, naming the field.
async fn scripted_request(
    state: &ConsoleState,
    path: (String, String, String),
    headers: &HeaderMap,
    fields: Result<Json<PlaygroundFields>, JsonRejection>,
) -> Result<(RunModels, ChatSettings), Response> {
    if !same_origin(headers) {
        return Err(from_elsewhere());
    }
    let (_, models) = run_and_models(state, path).await?;
    let models = models.map_err(|why| plain(StatusCode::UNPROCESSABLE_ENTITY, why))?;
    let Json(fields) =
        fields.map_err(|rejection| plain(rejection.status(), rejection.body_text()))?;
    let settings = chat_settings(&fields, &models.ids())
        .map_err(|error| plain(StatusCode::UNPROCESSABLE_ENTITY, error))?;
    Ok((models, settings))
}

/// The page's script's request: the answer streamed as the server sends it, after
/// the server for the chosen model is up. JSON only, and only from the console's own
/// pages.
pub async fn chat_stream(
    State(state): State<Arc<ConsoleState>>,
    Path(path): RunPath,
    headers: HeaderMap,
    fields: Result<Json<PlaygroundFields>, JsonRejection>,
) -> Response {
    let (models, settings) = match scripted_request(&state, path, &headers, fields).await {
        Ok(request) => request,
        Err(response) => return response,
    };
    let address = state.server.address_for(&models, &settings.model).await;
    streamed_answer(address, &settings).await
}

/// The `curl` and OpenAI SDK code of the request, against the running server.
pub async fn request_snippets(
    State(state): State<Arc<ConsoleState>>,
    Path(path): RunPath,
    headers: HeaderMap,
    fields: Result<Json<PlaygroundFields>, JsonRejection>,
) -> Response {
    let (models, settings) = match scripted_request(&state, path, &headers, fields).await {
        Ok(request) => request,
        Err(response) => return response,
    };
    let endpoint = server_state(&state, &models).await.endpoint();
    snippets(&endpoint, &settings)
}
