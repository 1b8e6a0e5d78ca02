//! Model hubs: Hugging Face and ModelScope repositories named by `hf://ORG/NAME[@REV]`
//! and `modelscope://ORG/NAME[@REV]`, or by a model's name alone.
//!
//! [`HubRef`] (what a URI or name refers to) is always built, since validation and
//! the operator's planning read it; the HTTP client that resolves a revision,
//! downloads checked files and publishes a folder is behind the `hub` feature.

mod reference;

pub use reference::{Hub, HubRef, hub_form_of_name};

#[cfg(feature = "hub")]
mod client;
#[cfg(feature = "hub")]
mod error;
#[cfg(feature = "hub")]
mod huggingface;
#[cfg(feature = "hub")]
mod modelscope;
#[cfg(feature = "hub")]
mod settings;
#[cfg(feature = "hub")]
mod upload;
#[cfg(feature = "hub")]
mod upload_modelscope;

#[cfg(feature = "hub")]
pub use client::{Digest, HubClient, HubFile, Snapshot};
#[cfg(feature = "hub")]
pub use error::HubError;
#[cfg(feature = "hub")]
pub use settings::HubSettings;
#[cfg(feature = "hub")]
pub use upload::Published;
