//! The operator's one error type: what can go wrong in a reconcile and is worth a retry.
//! Problems with what the user wrote are not errors here: they become status.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("object storage: {0}")]
    Storage(#[from] anneal_crds::storage::StorageError),
    /// The storage settings of a job whose pod ran with them are gone.
    #[error("{0}")]
    Credentials(String),
    #[error("{uri}: not a file URI")]
    NotAFileUri { uri: String },
    /// Reading a dataset's first bytes back from memory failed (it cannot, short of a bug).
    #[error("{source_name}: {error}")]
    DatasetRead {
        source_name: String,
        #[source]
        error: std::io::Error,
    },
    /// The dataset judge's thread ended without a verdict (a panic in the validator).
    #[error("checking a dataset: {0}")]
    DatasetCheckPanicked(String),
    #[error("reading {what} took longer than {limit:?}")]
    Timeout { what: String, limit: Duration },
    #[error("{0}")]
    Plan(#[from] crate::finetunejob::trainer_job::PlanError),
    #[error("{0}")]
    ServingPlan(#[from] crate::modeldeployment::serving_deployment::ServingPlanError),
    #[error("events.jsonl: {0}")]
    EventsFile(#[from] crate::report::EventsFileError),
    /// Writing the status the report endpoint folded.
    #[error("reported status: {0}")]
    Report(#[from] crate::report::ReportError),
}

impl Error {
    /// A short, bounded label for the `reason` of the errors metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Finalizer(_) => "finalizer",
            Error::Storage(_) | Error::Credentials(_) | Error::NotAFileUri { .. } => "storage",
            Error::DatasetRead { .. } | Error::DatasetCheckPanicked(_) => "dataset",
            Error::Timeout { .. } => "timeout",
            Error::Plan(_) | Error::ServingPlan(_) => "plan",
            Error::EventsFile(_) => "events_file",
            Error::Report(_) => "report",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
