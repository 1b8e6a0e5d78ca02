//! A local run's playground page (`trainer console`): a chat with any of the run's
//! checkpoints or its base model, answered by a `trainer serve` the console starts
//! for it on loopback, and the same request as `curl` and OpenAI SDK code.

use maud::{Markup, html};

use crate::pages::page;
use crate::playground::{ChatSettings, Exchange, playground_form, same_request};
use crate::runs::RunSummary;

/// Where the playground's model server stands, for the page to say.
#[derive(Clone, Debug, PartialEq)]
pub enum ServerState {
    /// Serving this run's models at the `/v1` base URL.
    Serving(String),
    /// Started by the first message.
    NotStarted,
}

impl ServerState {
    /// The `/v1` base URL requests go to: the server's, or a placeholder until the
    /// first message starts one.
    pub fn endpoint(&self) -> String {
        match self {
            ServerState::Serving(address) => format!("{address}/v1"),
            ServerState::NotStarted => "http://127.0.0.1:PORT/v1".to_owned(),
        }
    }
}

/// The playground of `run`: `models` to choose from (checkpoints newest first, the base
/// model last), the settings shown and the last exchange; or, when the run cannot be
/// tried here, why (`refused`).
pub fn run_playground_page(
    run: &RunSummary,
    models: &[String],
    settings: &ChatSettings,
    exchange: &Exchange,
    server: &ServerState,
    refused: Option<&str>,
) -> Markup {
    let title = format!("Playground: {}", run.title);
    let endpoint = server.endpoint();
    page(
        &title,
        false,
        html! {
            nav { a href="/" { "Runs" } " · " a href=(run.href) { (run.title) } }
            h1 { (title) }
            @if let Some(why) = refused {
                p.error { "Not offered for this run: " (why) }
            } @else {
                p {
                    @match server {
                        ServerState::Serving(address) => { "Answered by " code { "trainer serve" } " at " code { (address) } ", started by this console." }
                        ServerState::NotStarted => { "The first message starts " code { "trainer serve" } " for this run's models on loopback (loading the base model takes a while for a large one); it stops with the console." }
                    }
                }
                (playground_form(&format!("{}/playground", run.href), models, settings, exchange))
                (same_request(&endpoint, settings, html! {
                    "This server lives as long as the console. For one of your own, run the " code { "serve it:" } " command " code { "trainer train" } " printed."
                }))
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::playground::default_settings;

    fn run() -> RunSummary {
        RunSummary {
            title: "default/quickstart 20261206-0150".into(),
            href: "/runs/default/quickstart/20261206-0150".into(),
            playground: true,
            ..RunSummary::default()
        }
    }

    #[test]
    fn the_page_offers_the_runs_models_and_posts_to_the_runs_routes() {
        let models = ["ft:t:q:ckpt-9".to_owned(), "anneal-tiny".to_owned()];
        let settings = default_settings("anneal-tiny");
        let serving = ServerState::Serving("http://127.0.0.1:40123".into());
        let html = run_playground_page(
            &run(),
            &models,
            &settings,
            &Exchange::default(),
            &serving,
            None,
        )
        .into_string();
        assert!(
            html.contains(r#"action="/runs/default/quickstart/20261206-0150/playground""#),
            "{html}"
        );
        assert!(
            html.contains(r#"<option value="anneal-tiny" selected>"#),
            "{html}"
        );
        assert!(html.contains(r#"<option value="ft:t:q:ckpt-9">"#), "{html}");
        assert!(html.contains("curl -N http://127.0.0.1:40123/v1/chat/completions"));
        let waiting = run_playground_page(
            &run(),
            &models,
            &settings,
            &Exchange::default(),
            &ServerState::NotStarted,
            None,
        )
        .into_string();
        assert!(waiting.contains("The first message starts"), "{waiting}");
        assert!(waiting.contains("http://127.0.0.1:PORT/v1/chat/completions"));

        let refused = run_playground_page(
            &run(),
            &[],
            &settings,
            &Exchange::default(),
            &ServerState::NotStarted,
            Some("an image job"),
        )
        .into_string();
        assert!(refused.contains("Not offered for this run: an image job"));
        assert!(!refused.contains("<form"), "{refused}");
    }
}
