//! Bringing a model, adapter or dataset onto this machine: the one way `trainer train`,
//! `serve`, `fetch` and `generate` read what a flag or a manifest names.
//!
//! A folder written by Anneal carries a `COMPLETE` marker; wherever a folder is
//! downloaded or read, a marker whose files are missing or of another size refuses it,
//! so a half-uploaded checkpoint is never trained on or served. Folders from elsewhere
//! (a PEFT adapter trained with Python, a model from the Hub) have no marker and are
//! taken as they are.

mod dataset;
mod error;
mod folder;
mod hub_cache;
pub mod local_paths;
mod location;

pub use dataset::fetch_file;
pub use error::{FolderError, SourceError};
pub use folder::{check_local_folder, download_folder, make_local};
pub use hub_cache::{HubCache, HubFetch};
pub use location::FolderSource;
