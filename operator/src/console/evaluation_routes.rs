//! The console's evaluation pages: the ModelEvaluations list, and an evaluation's
//! page with its comparison table (from its status) and the answers side by side
//! (from the `report.json` its pod wrote, read with its storage credentials under the
//! operator's rules for a team's storage). Each needs the viewer's `list` or `get`
//! on ModelEvaluations.

use std::sync::Arc;

use anneal_console::evaluations::{
    evaluation_page, evaluation_row, evaluations_page, report_samples,
};
use anneal_console::pages;
use anneal_crds::modelevaluation::ModelEvaluation;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use kube::api::ListParams;
use kube::{Api, ResourceExt};

use super::viewer::MODELEVALUATIONS;
use super::{
    ConsoleState, check_get, html_page, listable_namespaces, unavailable, viewer_of, watched,
};
use crate::modelevaluation::controller::read_run_file;

pub async fn evaluations_list(
    State(state): State<Arc<ConsoleState>>,
    headers: HeaderMap,
) -> Response {
    let viewer = match viewer_of(&state, &headers).await {
        Ok(viewer) => viewer,
        Err(response) => return response,
    };
    let api: Api<ModelEvaluation> = match &state.namespace {
        Some(namespace) => Api::namespaced(state.client.clone(), namespace),
        None => Api::all(state.client.clone()),
    };
    let mut evaluations = match api.list(&ListParams::default()).await {
        Ok(list) => list.items,
        Err(error) => return unavailable("listing ModelEvaluations", &error),
    };
    let present = evaluations.iter().filter_map(|e| e.namespace()).collect();
    let allowed = match listable_namespaces(&state, &viewer, MODELEVALUATIONS, present).await {
        Ok(allowed) => allowed,
        Err(error) => return unavailable("reviewing access", &error),
    };
    evaluations.retain(|e| e.namespace().is_some_and(|n| allowed.contains(&n)));
    evaluations.sort_by_key(|e| (e.namespace(), e.name_any()));
    let rows: Vec<_> = evaluations.iter().map(evaluation_row).collect();
    html_page(StatusCode::OK, evaluations_page(&rows))
}

pub async fn evaluation_detail(
    State(state): State<Arc<ConsoleState>>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let viewer = match viewer_of(&state, &headers).await {
        Ok(viewer) => viewer,
        Err(response) => return response,
    };
    if let Err(response) = check_get(&state, &viewer, MODELEVALUATIONS, &namespace, &name).await {
        return response;
    }
    let api: Api<ModelEvaluation> = Api::namespaced(state.client.clone(), &namespace);
    let found = if watched(&state, &namespace) {
        api.get_opt(&name).await
    } else {
        Ok(None)
    };
    let evaluation = match found {
        Ok(Some(evaluation)) => evaluation,
        Ok(None) => {
            let what = format!("There is no ModelEvaluation {namespace}/{name}.");
            return html_page(StatusCode::NOT_FOUND, pages::not_found(&what));
        }
        Err(error) => return unavailable("reading a ModelEvaluation", &error),
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
