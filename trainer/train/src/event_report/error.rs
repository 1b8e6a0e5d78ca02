//! Why reporting could not start: the run then goes on unreported, with a warning.

/// What `reqwest::Url::parse` fails with (url's `ParseError`).
pub type UrlParseError = <reqwest::Url as std::str::FromStr>::Err;

/// Why the reporter could not start.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("report URL {url}: {source}")]
    Url { url: String, source: UrlParseError },
    #[error("report client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("report runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("starting the report thread: {0}")]
    Thread(#[source] std::io::Error),
}
