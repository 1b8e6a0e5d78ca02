//! Why a hub repository could not be resolved or a file of it downloaded; each
//! message names the repository as the user wrote it and what to change.

/// A hub failure, before naming the field that pointed at the hub.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error(
        "{reference}: no such repository on {endpoint}{}",
        if *token_given { " (or the token cannot read it)" } else { " (or it is private: give a token that can read it)" }
    )]
    RepoNotFound {
        reference: String,
        endpoint: String,
        token_given: bool,
    },

    #[error("{reference}: the repository has no revision {revision:?} (a branch, tag or commit)")]
    RevisionNotFound { reference: String, revision: String },

    #[error("{reference}: the model is gated and {}", gated_advice(*token_given, token_variable))]
    Gated {
        reference: String,
        token_given: bool,
        token_variable: &'static str,
    },

    #[error("{reference}: the repository holds no model weights (*.safetensors) at this revision")]
    NoModelFiles { reference: String },

    #[error("{endpoint} could not be reached: {message}")]
    Unreachable { endpoint: String, message: String },

    #[error("{url}: HTTP {status}: {body}")]
    Unexpected {
        url: String,
        status: u16,
        body: String,
    },

    #[error("{url}: the hub's answer could not be read: {message}")]
    BadAnswer { url: String, message: String },

    #[error(
        "{file}: the download's {what} is {got}, the hub lists {expected} (the repository changed while downloading, or the transfer was damaged)"
    )]
    Mismatch {
        file: String,
        what: &'static str,
        expected: String,
        got: String,
    },

    #[error("{}: {source}", path.display())]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

fn gated_advice(token_given: bool, token_variable: &str) -> String {
    if token_given {
        format!(
            "the token in {token_variable} cannot read it: accept the model's license on the hub with the token's account"
        )
    } else {
        format!(
            "needs a token: accept its license on the hub, then put a token that can read it in {token_variable} (for a cluster job, a key of spec.output.credentialsSecret)"
        )
    }
}

impl HubError {
    /// Whether trying again later may succeed: a hub that is down or slow, a transfer
    /// cut or damaged. A missing repository, revision or permission never will.
    pub fn may_pass_on_retry(&self) -> bool {
        match self {
            HubError::Unreachable { .. } | HubError::Mismatch { .. } | HubError::Io { .. } => true,
            HubError::Unexpected { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}
