//! What the three controllers' watch loops share: which children they watch (the
//! objects the operator labelled as its own) and how a failed reconcile is reported
//! (the controller retries it by its error policy).

use std::fmt::Display;

use kube::runtime::watcher;
use tracing::warn;

/// The label selector of the objects the operator made.
pub const MANAGED_BY_ANNEAL: &str = "app.kubernetes.io/managed-by=anneal-operator";

/// The watch of a controller's children: only the objects the operator made.
pub fn managed_children() -> watcher::Config {
    watcher::Config::default()
        .labels(MANAGED_BY_ANNEAL)
        .any_semantic()
}

/// Logs a reconcile that failed.
pub async fn log_reconcile_failure<T, E: Display>(result: Result<T, E>) {
    if let Err(error) = result {
        warn!(%error, "reconcile failed");
    }
}
