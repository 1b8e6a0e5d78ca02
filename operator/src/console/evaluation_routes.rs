//! The console's evaluation pages: the ModelEvaluations list, and an evaluation's
//! page with its comparison table (from its status) and the answers side by side
//! (from the `report.json` its pod wrote, read with its storage credentials under the
//! operator's rules for a team's storage). Each needs the viewer's `list` or `get`
//! on ModelEvaluations.

use std::sync::Arc;

use anneal_console::evaluations::{
    evaluation_page, evaluation_row, evaluations_page, report_samples,
};
use anneal_crds::modelevaluation::ModelEvaluation;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::viewer::MODELEVALUATIONS;
use super::{ConsoleState, html_page, listed, viewed, viewer_of};
use crate::modelevaluation::controller::read_run_file;

pub async fn evaluations_list(
    State(state): State<Arc<ConsoleState>>,
    headers: HeaderMap,
) -> Response {
    let viewer = match viewer_of(&state, &headers).await {
        Ok(viewer) => viewer,
        Err(response) => return response,
    };
    let evaluations: Vec<ModelEvaluation> = match listed(&state, &viewer, MODELEVALUATIONS).await {
        Ok(evaluations) => evaluations,
        Err(response) => return response,
    };
    let rows: Vec<_> = evaluations.iter().map(evaluation_row).collect();
    html_page(StatusCode::OK, evaluations_page(&rows))
}

pub async fn evaluation_detail(
    State(state): State<Arc<ConsoleState>>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let viewed = viewed::<ModelEvaluation>(&state, &headers, MODELEVALUATIONS, &namespace, &name);
    let evaluation = match viewed.await {
        Ok((_, evaluation)) => evaluation,
        Err(response) => return response,
    };
    let report_uri = evaluation
        .status
        .as_ref()
        .and_then(|s| s.report_uri.clone());
    let samples = match report_uri {
        None => Err("the evaluation has written no report yet".to_owned()),
        Some(uri) => {
            let read = read_run_file(
                &evaluation,
                &uri,
                "report.json",
                &state.client,
                &state.config,
            );
            match read.await {
                Ok(Some(bytes)) => report_samples(&bytes),
                Ok(None) => Err(format!("{uri}/report.json could not be read")),
                Err(error) => Err(error.to_string()),
            }
        }
    };
    html_page(StatusCode::OK, evaluation_page(&evaluation, &samples))
}
