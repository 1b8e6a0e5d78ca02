//! The console's pages, shared by the two places that serve them: `trainer console`
//! over a local runs folder, and the operator's console over the cluster's
//! FineTuneJobs. What a run is ([`runs`]: folded from its `events.jsonl`), its loss
//! chart ([`chart`]) and the HTML ([`pages`]) live here; each server reads its own
//! sources and routes.

pub mod actions;
pub mod chart;
pub mod chart_controls;
pub mod deployment_pages;
pub mod deployments;
pub mod evaluations;
pub mod job_pages;
pub mod jobs;
pub mod pages;
pub mod playground;
#[cfg(feature = "relay")]
pub mod relay;
pub mod run_playground;
pub mod runs;
