//! The console's deployment pages: the ModelDeployments list, a deployment's page,
//! and its playground. The playground's requests go from the console to the
//! deployment's server (its Service), so a browser outside the cluster can chat with
//! it: as a form the console answers whole, or as JSON whose answer streams back as
//! the server's `text/event-stream`. Each needs `get` on the ModelDeployment.

use std::sync::Arc;
use std::time::Duration;

use anneal_console::deployment_pages::{
    self, Exchange, MAX_TOKENS_MAX, default_settings, deployments_page,
};
use anneal_console::deployments::{
    ChatSettings, curl_snippet, deployment_row, openai_snippet, served_models,
};
use anneal_crds::ModelDeployment;
use axum::Json;
use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::viewer::MODELDEPLOYMENTS;
use super::{ConsoleState, html_page, listed, viewed, viewer_of};

/// The longest the console waits for a server's model list.
const MODELS_TIMEOUT: Duration = Duration::from_secs(3);
/// The longest a playground answer may take, start to end.
const CHAT_TIMEOUT: Duration = Duration::from_secs(300);

pub async fn deployments_list(
    State(state): State<Arc<ConsoleState>>,
    headers: HeaderMap,
) -> Response {
    let viewer = match viewer_of(&state, &headers).await {
        Ok(viewer) => viewer,
        Err(response) => return response,
    };
    let deployments: Vec<ModelDeployment> = match listed(&state, &viewer, MODELDEPLOYMENTS).await {
        Ok(deployments) => deployments,
        Err(response) => return response,
    };
    let rows: Vec<_> = deployments.iter().map(deployment_row).collect();
    html_page(StatusCode::OK, deployments_page(&rows))
}

/// The deployment the viewer asked for, or the answer refusing them.
async fn viewed_deployment(
    state: &ConsoleState,
    headers: &HeaderMap,
    namespace: &str,
    name: &str,
) -> Result<ModelDeployment, Response> {
    let (_, deployment) = viewed(state, headers, MODELDEPLOYMENTS, namespace, name).await?;
    Ok(deployment)
}

/// The models the deployment's server lists, else the one its status names.
async fn models_of(state: &ConsoleState, deployment: &ModelDeployment) -> Vec<String> {
    let listing = match (state.serving_address)(deployment) {
        Some(address) => {
            let request = reqwest::Client::new()
                .get(format!("{address}/v1/models"))
                .timeout(MODELS_TIMEOUT)
                .send();
            match request.await {
                Ok(response) if response.status().is_success() => response
                    .bytes()
                    .await
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Value>(&b).ok()),
                _ => None,
            }
        }
        None => None,
    };
    served_models(deployment, listing.as_ref())
}

pub async fn deployment_page(
    State(state): State<Arc<ConsoleState>>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let deployment = match viewed_deployment(&state, &headers, &namespace, &name).await {
        Ok(deployment) => deployment,
        Err(response) => return response,
    };
    let models = models_of(&state, &deployment).await;
    let settings = default_settings(models.first().map_or("", String::as_str));
    let page = deployment_page_markup(&deployment, &models, &settings, &Exchange::default());
    html_page(StatusCode::OK, page)
}

fn deployment_page_markup(
    deployment: &ModelDeployment,
    models: &[String],
    settings: &ChatSettings,
    exchange: &Exchange,
) -> maud::Markup {
    deployment_pages::deployment_page(&deployment_row(deployment), models, settings, exchange)
}

/// The playground's fields, as the form (or the page's script) sends them.
#[derive(Deserialize, Debug, Default)]
pub struct PlaygroundFields {
    #[serde(default)]
    model: String,
    #[serde(default)]
    system: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    temperature: String,
    #[serde(default)]
    top_p: String,
    #[serde(default)]
    max_tokens: String,
}

