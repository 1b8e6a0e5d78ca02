//! A cluster's ModelEvaluations as the console shows them: a row of the list, the
//! comparison table (each model's score for each metric, with its interval, from the
//! status), and the answers side by side (from the run's `report.json`). Pure: the
//! operator reads the objects and the report.

use anneal_crds::modelevaluation::{EvaluationPhase, ModelEvaluation, ModelResult};
use maud::{Markup, html};
use serde::Deserialize;

use crate::deployment_pages::cluster_nav;
use crate::pages::{page, page_watched};

/// The most samples the side-by-side table shows.
pub const SAMPLES_SHOWN: usize = 50;

/// One ModelEvaluation in the list.
#[derive(Clone, Debug, PartialEq)]
pub struct EvaluationRow {
    pub namespace: String,
    pub name: String,
    pub href: String,
    pub phase: Option<EvaluationPhase>,
    /// Answers scored so far, and in all.
    pub progress: Option<(u64, u64)>,
    pub best: Option<String>,
    pub message: Option<String>,
}

/// The list's row of `evaluation`.
pub fn evaluation_row(evaluation: &ModelEvaluation) -> EvaluationRow {
    let namespace = evaluation.metadata.namespace.clone().unwrap_or_default();
    let name = evaluation.metadata.name.clone().unwrap_or_default();
    let status = evaluation.status.clone().unwrap_or_default();
    EvaluationRow {
        href: format!("/evaluations/{namespace}/{name}"),
        phase: status.phase,
        progress: status.progress.map(|p| (p.answered, p.total)),
        best: status.best.map(|b| b.model),
        message: status.message,
        namespace,
        name,
    }
}

