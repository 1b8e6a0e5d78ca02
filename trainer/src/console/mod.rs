//! `trainer console`: the runs `trainer train` wrote, in a browser. A runs list and a
//! page per run (loss chart, checkpoints side by side with their sample answers, or
//! an image job's sample pictures, and scores, the log), rendered on the server from
//! the run folders each time a page is asked for (`anneal_console`), reloading every few
//! seconds while the run goes on; bound to loopback unless told otherwise. A run's
//! playground chats with its checkpoints through a `trainer serve` the console
//! starts ([`model_server`]); nothing else is written or started.

mod model_server;
mod playground_routes;
mod run_models;

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};

use anneal_console::chart_controls::StepQuery;
use anneal_console::pages;
use anneal_console::runs::{RunKey, list_runs, read_run};

use model_server::ModelServer;

/// What the routes share: the runs folder, and the playground's model server.
pub struct ConsoleState {
    root: PathBuf,
    server: ModelServer,
}

/// The console's routes over the runs folder `root`; `program` is this trainer,
/// started as `trainer serve` for the playground.
pub fn router(root: PathBuf, program: PathBuf) -> Router {
    let run = "/runs/{namespace}/{job}/{run}";
    Router::new()
        .route("/", get(runs_list))
        .route(run, get(run_detail))
        .route(
            &format!("{run}/samples/{{checkpoint}}/{{file}}"),
            get(sample_picture),
        )
        .route(
            &format!("{run}/playground"),
            get(playground_routes::playground_page).post(playground_routes::playground_form),
        )
        .route(&format!("{run}/chat"), post(playground_routes::chat_stream))
        .route(
            &format!("{run}/snippets"),
            post(playground_routes::request_snippets),
        )
        .route("/health", get(|| async { "ok" }))
        .with_state(Arc::new(ConsoleState {
            root,
            server: ModelServer::new(program),
        }))
}

async fn runs_list(State(state): State<Arc<ConsoleState>>) -> Response {
    let root = state.root.clone();
    let page = tokio::task::spawn_blocking(move || {
        let runs: Vec<_> = (list_runs(&root).iter())
            .filter_map(|key| read_run(&root, key))
            .collect();
        pages::runs_page(&root.display().to_string(), &runs)
    })
    .await;
    match page {
        Ok(page) => Html(page.into_string()).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn run_detail(
    State(state): State<Arc<ConsoleState>>,
    Path((namespace, job, run)): Path<(String, String, String)>,
    Query(steps): Query<StepQuery>,
) -> Response {
    let Some(key) = RunKey::from_segments(&namespace, &job, &run) else {
        let page = pages::not_found("A run is named by its namespace, job and run id.");
        return (StatusCode::NOT_FOUND, Html(page.into_string())).into_response();
    };
    let root = state.root.clone();
    let found = tokio::task::spawn_blocking(move || read_run(&root, &key)).await;
    match found {
        Ok(Some(summary)) => {
            Html(pages::run_page(&summary, None, &steps.window()).into_string()).into_response()
        }
        Ok(None) => {
            let page = pages::not_found(&format!("There is no run {namespace}/{job}/{run}."));
            (StatusCode::NOT_FOUND, Html(page.into_string())).into_response()
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// A sample picture of an image job's checkpoint: `sample-{n}.png` in the folder of a
/// checkpoint of a run, nothing else.
async fn sample_picture(
    State(state): State<Arc<ConsoleState>>,
    Path((namespace, job, run, checkpoint, file)): Path<(String, String, String, String, String)>,
) -> Response {
    let key = RunKey::from_segments(&namespace, &job, &run);
    let wanted = key.filter(|_| {
        RunKey::from_segments(&checkpoint, "-", "-").is_some() && pages::sample_picture(&file)
    });
    let Some(key) = wanted else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let path = key
        .folder(&state.root)
        .join("checkpoints")
        .join(checkpoint)
        .join(file);
    match tokio::task::spawn_blocking(move || std::fs::read(path)).await {
        Ok(Ok(bytes)) => ([(header::CONTENT_TYPE, "image/png")], bytes).into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}