/// The chat the fields ask for, or what is wrong with them, by field.
fn chat_settings(fields: &PlaygroundFields, models: &[String]) -> Result<ChatSettings, String> {
    let number = |field: &str, text: &str, low: f64, high: f64| {
        text.trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= low && *v <= high)
            .ok_or_else(|| format!("{field} must be a number from {low} to {high}, not {text:?}"))
    };
    if !models.contains(&fields.model) {
        return Err(format!(
            "model {:?} is not one this deployment serves ({})",
            fields.model,
            models.join(", ")
        ));
    }
    if fields.message.trim().is_empty() {
        return Err("message is empty: write what to ask".to_owned());
    }
    let max_tokens = (fields.max_tokens.trim().parse::<u32>().ok())
        .filter(|n| (1..=MAX_TOKENS_MAX).contains(n))
        .ok_or_else(|| {
            format!(
                "max_tokens must be a whole number from 1 to {MAX_TOKENS_MAX}, not {:?}",
                fields.max_tokens
            )
        })?;
    Ok(ChatSettings {
        model: fields.model.clone(),
        system: fields.system.clone(),
        message: fields.message.clone(),
        temperature: number("temperature", &fields.temperature, 0.0, 2.0)?,
        top_p: number("top_p", &fields.top_p, 0.01, 1.0)?,
        max_tokens,
    })
}

