//! Anneal's operator: the FineTuneJob controller (validation, trainer Jobs, status),
//! the endpoint trainers report their events to, and the operator's metrics.

pub mod metrics;
pub mod validation_verdict;
