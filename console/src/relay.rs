//! The playground's requests, relayed by a console's server to a model server's
//! `/v1/chat/completions`: the form's whole answer, or the script's answer streamed
//! back as the server sends it (`text/event-stream`), and the snippets of the same
//! request. A browser never talks to the model server itself: in a cluster it is a
//! Service inside, locally a `trainer serve` on loopback. Also here: whether a request
//! came from the console's own pages, which the consoles ask before acting.

use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::playground::{ChatSettings, Exchange, curl_snippet, openai_snippet};

/// The longest a playground answer may take, start to end.
const CHAT_TIMEOUT: Duration = Duration::from_secs(300);

/// Sends `body` to `{address}/v1/chat/completions` (`address`: the server's base URL);
/// a refusal comes back as the server's own message.
pub async fn ask_server(address: &str, body: &Value) -> Result<reqwest::Response, String> {
    anneal_crds::storage::install_crypto_provider();
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

/// The form's round trip: the whole answer, not streamed, or why there is none.
pub async fn whole_answer(address: &str, settings: &ChatSettings) -> Exchange {
    let mut body = settings.request_body();
    body["stream"] = json!(false);
    let answered = match ask_server(address, &body).await {
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
    match answered {
        Ok(answer) => Exchange {
            answer: Some(answer),
            error: None,
        },
        Err(error) => Exchange::failed(error),
    }
}

/// The status a form's page is answered with: 422 when it shows an error.
pub fn exchange_status(exchange: &Exchange) -> StatusCode {
    if exchange.error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    }
}

/// The script's request: the server's answer streamed through (`data: {chunk}`
/// lines), or a 502 saying why there is none.
pub async fn streamed_answer(address: Result<String, String>, settings: &ChatSettings) -> Response {
    let asked = match address {
        Ok(address) => ask_server(&address, &settings.request_body()).await,
        Err(error) => Err(error),
    };
    match asked {
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

/// The `curl` and OpenAI SDK code of the request, for the page's script.
pub fn snippets(endpoint: &str, settings: &ChatSettings) -> Response {
    Json(json!({
        "curl": curl_snippet(endpoint, settings),
        "python": openai_snippet(endpoint, settings),
    }))
    .into_response()
}

/// A plain-text answer, as the page's script shows it.
pub fn plain(status: StatusCode, text: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}

/// Whether a browser sent the request from the console's own pages: its `Origin`
/// (or `Sec-Fetch-Site`), when it says, names this host. A client that is not a
/// browser sends neither, and no other site can make a browser leave them out.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text(header::HeaderName::from_static("sec-fetch-site"))
        && site != "same-origin"
        && site != "none"
    {
        return false;
    }
    match (text(header::ORIGIN), text(header::HOST)) {
        (None, _) => true,
        (Some(origin), Some(host)) => {
            let authority = origin.split_once("://").map_or(origin, |(_, rest)| rest);
            authority == host
        }
        (Some(_), None) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn only_the_consoles_own_pages_may_act() {
        let host = ("host", "localhost:8090");
        assert!(same_origin(&headers(&[host])), "not a browser");
        assert!(same_origin(&headers(&[
            host,
            ("origin", "http://localhost:8090")
        ])));
        assert!(same_origin(&headers(&[
            host,
            ("sec-fetch-site", "same-origin")
        ])));
        for other in [
            headers(&[host, ("origin", "https://evil.example")]),
            headers(&[host, ("origin", "http://localhost:8091")]),
            headers(&[host, ("origin", "null")]),
            headers(&[host, ("sec-fetch-site", "cross-site")]),
            headers(&[host, ("sec-fetch-site", "same-site")]),
            headers(&[("origin", "http://localhost:8090")]),
        ] {
            assert!(!same_origin(&other), "{other:?}");
        }
    }
}
