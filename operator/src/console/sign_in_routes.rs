//! Signing in to the console with a Kubernetes token (`--console-auth token`), and
//! out.

use std::sync::Arc;

use anneal_console::job_pages::sign_in_page;
use axum::extract::{Form, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use tracing::warn;

use super::viewer::{self, ConsoleAuth, TOKEN_COOKIE};
use super::{ConsoleState, html_page};

pub async fn sign_in(State(state): State<Arc<ConsoleState>>) -> Response {
    if state.auth.mode != ConsoleAuth::Token {
        return Redirect::to("/").into_response();
    }
    html_page(StatusCode::OK, sign_in_page(None))
}

#[derive(Deserialize)]
pub struct SignInForm {
    token: String,
}

/// Checks the token with the API server; a good one is kept in the browser as a
/// cookie scripts cannot read and other sites' requests do not carry.
pub async fn sign_in_with_token(
    State(state): State<Arc<ConsoleState>>,
    Form(form): Form<SignInForm>,
) -> Response {
    if state.auth.mode != ConsoleAuth::Token {
        return Redirect::to("/").into_response();
    }
    let token = form.token.trim();
    let refused = |why: &str| html_page(StatusCode::UNAUTHORIZED, sign_in_page(Some(why)));
    let cookie_safe = |b: u8| b.is_ascii_graphic() && !matches!(b, b';' | b',' | b'"' | b'\\');
    if token.is_empty() || !token.bytes().all(cookie_safe) {
        return refused("That is not a token.");
    }
    match viewer::review_token(&state.client, token).await {
        Ok(Some(_)) => {
            let cookie = format!(
                "{TOKEN_COOKIE}={token}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={SIGN_IN_SECONDS}"
            );
            ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
        }
        Ok(None) => refused("The API server does not accept this token."),
        Err(error) => {
            warn!(%error, "console: reviewing a token");
            refused("The token could not be checked; try again.")
        }
    }
}

/// How long a sign-in lasts in the browser (the token may end sooner).
const SIGN_IN_SECONDS: u64 = 8 * 3600;

pub async fn sign_out() -> Response {
    let cookie = format!("{TOKEN_COOKIE}=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0");
    ([(header::SET_COOKIE, cookie)], Redirect::to("/login")).into_response()
}
