//! The deployments list and a deployment's page with its playground (a chat with any
//! model it serves, [`crate::playground`]).

use maud::{Markup, html};

use crate::deployments::DeploymentRow;
use crate::pages::page;
use crate::playground::{ChatSettings, Exchange, playground_form, same_request};
use anneal_crds::modeldeployment::DeploymentPhase;

fn phase_name(phase: Option<DeploymentPhase>) -> String {
    phase.map_or("Pending".to_owned(), |p| format!("{p:?}"))
}

/// The links between the cluster console's lists.
pub fn cluster_nav() -> Markup {
    html! {
        nav {
            a href="/" { "Jobs" } " · " a href="/deployments" { "Deployments" }
            " · " a href="/evaluations" { "Evaluations" }
        }
    }
}

/// Every deployment the viewer may list.
pub fn deployments_page(rows: &[DeploymentRow]) -> Markup {
    let going = rows.iter().any(|r| {
        !matches!(
            r.phase,
            Some(DeploymentPhase::Ready | DeploymentPhase::Failed)
        )
    });
    page(
        "Deployments",
        going,
        html! {
            (cluster_nav())
            h1 { "Deployments" }
            @if rows.is_empty() {
                p { "No ModelDeployment here. A " code { "ModelDeployment" } " serves a job's checkpoint." }
            } @else {
                div.scroll { table {
                    thead { tr {
                        th { "Deployment" } th { "Phase" } th { "Ready" } th { "Serves" } th { "Model id" } th { "Endpoint" }
                    } }
                    tbody {
                        @for row in rows {
                            tr {
                                td { a href=(row.href) { (row.namespace) "/" (row.name) } }
                                td {
                                    (phase_name(row.phase))
                                    @if let Some(message) = &row.message { br; span.muted { (message) } }
                                }
                                td { (row.ready_replicas) "/" (row.replicas) }
                                td { (row.source) }
                                td { code { (row.model_id.as_deref().unwrap_or("-")) } }
                                td { code { (row.endpoint.as_deref().unwrap_or("-")) } }
                            }
                        }
                    }
                } }
            }
        },
    )
}

/// A deployment's page: where it stands, and its playground with `settings`.
pub fn deployment_page(
    row: &DeploymentRow,
    models: &[String],
    settings: &ChatSettings,
    exchange: &Exchange,
) -> Markup {
    let title = format!("{}/{}", row.namespace, row.name);
    let endpoint = row
        .endpoint
        .clone()
        .unwrap_or_else(|| "http://SERVICE:8000/v1".to_owned());
    let ready = row.phase == Some(DeploymentPhase::Ready);
    page(
        &title,
        false,
        html! {
            (cluster_nav())
            h1 { (title) }
            p {
                strong { (phase_name(row.phase)) }
                @if let Some(message) = &row.message { ": " (message) }
            }
            ul {
                li { "Serves: " (row.source) }
                li { "Ready replicas: " (row.ready_replicas) " of " (row.replicas) }
                li { "Endpoint: " code { (endpoint) } }
            }
            @if !row.pods.is_empty() {
                h2 { "Pods" }
                div.scroll { table #pods {
                    thead { tr { th { "Pod" } th { "Adapters" } th { "As the spec says" } th { "Last change" } } }
                    tbody {
                        @for pod in &row.pods {
                            tr class=[(!pod.in_sync).then_some("warn")] {
                                td { (pod.pod) }
                                td { (if pod.adapters.is_empty() { "-".to_owned() } else { pod.adapters.join(", ") }) }
                                td { (if pod.in_sync { "yes" } else { "not yet" }) }
                                td { (pod.message.as_deref().unwrap_or("-")) }
                            }
                        }
                    }
                } }
            }
            h2 { "Playground" }
            @if !ready { p.warn { "Not ready: the playground answers once a serving pod is." } }
            (playground_form(&format!("{}/playground", row.href), models, settings, exchange))
            (same_request(&endpoint, settings, html! {
                "From a pod in the cluster, or through " code { "kubectl port-forward svc/" (row.name) " 8000" } " with " code { "localhost:8000" } "."
            }))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::playground::default_settings;

    fn row() -> DeploymentRow {
        DeploymentRow {
            namespace: "team-a".into(),
            name: "chat".into(),
            href: "/deployments/team-a/chat".into(),
            phase: Some(DeploymentPhase::Ready),
            ready_replicas: 1,
            replicas: 1,
            endpoint: Some("http://chat.team-a.svc:8000/v1".into()),
            model_id: Some("ft:a".into()),
            source: "FineTuneJob story (best)".into(),
            message: None,
            pods: Vec::new(),
        }
    }

    #[test]
    fn each_serving_pod_says_what_it_serves() {
        use anneal_crds::modeldeployment::ReplicaStatus;
        let mut row = row();
        assert!(
            !deployment_page(&row, &[], &default_settings("ft:a"), &Exchange::default())
                .into_string()
                .contains("<h2>Pods</h2>"),
            "no pods listed, no table"
        );
        row.pods = vec![
            ReplicaStatus {
                pod: "chat-7f-0".into(),
                adapters: vec!["early".into(), "late".into()],
                in_sync: true,
                message: None,
            },
            ReplicaStatus {
                pod: "chat-7f-1".into(),
                adapters: Vec::new(),
                in_sync: false,
                message: Some("loading late (spec.model.adapters[1]): <timed out>".into()),
            },
        ];
        let html = deployment_page(&row, &[], &default_settings("ft:a"), &Exchange::default())
            .into_string();
        assert!(
            html.contains("<tr><td>chat-7f-0</td><td>early, late</td><td>yes</td><td>-</td></tr>"),
            "{html}"
        );
        assert!(
            html.contains(
                r#"<tr class="warn"><td>chat-7f-1</td><td>-</td><td>not yet</td><td>loading late (spec.model.adapters[1]): &lt;timed out&gt;</td></tr>"#
            ),
            "{html}"
        );
    }

    #[test]
    fn the_playground_keeps_the_settings_and_shows_the_answer_escaped() {
        let models = ["anneal-tiny".to_owned(), "ft:a".to_owned()];
        let settings = ChatSettings {
            message: "<hi>".into(),
            ..default_settings("ft:a")
        };
        let exchange = Exchange {
            answer: Some("<b>Hello</b>".into()),
            error: None,
        };
        let html = deployment_page(&row(), &models, &settings, &exchange).into_string();
        assert!(html.contains(r#"<option value="ft:a" selected>"#), "{html}");
        assert!(html.contains(r#"<option value="anneal-tiny">"#), "{html}");
        assert!(html.contains("&lt;b&gt;Hello&lt;/b&gt;"), "{html}");
        assert!(html.contains("&lt;hi&gt;</textarea>"), "{html}");
        assert!(html.contains(r#"action="/deployments/team-a/chat/playground""#));
        assert!(html.contains("curl -N http://chat.team-a.svc:8000/v1/chat/completions"));
        assert!(!html.contains("Not ready"));
        assert_eq!(
            html.matches("<script").count(),
            1,
            "the page's own script only"
        );
        assert!(!html.contains("<script src"), "nothing loaded");
    }

    #[test]
    fn the_list_links_each_deployment() {
        let html = deployments_page(&[row()]).into_string();
        assert!(
            html.contains(r#"href="/deployments/team-a/chat""#),
            "{html}"
        );
        assert!(html.contains("1/1") && html.contains("FineTuneJob story (best)"));
        assert!(!html.contains("http-equiv"), "a ready list does not reload");
    }
}
