//! The pages only a cluster console has: the FineTuneJobs list with its namespace
//! and phase filters (a plain GET form: no script), and a job's conditions, Events
//! and manifest below its run.

use maud::{Markup, html};

use crate::actions::{PUBLISH_EXAMPLE, patch_yaml, suspend_patch};
use crate::jobs::{JobActions, JobDetails, JobRow};
use crate::pages::{page, page_watched};
use anneal_crds::finetunejob::JobEstimate;
use anneal_crds::finetunejob::JobPhase;

/// The phases the filter offers, in the order a job goes through them.
pub const PHASES: [&str; 8] = [
    "Pending",
    "Validating",
    "Queued",
    "Running",
    "Succeeded",
    "Failed",
    "Suspended",
    "Cancelled",
];

/// What the jobs list is narrowed to (`?namespace=&phase=`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobFilter {
    pub namespace: Option<String>,
    pub phase: Option<String>,
}

impl JobFilter {
    /// Whether `row` is shown.
    pub fn admits(&self, row: &JobRow) -> bool {
        let namespace = self.namespace.as_deref().is_none_or(|n| n == row.namespace);
        let phase = self
            .phase
            .as_deref()
            .is_none_or(|p| p == phase_name(row.phase));
        namespace && phase
    }
}

fn phase_name(phase: Option<JobPhase>) -> String {
    phase.map_or("Pending".to_owned(), |p| format!("{p:?}"))
}

fn loss(value: Option<f64>) -> String {
    value.map_or("-".to_owned(), |v| format!("{v:.4}"))
}

/// Every job the console may list (`rows`), narrowed by `filter`; `namespaces` are
/// the filter's choices; `viewer` the signed-in user, if there is sign-in.
pub fn jobs_page(
    rows: &[JobRow],
    filter: &JobFilter,
    namespaces: &[String],
    viewer: Option<&str>,
) -> Markup {
    let shown: Vec<&JobRow> = rows.iter().filter(|r| filter.admits(r)).collect();
    let going = shown.iter().any(|r| {
        !matches!(
            r.phase,
            Some(JobPhase::Succeeded | JobPhase::Failed | JobPhase::Cancelled)
        )
    });
    page_watched(
        "Fine-tuning jobs",
        going,
        Some("/watch"),
        html! {
            (crate::deployment_pages::cluster_nav())
            h1 { "Fine-tuning jobs" }
            @if let Some(viewer) = viewer {
                form.viewer method="post" action="/logout" {
                    "Signed in as " strong { (viewer) } ", seeing the jobs you may list. "
                    button type="submit" { "Sign out" }
                }
            }
            form method="get" action="/" {
                label { "Namespace "
                    select name="namespace" {
                        option value="" selected[filter.namespace.is_none()] { "all" }
                        @for namespace in namespaces {
                            option value=(namespace) selected[filter.namespace.as_deref() == Some(namespace.as_str())] { (namespace) }
                        }
                    }
                }
                " "
                label { "Phase "
                    select name="phase" {
                        option value="" selected[filter.phase.is_none()] { "all" }
                        @for phase in PHASES {
                            option value=(phase) selected[filter.phase.as_deref() == Some(phase)] { (phase) }
                        }
                    }
                }
                " "
                button type="submit" { "Show" }
            }
            @if shown.is_empty() {
                p { "No FineTuneJob here. " code { "kubectl apply -f job.yaml" } " starts one." }
            } @else {
                div.scroll { table {
                    thead { tr {
                        th { "Job" } th { "Phase" } th { "Model" } th { "Method" } th { "Step" }
                        th { "Training loss" } th { "Validation loss" } th { "Best checkpoint" } th { "Created" }
                    } }
                    tbody {
                        @for row in &shown {
                            tr {
                                td { a href=(row.href) { (row.namespace) "/" (row.name) } }
                                td {
                                    (phase_name(row.phase))
                                    @if let Some(message) = &row.message { br; span.muted { (message) } }
                                }
                                td { (row.base_model) }
                                td { (row.method) }
                                td { (row.step) "/" (row.total_steps) }
                                td { (loss(row.train_loss)) }
                                td { (loss(row.valid_loss)) }
                                td { (row.best_checkpoint.as_deref().unwrap_or("-")) }
                                td { (row.created.as_deref().unwrap_or("-")) }
                            }
                        }
                    }
                } }
            }
            p.muted { (shown.len()) " of " (rows.len()) " jobs shown. Read-only: the console changes nothing." }
        },
    )
}

