//! Anneal's trainer: everything that runs in the trainer pod and in local mode.
//!
//! So far: `validate`, the dataset and manifest check users run before they
//! spend GPU time.

pub mod local_paths;
pub mod validate_command;
