//! Anneal's operator: the FineTuneJob controller (validation, trainer Jobs, status),
//! the endpoint trainers report their events to, and the operator's metrics.

pub mod conditions;
pub mod config;
pub mod dataset_check;
pub mod error;
pub mod finetunejob_controller;
pub mod kube_report;
pub mod leader_election;
pub mod metrics;
pub mod operator_run;
pub mod report;
pub mod trainer_job;
pub mod trainer_observation;
pub mod validation_verdict;