/// One held-out sample of `report.json` with each model's answer.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct ReportSample {
    pub prompt: Vec<ReportMessage>,
    #[serde(default)]
    pub reference: Option<String>,
    pub answers: Vec<ReportAnswer>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct ReportMessage {
    pub role: String,
    pub content: String,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct ReportAnswer {
    pub model: String,
    pub answer: String,
}

#[derive(Deserialize)]
struct ReportFile {
    samples: Vec<ReportSample>,
}

/// The first [`SAMPLES_SHOWN`] samples of a `report.json`, or why it could not be read.
pub fn report_samples(bytes: &[u8]) -> Result<Vec<ReportSample>, String> {
    let report: ReportFile =
        serde_json::from_slice(bytes).map_err(|error| format!("report.json: {error}"))?;
    Ok(report.samples.into_iter().take(SAMPLES_SHOWN).collect())
}

fn phase_name(phase: Option<EvaluationPhase>) -> String {
    phase.map_or("Pending".to_owned(), |p| format!("{p:?}"))
}

/// Every evaluation the viewer may list.
pub fn evaluations_page(rows: &[EvaluationRow]) -> Markup {
    let going = rows.iter().any(|r| {
        !matches!(
            r.phase,
            Some(EvaluationPhase::Succeeded | EvaluationPhase::Failed)
        )
    });
    page(
        "Evaluations",
        going,
        html! {
            (cluster_nav())
            h1 { "Evaluations" }
            @if rows.is_empty() {
                p { "No ModelEvaluation here. A " code { "ModelEvaluation" } " scores models on a held-out set." }
            } @else {
                div.scroll { table {
                    thead { tr { th { "Evaluation" } th { "Phase" } th { "Answered" } th { "Best" } } }
                    tbody {
                        @for row in rows {
                            tr {
                                td { a href=(row.href) { (row.namespace) "/" (row.name) } }
                                td {
                                    (phase_name(row.phase))
                                    @if let Some(message) = &row.message { br; span.muted { (message) } }
                                }
                                td { @if let Some((answered, total)) = row.progress { (answered) "/" (total) } @else { "-" } }
                                td { (row.best.as_deref().unwrap_or("-")) }
                            }
                        }
                    }
                } }
            }
        },
    )
}

/// An evaluation's page: where it stands, the comparison table, and the answers side
/// by side (`samples`, or why the report could not be read).
pub fn evaluation_page(
    evaluation: &ModelEvaluation,
    samples: &Result<Vec<ReportSample>, String>,
) -> Markup {
    let row = evaluation_row(evaluation);
    let status = evaluation.status.clone().unwrap_or_default();
    let title = format!("{}/{}", row.namespace, row.name);
    let going = !matches!(
        row.phase,
        Some(EvaluationPhase::Succeeded | EvaluationPhase::Failed)
    );
    let metrics: Vec<String> = (status.results.first())
        .map(|r| r.metrics.iter().map(|m| m.metric.clone()).collect())
        .unwrap_or_default();
    let models: Vec<String> = status.results.iter().map(|r| r.model.clone()).collect();
    page_watched(
        &title,
        going,
        None,
        html! {
            (cluster_nav())
            h1 { (title) }
            p {
                strong { (phase_name(row.phase)) }
                @if let Some(message) = &row.message { ": " (message) }
            }
            @if let Some((answered, total)) = row.progress { p { "Answered " (answered) " of " (total) "." } }
            h2 { "Scores" }
            @if status.results.is_empty() {
                p.muted { "No scores yet." }
            } @else {
                div.scroll { table {
                    thead { tr { th { "Model" } @for metric in &metrics { th { (metric) } } } }
                    tbody {
                        @for result in &status.results {
                            tr class=(if row.best.as_deref() == Some(result.model.as_str()) { "best" } else { "" }) {
                                th { (result.model) }
                                @for metric in &metrics { td { (score_cell(result, metric)) } }
                            }
                        }
                    }
                } }
                @if let Some(best) = &status.best { p { "Best for " (best.metric) ": " strong { (best.model) } } }
            }
            h2 { "Answers side by side" }
            @match samples {
                Err(why) => p.muted { "Not read: " (why) },
                Ok(samples) if samples.is_empty() => p.muted { "No answers yet." },
                Ok(samples) => div.scroll { table {
                    thead { tr { th { "Prompt" } th { "Reference" } @for model in &models { th { (model) } } } }
                    tbody {
                        @for sample in samples {
                            tr {
                                td.answer { (sample.prompt.last().map_or("", |m| m.content.as_str())) }
                                td.answer { (sample.reference.as_deref().unwrap_or("-")) }
                                @for model in &models {
                                    td.answer { (sample.answers.iter().find(|a| &a.model == model).map_or("-", |a| a.answer.as_str())) }
                                }
                            }
                        }
                    }
                } },
            }
        },
    )
}

fn score_cell(result: &ModelResult, metric: &str) -> Markup {
    match result.metrics.iter().find(|m| m.metric == metric) {
        Some(score) => html! {
            (format!("{:.4}", score.score)) " " span.muted { (format!("[{:.4}, {:.4}]", score.low, score.high)) }
        },
        None => html! { "-" },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evaluation() -> ModelEvaluation {
        serde_yaml_ng::from_str(
            r#"
apiVersion: anneal.dev/v1alpha1
kind: ModelEvaluation
metadata: {name: house-style, namespace: team-a}
spec:
  models:
    - {name: base, baseModel: {name: anneal-tiny, source: "s3://m"}}
    - {name: tuned, fineTuneJob: {name: story, checkpoint: best}}
  dataset: {uri: "s3://d/held-out.jsonl"}
  metrics: [{rougeL: {}}]
status:
  phase: Succeeded
  progress: {answered: 4, total: 4}
  results:
    - {model: base, metrics: [{metric: rougeL, score: 0.1, low: 0.05, high: 0.2}]}
    - {model: tuned, metrics: [{metric: rougeL, score: 0.6, low: 0.5, high: 0.7}]}
  best: {model: tuned, metric: rougeL, score: 0.6}
"#,
        )
        .unwrap()
    }

    #[test]
    fn the_page_compares_the_models_and_their_answers() {
        let report = br#"{"baseline": "base", "metrics": ["rougeL"], "models": [], "best": "tuned",
            "samples": [{"line": 1, "prompt": [{"role": "user", "content": "Bikes on trams?"}],
                "reference": "Good question! Yes.",
                "answers": [{"model": "base", "answer": "Maybe.", "scores": [0.1]},
                            {"model": "tuned", "answer": "Good question! <yes>", "scores": [0.6]}]}]}"#;
        let samples = report_samples(report);
        assert_eq!(
            samples.as_ref().unwrap()[0].answers[1].answer,
            "Good question! <yes>"
        );
        let html = evaluation_page(&evaluation(), &samples).into_string();
        assert!(
            html.contains("0.6000 <span class=\"muted\">[0.5000, 0.7000]</span>"),
            "{html}"
        );
        assert!(
            html.contains(r#"<tr class="best"><th>tuned</th>"#),
            "{html}"
        );
        assert!(html.contains("Good question! &lt;yes&gt;"), "{html}");
        assert!(html.contains("<th>base</th><th>tuned</th>"), "{html}");
        let unread = evaluation_page(&evaluation(), &Err("no report yet".into())).into_string();
        assert!(unread.contains("Not read: no report yet"));
        assert!(
            report_samples(b"{}")
                .unwrap_err()
                .starts_with("report.json: ")
        );
        let row = evaluation_row(&evaluation());
        assert_eq!(
            (row.progress, row.best.as_deref()),
            (Some((4, 4)), Some("tuned"))
        );
        assert!(
            evaluations_page(&[row])
                .into_string()
                .contains(r#"href="/evaluations/team-a/house-style""#)
        );
    }
}
