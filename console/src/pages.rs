//! The console's pages, rendered on the server (maud escapes every value): the runs
//! list, and a run's page with its loss chart, its checkpoints side by side (each
//! sample prompt's answers in a row, scores and validation loss above), and its log.
//! One small inline style sheet, small scripts of their own (following a live page,
//! zooming a chart by dragging; each page works without them) and no outside
//! request.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::chart::{StepWindow, metric_chart};
use crate::chart_controls::{SERIES_STYLE, loss_chart_with_series, zoom_form, zoom_script};
use crate::job_pages::job_details;
use crate::jobs::JobDetails;
use crate::runs::RunSummary;
use anneal_crds::events::LogLevel;
use anneal_crds::finetunejob::{CheckpointStatus, JobPhase};

const STYLE: &str = "
body{font-family:system-ui,sans-serif;margin:0;color:#111;background:#fafafa;overflow-wrap:anywhere}
header{background:#1e293b;color:#fff;padding:.6rem 1rem}
header a{color:#fff;text-decoration:none;font-weight:600}
main{padding:1rem;max-width:1400px;margin:auto}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{border:1px solid #ddd;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f1f5f9}
.scroll{overflow-x:auto}
.muted{color:#666}
.chart{width:100%;max-width:720px;height:auto;background:#fff;border:1px solid #ddd}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(280px,1fr));gap:1rem}
figure.metric{margin:0}
.best{background:#ecfdf5}
.answer{white-space:pre-wrap;min-width:14rem}
.log{font-family:ui-monospace,monospace;font-size:.85rem;white-space:pre-wrap;background:#fff;border:1px solid #ddd;padding:.5rem;max-height:24rem;overflow:auto}
.warn{color:#b45309}.error{color:#b91c1c}
.viewer{float:right}
button,select,textarea{font:inherit}
textarea,select,input{max-width:100%;box-sizing:border-box}
pre{white-space:pre-wrap}
a:focus,a:hover{outline:2px solid #2563eb}
";

/// Seconds between reloads of a page whose run is still going.
const REFRESH_SECONDS: u32 = 10;

pub(crate) fn page(title: &str, live: bool, body: Markup) -> Markup {
    page_watched(title, live, None, body)
}

/// A page that follows changes: with `watch` (a server-sent events route whose
/// `changed` events say the page's objects moved on) by fetching itself again in
/// place; without script or `watch`, while `live` (what it shows is still going),
/// by reloading every few seconds.
pub(crate) fn page_watched(title: &str, live: bool, watch: Option<&str>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if watch.is_some() {
                    @if live { noscript { meta http-equiv="refresh" content=(REFRESH_SECONDS); } }
                } @else if live {
                    meta http-equiv="refresh" content=(REFRESH_SECONDS);
                }
                title { (title) " - Anneal console" }
                style { (PreEscaped(STYLE)) (PreEscaped(SERIES_STYLE)) }
            }
            body data-watch=[watch] {
                header { a href="/" { "Anneal console" } }
                main { (body) }
                @if watch.is_some() { script { (PreEscaped(FOLLOW_SCRIPT)) } }
            }
        }
    }
}

/// Follows the page's object: on each `changed` event (at most one fetch a second)
/// the page is fetched again and its `main` put in place of this one's when it
/// differs, unless a field of a form has the focus (a viewer typing is not
/// interrupted).
const FOLLOW_SCRIPT: &str = r#"
(function () {
  var source = document.body.getAttribute('data-watch');
  if (!source || !window.EventSource || !window.DOMParser) return;
  var events = new EventSource(source);
  var due = false;
  events.addEventListener('changed', function () {
    if (due) return;
    due = true;
    setTimeout(function () {
      due = false;
      var active = document.activeElement;
      if (active && active.form) return;
      fetch(location.href).then(function (r) { return r.text(); }).then(function (html) {
        var fresh = new DOMParser().parseFromString(html, 'text/html').querySelector('main');
        var shown = document.querySelector('main');
        if (fresh && fresh.innerHTML !== shown.innerHTML) shown.replaceWith(fresh);
      });
    }, 1000);
  });
})();
"#;

/// Whether the run may still change: not yet ended.
fn going(summary: &RunSummary) -> bool {
    !matches!(
        summary.phase,
        Some(JobPhase::Succeeded | JobPhase::Failed | JobPhase::Cancelled)
    )
}

fn phase(summary: &RunSummary) -> String {
    summary
        .phase
        .map_or("Pending".to_owned(), |p| format!("{p:?}"))
}

pub(crate) fn last(series: &[(u64, f64)]) -> String {
    series
        .last()
        .map_or("-".to_owned(), |(_, loss)| format!("{loss:.4}"))
}

/// Every run in the runs folder, as a table.
pub fn runs_page(root: &str, runs: &[RunSummary]) -> Markup {
    page(
        "Runs",
        runs.iter().any(going),
        html! {
            h1 { "Runs" }
            p.muted { "In " code { (root) } ", newest run of each job first." }
            @if runs.is_empty() {
                p { "No runs yet: " code { "trainer train JOB.yaml" } " writes them here." }
            } @else {
                div.scroll { table {
                    thead { tr {
                        th { "Job" } th { "Run" } th { "Phase" } th { "Step" }
                        th { "Training loss" } th { "Validation loss" } th { "Best checkpoint" } th { "Started" }
                    } }
                    tbody {
                        @for (key, run) in runs.iter().filter_map(|r| Some((r.key.as_ref()?, r))) {
                            tr {
                                td { (key.namespace) "/" (key.job) }
                                td { a href=(key.href()) { (key.run) } }
                                td { (phase(run)) }
                                td { (run.step) "/" (run.total_steps) }
                                td { (last(&run.train_loss)) }
                                td { (last(&run.valid_loss)) }
                                td { (run.best_checkpoint.as_deref().unwrap_or("-")) }
                                td { (run.started.as_deref().unwrap_or("-")) }
                            }
                        }
                    }
                } }
            }
        },
    )
}

/// One run: where it stands, its losses (the charts zoomed to `window`), its
/// checkpoints side by side, its log; for a cluster's job, its conditions, Events
/// and manifest after them.
pub fn run_page(run: &RunSummary, details: Option<&JobDetails>, window: &StepWindow) -> Markup {
    let title = &run.title;
    let charted = run.within(window);
    let rows = run
        .checkpoints
        .iter()
        .map(|c| c.samples.len())
        .max()
        .unwrap_or(0)
        .max(run.sample_prompts.len());
    let metrics = evaluation_metrics(run);
    page_watched(
        title,
        going(run),
        run.watch.as_deref(),
        html! {
            @if details.is_some() { (crate::deployment_pages::cluster_nav()) }
            h1 { (title) }
            p {
                strong { (phase(run)) }
                @if let Some(message) = &run.message { ": " (message) }
            }
            ul {
                li { "Step " (run.step) " of " (run.total_steps) }
                @if let Some(base) = &run.base_model { li { "Base model: " (base) } }
                @if let Some(id) = &run.model_id { li { "Model id: " code { (id) } } }
                @if let Some(rate) = run.tokens_per_second { li { "Tokens/s (last step): " (format!("{rate:.1}")) } }
                @if let Some(best) = &run.best_checkpoint { li { "Best checkpoint: " strong { (best) } } }
                @if run.playground { li { a href=(format!("{}/playground", run.href)) { "Chat with its checkpoints" } } }
            }
            h2 { "Loss" }
            (zoom_form(&run.href, window))
            (loss_chart_with_series(&charted.train_loss, &charted.valid_loss))
            div.charts {
                (metric_chart("Learning rate", &charted.learning_rate))
                (metric_chart("Tokens per second", &charted.throughput))
                (metric_chart("Reward margin (DPO)", &charted.reward_margin))
                (metric_chart("Reward accuracy (DPO)", &charted.reward_accuracy))
            }
            (zoom_script())
            h2 { "Checkpoints" }
            @if run.checkpoints.is_empty() {
                p.muted { "No checkpoint yet." }
            } @else {
                div.scroll { table.checkpoints {
                    thead {
                        tr {
                            th { "" }
                            @for c in &run.checkpoints {
                                th class=(if run.best_checkpoint.as_deref() == Some(c.name.as_str()) { "best" } else { "" }) {
                                    (c.name) br; span.muted { "step " (c.step) ", epoch " (format!("{:.2}", c.epoch)) }
                                }
                            }
                        }
                    }
                    tbody {
                        @if run.playground {
                            tr {
                                th { "Playground" }
                                @for c in &run.checkpoints {
                                    td { a href=(format!("{}/playground?checkpoint={}", run.href, c.name)) { "Chat with " (c.name) } }
                                }
                            }
                        }
                        tr {
                            th { "Validation loss" }
                            @for c in &run.checkpoints {
                                td { (c.valid_loss.map_or("-".to_owned(), |l| format!("{l:.4}"))) }
                            }
                        }
                        @for metric in &metrics {
                            tr {
                                th { (metric) }
                                @for c in &run.checkpoints {
                                    td {
                                        @if let Some(s) = c.evaluation.iter().find(|s| &s.metric == metric) {
                                            (format!("{:.4}", s.score)) " " span.muted { (format!("[{:.4}, {:.4}]", s.low, s.high)) }
                                        } @else { "-" }
                                    }
                                }
                            }
                        }
                        @for row in 0..rows {
                            tr {
                                th.answer { (run.sample_prompts.get(row).map_or(format!("Sample {}", row + 1), Clone::clone)) }
                                @for c in &run.checkpoints {
                                    td.answer { (sample(&run.href, c, row)) }
                                }
                            }
                        }
                    }
                } }
            }
            h2 { "Log" }
            @if run.log.is_empty() {
                p.muted { "Nothing logged." }
            } @else {
                div.log {
                    @for line in &run.log {
                        @let class = match line.level { LogLevel::Info => "", LogLevel::Warn => "warn", LogLevel::Error => "error" };
                        div class=(class) { (line.time) " " (format!("{:?}", line.level).to_uppercase()) " " (line.message) }
                    }
                }
            }
            @if run.unreadable_lines > 0 {
                p.muted { (run.unreadable_lines) " lines of events.jsonl could not be read." }
            }
            @if let Some(details) = details { (job_details(details)) }
        },
    )
}

/// A checkpoint's `row`th sample: an answer, or for an image job its picture (a PNG
/// in the checkpoint's folder, served by the console).
fn sample(page: &str, checkpoint: &CheckpointStatus, row: usize) -> Markup {
    let Some(sample) = checkpoint.samples.get(row) else {
        return html! {};
    };
    let picture = picture_in_checkpoint(sample, &checkpoint.name);
    match picture {
        Some(file) => html! {
            img src=(format!("{page}/samples/{}/{file}", checkpoint.name))
                alt=(format!("sample {} of {}", row + 1, checkpoint.name)) width="256";
        },
        None => html! { (sample) },
    }
}

/// The file name of an image job's sample when `sample` is the URI of a picture in
/// the checkpoint's own folder (`{run}/checkpoints/{checkpoint}/sample-{n}.png`, on
/// any storage), and not an answer.
pub fn picture_in_checkpoint<'a>(sample: &'a str, checkpoint: &str) -> Option<&'a str> {
    let (folder, file) = sample.rsplit_once('/')?;
    let uri = sample.contains("://") && !sample.contains(char::is_whitespace);
    (uri && folder.ends_with(&format!("/checkpoints/{checkpoint}")) && sample_picture(file))
        .then_some(file)
}

/// Whether `file` is a sample picture's name (`sample-{n}.png`), the only files the
/// console serves from a checkpoint.
pub fn sample_picture(file: &str) -> bool {
    file.strip_prefix("sample-")
        .and_then(|rest| rest.strip_suffix(".png"))
        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
}

/// The metrics of `checkpoints.evaluation` the run's checkpoints were scored by, in
/// the order they first appear.
fn evaluation_metrics(run: &RunSummary) -> Vec<String> {
    let mut metrics: Vec<String> = Vec::new();
    for score in run.checkpoints.iter().flat_map(|c| &c.evaluation) {
        if !metrics.contains(&score.metric) {
            metrics.push(score.metric.clone());
        }
    }
    metrics
}

/// The page for a run that is not there.
pub fn not_found(what: &str) -> Markup {
    page(
        "Not found",
        false,
        html! {
            h1 { "Not found" }
            p { (what) }
            p { a href="/" { "Back to the list" } }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_checkpoints_own_sample_pngs_are_pictures() {
        let ckpt = "ckpt-4";
        for (sample, picture) in [
            (
                "file:///r/checkpoints/ckpt-4/sample-1.png",
                Some("sample-1.png"),
            ),
            (
                "s3://b/ns/job/uid/checkpoints/ckpt-4/sample-12.png",
                Some("sample-12.png"),
            ),
            ("s3://b/ns/job/uid/checkpoints/ckpt-3/sample-1.png", None),
            ("file:///r/checkpoints/ckpt-4/model.safetensors", None),
            ("file:///r/checkpoints/ckpt-4/sample-.png", None),
            ("see file:///r/checkpoints/ckpt-4/sample-1.png", None),
            ("/r/checkpoints/ckpt-4/sample-1.png", None),
            ("A plain answer.", None),
        ] {
            assert_eq!(picture_in_checkpoint(sample, ckpt), picture, "{sample}");
        }
    }
}