/// Sends `body` to the deployment's `/v1/chat/completions`.
async fn ask_server(
    state: &ConsoleState,
    deployment: &ModelDeployment,
    body: &Value,
) -> Result<reqwest::Response, String> {
    let address = (state.serving_address)(deployment)
        .ok_or_else(|| "the deployment has no endpoint yet: it is not serving".to_owned())?;
    let request = reqwest::Client::new()
        .post(format!("{address}/v1/chat/completions"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.to_string())
        .timeout(CHAT_TIMEOUT)
        .send();
    let response = request
        .await
        .map_err(|error| format!("the server did not answer: {error}"))?;
    if response.status().is_success() {
        return Ok(response);
    }
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let message = (serde_json::from_str::<Value>(&text).ok())
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or(text);
    Err(format!("the server answered {status}: {message}"))
}

/// The form's round trip: the whole answer in the page, the settings kept.
pub async fn playground_form(
    State(state): State<Arc<ConsoleState>>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
    Form(fields): Form<PlaygroundFields>,
) -> Response {
    let deployment = match viewed_deployment(&state, &headers, &namespace, &name).await {
        Ok(deployment) => deployment,
        Err(response) => return response,
    };
    let models = models_of(&state, &deployment).await;
    let (settings, exchange) = match chat_settings(&fields, &models) {
        Err(error) => {
            let kept = ChatSettings {
                system: fields.system.clone(),
                message: fields.message.clone(),
                ..default_settings(&fields.model)
            };
            let exchange = Exchange {
                answer: None,
                error: Some(error),
            };
            (kept, exchange)
        }
        Ok(settings) => {
            let mut body = settings.request_body();
            body["stream"] = json!(false);
            let answered = match ask_server(&state, &deployment, &body).await {
                Ok(response) => (response.bytes().await)
                    .map_err(|error| format!("the server's answer did not arrive whole: {error}"))
                    .and_then(|bytes| {
                        serde_json::from_slice::<Value>(&bytes)
                            .map_err(|error| format!("the server's answer is not JSON: {error}"))
                    })
                    .and_then(|reply| {
                        (reply["choices"][0]["message"]["content"].as_str())
                            .map(str::to_owned)
                            .ok_or_else(|| "the server's answer holds no message".to_owned())
                    }),
                Err(error) => Err(error),
            };
            let exchange = match answered {
                Ok(answer) => Exchange {
                    answer: Some(answer),
                    error: None,
                },
                Err(error) => Exchange {
                    answer: None,
                    error: Some(error),
                },
            };
            (settings, exchange)
        }
    };
    let status = if exchange.error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let page = deployment_page_markup(&deployment, &models, &settings, &exchange);
    html_page(status, page)
}

fn plain(status: StatusCode, text: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}

/// The deployment and the chat of a request the page's script sends (JSON), or the
/// answer refusing it: the viewer may not get the deployment, the body is not JSON,
/// or a field is out of range (named, as plain text for the script to show).
async fn scripted_request(
    state: &ConsoleState,
    headers: &HeaderMap,
    namespace: &str,
    name: &str,
    fields: Result<Json<PlaygroundFields>, JsonRejection>,
) -> Result<(ModelDeployment, ChatSettings), Response> {
    let deployment = viewed_deployment(state, headers, namespace, name).await?;
    let Json(fields) =
        fields.map_err(|rejection| plain(rejection.status(), rejection.body_text()))?;
    let models = models_of(state, &deployment).await;
    let settings = chat_settings(&fields, &models)
        .map_err(|error| plain(StatusCode::UNPROCESSABLE_ENTITY, error))?;
    Ok((deployment, settings))
}

/// The page's script's request: the answer streamed back as the server sends it
/// (`data: {chunk}` lines). Only JSON is taken, so another site's page cannot send
/// it without the browser asking the console first (which it does not allow).
pub async fn chat_stream(
    State(state): State<Arc<ConsoleState>>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
    fields: Result<Json<PlaygroundFields>, JsonRejection>,
) -> Response {
    let (deployment, settings) =
        match scripted_request(&state, &headers, &namespace, &name, fields).await {
            Ok(request) => request,
            Err(response) => return response,
        };
    match ask_server(&state, &deployment, &settings.request_body()).await {
        Ok(response) => (
            [
                (header::CONTENT_TYPE, "text/event-stream"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            Body::from_stream(response.bytes_stream()),
        )
            .into_response(),
        Err(error) => plain(StatusCode::BAD_GATEWAY, error),
    }
}

/// The `curl` and OpenAI SDK code of the playground's request, for the page's script.
pub async fn snippets(
    State(state): State<Arc<ConsoleState>>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
    fields: Result<Json<PlaygroundFields>, JsonRejection>,
) -> Response {
    let (deployment, settings) =
        match scripted_request(&state, &headers, &namespace, &name, fields).await {
            Ok(request) => request,
            Err(response) => return response,
        };
    let endpoint = deployment_row(&deployment)
        .endpoint
        .unwrap_or_else(|| "http://SERVICE:8000/v1".to_owned());
    Json(json!({
        "curl": curl_snippet(&endpoint, &settings),
        "python": openai_snippet(&endpoint, &settings),
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(model: &str, temperature: &str, top_p: &str, max_tokens: &str) -> PlaygroundFields {
        PlaygroundFields {
            model: model.into(),
            system: String::new(),
            message: "Hi".into(),
            temperature: temperature.into(),
            top_p: top_p.into(),
            max_tokens: max_tokens.into(),
        }
    }

    #[test]
    fn the_playground_takes_only_what_a_server_accepts_and_says_which_field_is_wrong() {
        let models = ["ft:a".to_owned()];
        let good = chat_settings(&fields("ft:a", "0.7", "1", "64"), &models).unwrap();
        assert_eq!(
            (good.temperature, good.top_p, good.max_tokens),
            (0.7, 1.0, 64)
        );
        for (bad, named) in [
            (
                fields("ft:b", "0.7", "1", "64"),
                "model \"ft:b\" is not one this deployment serves (ft:a)",
            ),
            (
                fields("ft:a", "3", "1", "64"),
                "temperature must be a number from 0 to 2",
            ),
            (fields("ft:a", "NaN", "1", "64"), "temperature must be"),
            (
                fields("ft:a", "0.7", "0", "64"),
                "top_p must be a number from 0.01 to 1",
            ),
            (
                fields("ft:a", "0.7", "1", "0"),
                "max_tokens must be a whole number from 1 to 4096",
            ),
            (fields("ft:a", "0.7", "1", "99999"), "max_tokens must be"),
        ] {
            let error = chat_settings(&bad, &models).unwrap_err();
            assert!(error.starts_with(named), "{error}");
        }
        let empty = PlaygroundFields {
            message: " ".into(),
            ..fields("ft:a", "0.7", "1", "64")
        };
        assert!(
            chat_settings(&empty, &models)
                .unwrap_err()
                .starts_with("message is empty")
        );
    }
}