/// The sign-in page: a Kubernetes token, checked by the API server.
pub fn sign_in_page(error: Option<&str>) -> Markup {
    page(
        "Sign in",
        false,
        html! {
            h1 { "Sign in" }
            @if let Some(error) = error { p.error { (error) } }
            p { "Paste a Kubernetes token. The console shows the FineTuneJobs it lets you list, nothing more." }
            form method="post" action="/login" {
                label for="token" { "Token" }
                br;
                textarea id="token" name="token" rows="4" cols="60" autocomplete="off" required {}
                br;
                button type="submit" { "Sign in" }
            }
            p.muted {
                "A token of your own: the one in your kubeconfig, or "
                code { "kubectl create token SERVICE_ACCOUNT -n NAMESPACE" }
                ". It is kept in this browser as a cookie only the console reads."
            }
        },
    )
}

/// A page refusing what the viewer asked, and why.
pub fn refused_page(why: &str, sign_in: bool) -> Markup {
    page(
        "Not allowed",
        false,
        html! {
            h1 { "Not allowed" }
            p { (why) }
            @if sign_in { p { a href="/login" { "Sign in" } } }
            p { a href="/" { "Back to the list" } }
        },
    )
}

/// The forms of the actions the viewer may take, each with what it applies.
fn job_actions(actions: &JobActions) -> Markup {
    let permitted = actions.permitted;
    html! {
        h2 { "Actions" }
        @if let Some(outcome) = &actions.outcome { p.warn #outcome { (outcome) } }
        @if !permitted.any() {
            p.muted { "You may not change this job." }
        }
        @if permitted.patch {
            form method="post" action=(format!("{}/suspend", actions.href)) {
                input type="hidden" name="suspend" value=(!actions.suspended);
                button type="submit" { @if actions.suspended { "Resume" } @else { "Suspend" } }
                " "
                details { summary { "What it applies" }
                    pre.log { "kubectl patch finetunejob " (actions.name) " --type merge -p -
    " (patch_yaml(&suspend_patch(!actions.suspended))) }
                }
            }
        }
        @if permitted.deploy && !actions.checkpoints.is_empty() {
            form method="post" action=(format!("{}/deploy", actions.href)) {
                label { "Deploy checkpoint "
                    select name="checkpoint" {
                        @for checkpoint in &actions.checkpoints { option value=(checkpoint) { (checkpoint) } }
                    }
                }
                " "
                label { "as " input name="name" placeholder=(format!("{}-CHECKPOINT", actions.name)) size="24"; }
                " "
                label { "replicas " input name="replicas" type="number" min="1" max="16" value="1"; }
                " "
                button type="submit" { "Deploy" }
                @if let Some(preview) = &actions.deployment_preview {
                    details { summary { "What it applies" } pre.log { (preview) } }
                }
            }
        }
        @if permitted.patch && !actions.checkpoints.is_empty() {
            form method="post" action=(format!("{}/publish", actions.href)) {
                label { "Publish checkpoint "
                    select name="checkpoint" {
                        @for checkpoint in &actions.checkpoints { option value=(checkpoint) { (checkpoint) } }
                    }
                }
                " "
                label { "to " input name="to" placeholder=(PUBLISH_EXAMPLE) size="32" required; }
                " "
                label { input type="checkbox" name="merge" value="true"; " merged into the base model" }
                " "
                button type="submit" { "Publish" }
                p.muted { "Once the job has succeeded the operator saves it there (hf://, modelscope:// or s3://, with the job's credentials) and records it in the status." }
                @if let Some(preview) = &actions.publish_preview {
                    details { summary { "What it applies" } pre.log { "kubectl patch finetunejob " (actions.name) " --type merge -p -\n" (preview) } }
                }
            }
        }
        @if permitted.delete {
            form method="post" action=(format!("{}/delete", actions.href)) {
                label { "Type " code { (actions.name) } " to delete the job (its checkpoints stay in storage) "
                    input name="confirm" autocomplete="off" required;
                }
                " "
                button type="submit" { "Delete" }
                details { summary { "What it applies" } pre.log { "kubectl delete finetunejob " (actions.name) } }
            }
        }
    }
}

/// The operator's estimate before the run: its size, and on GPUs its time and cost.
fn estimate_table(estimate: &JobEstimate) -> Markup {
    let or_dash = |value: Option<String>| value.unwrap_or_else(|| "-".to_owned());
    html! {
        h2 { "Estimate" }
        table #estimate {
            tbody {
                tr { th { "Samples an epoch" } td { (estimate.samples_per_epoch) } }
                tr { th { "Tokens an epoch" } td { (estimate.tokens_per_epoch) } }
                tr { th { "Steps" } td { (estimate.steps) } }
                tr { th { "Compute" } td { (format!("{:.3e} FLOPs", estimate.flops)) } }
                tr { th { "Duration" } td { (or_dash(estimate.duration.clone())) } }
                tr { th { "GPU-hours" } td { (or_dash(estimate.gpu_hours.map(|h| format!("{h:.2}")))) } }
                tr { th { "Cost" } td { (or_dash(estimate.cost.map(|c| format!("{c:.2}")))) } }
            }
        }
        p.muted { (estimate.basis) }
    }
}

/// A cluster job's actions, conditions, Events and manifest.
pub fn job_details(details: &JobDetails) -> Markup {
    html! {
        @if let Some(actions) = &details.actions { (job_actions(actions)) }
        @if let Some(why) = &details.history_unread {
            p.muted { "The loss history is the status's latest alone: " (why) }
        }
        @if let Some(estimate) = &details.estimate { (estimate_table(estimate)) }
        @if let Some(plan) = &details.memory_plan {
            h2 { "Memory plan" }
            pre.log #memory-plan { (plan) }
        }
        h2 { "Conditions" }
        @if details.conditions.is_empty() {
            p.muted { "None yet." }
        } @else {
            div.scroll { table {
                thead { tr { th { "Type" } th { "Status" } th { "Reason" } th { "Message" } th { "Since" } } }
                tbody {
                    @for c in &details.conditions {
                        tr { td { (c.type_) } td { (c.status) } td { (c.reason) } td { (c.message) } td { (c.last_transition_time.0.to_string()) } }
                    }
                }
            } }
        }
        h2 { "Events" }
        @if let Some(why) = &details.events_unread {
            p.muted { "Not read: " (why) }
        } @else if details.events.is_empty() {
            p.muted { "None." }
        } @else {
            div.scroll { table {
                thead { tr { th { "Time" } th { "Type" } th { "Reason" } th { "Note" } } }
                tbody {
                    @for e in &details.events {
                        tr class=(if e.type_ == "Warning" { "warn" } else { "" }) {
                            td { (e.time) } td { (e.type_) } td { (e.reason) } td { (e.note) }
                        }
                    }
                }
            } }
        }
        h2 { "Manifest" }
        pre.log { (details.manifest) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(namespace: &str, name: &str, phase: Option<JobPhase>) -> JobRow {
        JobRow {
            namespace: namespace.into(),
            name: name.into(),
            href: crate::jobs::job_href(namespace, name),
            phase,
            base_model: "anneal-tiny".into(),
            method: "sft".into(),
            step: 3,
            total_steps: 9,
            train_loss: Some(1.25),
            valid_loss: None,
            best_checkpoint: None,
            created: None,
            message: Some("<b>bold</b>".into()),
        }
    }

    #[test]
    fn the_filter_narrows_by_namespace_and_phase() {
        let rows = [
            row("team-a", "one", Some(JobPhase::Running)),
            row("team-a", "two", Some(JobPhase::Succeeded)),
            row("team-b", "three", None),
        ];
        let names = |filter: &JobFilter| -> Vec<&str> {
            (rows.iter().filter(|r| filter.admits(r)))
                .map(|r| r.name.as_str())
                .collect()
        };
        assert_eq!(names(&JobFilter::default()), ["one", "two", "three"]);
        let team_a = JobFilter {
            namespace: Some("team-a".into()),
            phase: None,
        };
        assert_eq!(names(&team_a), ["one", "two"]);
        let pending = JobFilter {
            namespace: None,
            phase: Some("Pending".into()),
        };
        assert_eq!(names(&pending), ["three"], "no phase yet is Pending");

        let html =
            jobs_page(&rows, &team_a, &["team-a".into(), "team-b".into()], None).into_string();
        assert!(html.contains(r#"href="/jobs/team-a/one""#), "{html}");
        assert!(!html.contains("team-b/three"), "{html}");
        assert!(html.contains("2 of 3 jobs shown"), "{html}");
        assert!(
            html.contains(r#"<option value="team-a" selected>"#),
            "{html}"
        );
        assert!(html.contains("&lt;b&gt;bold&lt;/b&gt;"), "escaped: {html}");
        assert!(
            html.contains(r#"http-equiv="refresh""#),
            "a running job reloads"
        );
    }
}
