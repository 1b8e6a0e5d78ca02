//! The poster thread: takes batches from the queue, posts them, and on failure
//! waits ([`Backoff`], or a fixed pause for a refused token) and tries again.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anneal_crds::events::TrainerEvent;
use reqwest::StatusCode;

use super::Shared;
use super::backoff::{Backoff, spread};
use super::error::ReportError;
use super::problem_log::{ProblemKind, ProblemLog};

/// Events posted at most in one request.
pub const MAX_BATCH: usize = 100;
/// One post may take this long before it counts as failed and is retried.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a refused token is tried again: the Secret may be mounted later, but
/// asking every half second would only fill the operator's log.
const REFUSED_RETRY: Duration = Duration::from_secs(30);

/// The poster thread: posts batches until the run ends and nothing is left.
pub(super) fn post_until_closed(shared: &Shared, poster: &Poster) {
    let mut batch: Vec<TrainerEvent> = Vec::new();
    let mut backoff = Backoff::new();
    let mut problems = ProblemLog::new(poster.url.as_str());
    loop {
        {
            let mut state = shared.lock();
            while batch.is_empty() && state.queue.is_empty() && !state.closing {
                state = shared.work.wait(state).unwrap_or_else(|e| e.into_inner());
            }
            if batch.is_empty() && state.queue.is_empty() {
                state.poster_done = true;
                shared.progress.notify_all();
                return;
            }
            // A batch that failed takes on events queued since, in order.
            let room = MAX_BATCH - batch.len();
            state.queue.take_into(room, &mut batch);
            state.in_flight = batch.len();
        }
        let wait = match poster.post(&batch) {
            Attempt::Delivered => {
                backoff.reset();
                problems.cleared();
                settle(shared, &mut batch, false);
                continue;
            }
            Attempt::Rejected(why) => {
                problems.note(ProblemKind::Rejected, &why);
                settle(shared, &mut batch, true);
                continue;
            }
            Attempt::Refused(why) => {
                problems.note(ProblemKind::Refused, &why);
                spread(REFUSED_RETRY, rand::random())
            }
            Attempt::Unavailable(why) => {
                problems.note(ProblemKind::Unavailable, &why);
                backoff.next_delay(rand::random())
            }
        };
        pause(shared, wait);
    }
}

/// Clears the posted (or given up) batch and tells `finish`.
fn settle(shared: &Shared, batch: &mut Vec<TrainerEvent>, rejected: bool) {
    let mut state = shared.lock();
    if rejected {
        state.rejected += batch.len() as u64;
    }
    state.in_flight = 0;
    batch.clear();
    shared.progress.notify_all();
}

/// Sleeps `wait`, cut short once when the run ends: the last events (the final
/// phase) should not sit out a 30 s backoff while `finish` has only seconds.
fn pause(shared: &Shared, wait: Duration) {
    let deadline = Instant::now() + wait;
    let mut state = shared.lock();
    let was_closing = state.closing;
    loop {
        let now = Instant::now();
        if now >= deadline || (state.closing && !was_closing) {
            return;
        }
        state = shared
            .work
            .wait_timeout(state, deadline - now)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

/// How one post went.
#[derive(Debug)]
enum Attempt {
    Delivered,
    /// 401, 403 or 404: the token is missing or not (yet) valid, or the operator
    /// does not know the job yet.
    Refused(String),
    /// Another 4xx: the same batch would get the same answer.
    Rejected(String),
    /// 5xx, 408, 429, connection refused, timeout: worth retrying soon.
    Unavailable(String),
}

/// The HTTP side of the poster thread.
pub(super) struct Poster {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
    url: reqwest::Url,
    token_file: Option<PathBuf>,
}

impl Poster {
    /// Fails (for a warning) when the HTTP client or its runtime cannot be built.
    pub(super) fn new(url: reqwest::Url, token_file: Option<PathBuf>) -> Result<Self, ReportError> {
        anneal_crds::storage::install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            // The operator is a Service inside the cluster: a proxy meant for the
            // internet would only stand in the way.
            .no_proxy()
            .build()
            .map_err(ReportError::Client)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ReportError::Runtime)?;
        Ok(Self {
            runtime,
            client,
            url,
            token_file,
        })
    }

    fn post(&self, batch: &[TrainerEvent]) -> Attempt {
        let body = serde_json::to_vec(batch).expect("events serialize");
        let mut request = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        let mut token_problem = String::new();
        if let Some(path) = &self.token_file {
            match std::fs::read_to_string(path) {
                Ok(token) => request = request.bearer_auth(token.trim()),
                Err(e) => token_problem = format!(" (token file {}: {e})", path.display()),
            }
        }
        self.runtime.block_on(async {
            let response = match request.send().await {
                Ok(response) => response,
                Err(e) => return Attempt::Unavailable(error_chain(&e)),
            };
            let status = response.status();
            // Read the reply to the end so the connection can carry the next post.
            let _ = response.bytes().await;
            classify(status, &token_problem)
        })
    }
}

fn classify(status: StatusCode, token_problem: &str) -> Attempt {
    if status.is_success() {
        return Attempt::Delivered;
    }
    let described = format!("the operator answered {status}{token_problem}");
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND => {
            Attempt::Refused(described)
        }
        StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_MANY_REQUESTS => {
            Attempt::Unavailable(described)
        }
        s if s.is_client_error() => Attempt::Rejected(described),
        _ => Attempt::Unavailable(described),
    }
}

/// What went wrong under reqwest's "error sending request for url (...)", which
/// repeats the URL the warning already names; that line itself when it has no cause.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut causes = Vec::new();
    let mut source = error.source();
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    if causes.is_empty() {
        return error.to_string();
    }
    causes.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_refusals_wait_for_a_token_other_4xx_give_up_5xx_retry() {
        assert!(matches!(
            classify(StatusCode::UNAUTHORIZED, ""),
            Attempt::Refused(_)
        ));
        assert!(matches!(
            classify(StatusCode::NOT_FOUND, ""),
            Attempt::Refused(_)
        ));
        assert!(matches!(
            classify(StatusCode::BAD_REQUEST, ""),
            Attempt::Rejected(_)
        ));
        assert!(matches!(
            classify(StatusCode::SERVICE_UNAVAILABLE, ""),
            Attempt::Unavailable(_)
        ));
        assert!(matches!(
            classify(StatusCode::TOO_MANY_REQUESTS, ""),
            Attempt::Unavailable(_)
        ));
        assert!(matches!(classify(StatusCode::OK, ""), Attempt::Delivered));
    }
}
