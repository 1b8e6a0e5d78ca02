//! Anneal's API, group `anneal.dev`, version `v1alpha1`: what users write and what
//! the operator, the trainer and the CRD generator all agree on.
//!
//! Defaults and presets are resolved in [`hyperparameters`]; every rule the API
//! states is checked by [`validation`] (the same rules the CRD schema and its CEL
//! expressions enforce at apply time, so local mode without an apiserver refuses
//! the same manifests); datasets are checked line by line by [`dataset`], and an
//! image job's folder file by file by [`image_dataset`]; what a job needs of a GPU
//! is [`memory_plan`].

pub mod api_docs;
pub mod bearer;
pub mod best_checkpoint;
pub mod common;
pub mod crdgen;
pub mod dataset;
pub mod estimate;
pub mod events;
pub mod finetunejob;
pub mod hub;
pub mod hyperparameters;
pub mod image_dataset;
pub mod limits;
pub mod manifest;
pub mod memory_plan;
pub mod modeldeployment;
pub mod modelevaluation;
#[cfg(feature = "storage")]
pub mod storage;
pub mod trainer_failure;
pub mod validation;

pub use finetunejob::{FineTuneJob, FineTuneJobSpec, FineTuneJobStatus};
pub use hyperparameters::{Preset, ResolvedHyperparameters};
/// Time for stamps and run ids, the same library the API types use.
pub use k8s_openapi::jiff;
pub use modeldeployment::{ModelDeployment, ModelDeploymentSpec, ModelDeploymentStatus};
pub use validation::{FieldError, FieldErrors};

/// API group of both kinds.
pub const GROUP: &str = "anneal.dev";
/// API version of both kinds.
pub const VERSION: &str = "v1alpha1";
