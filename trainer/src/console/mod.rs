//! `trainer console`: the runs `trainer train` wrote, in a browser. A runs list and a
//! page per run (loss chart, checkpoints side by side with their sample answers and
//! scores, the log), rendered on the server from the run folders each time a page is
//! asked for ([`runs`]); read-only, and bound to loopback unless told otherwise.

pub mod chart;
pub mod pages;
pub mod runs;

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use runs::{RunKey, list_runs, read_run};

/// The console's routes over the runs folder `root`.
pub fn router(root: PathBuf) -> Router {
    Router::new()
        .route("/", get(runs_list))
        .route("/runs/{namespace}/{job}/{run}", get(run_detail))
        .route("/health", get(|| async { "ok" }))
        .with_state(Arc::new(root))
}

async fn runs_list(State(root): State<Arc<PathBuf>>) -> Response {
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
    State(root): State<Arc<PathBuf>>,
    Path((namespace, job, run)): Path<(String, String, String)>,
) -> Response {
    let Some(key) = RunKey::from_segments(&namespace, &job, &run) else {
        let page = pages::not_found("A run is named by its namespace, job and run id.");
        return (StatusCode::NOT_FOUND, Html(page.into_string())).into_response();
    };
    let found = tokio::task::spawn_blocking(move || read_run(&root, &key)).await;
    match found {
        Ok(Some(summary)) => Html(pages::run_page(&summary).into_string()).into_response(),
        Ok(None) => {
            let page = pages::not_found(&format!("There is no run {namespace}/{job}/{run}."));
            (StatusCode::NOT_FOUND, Html(page.into_string())).into_response()
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
