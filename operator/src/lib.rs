//! Anneal's operator: the FineTuneJob controller (validation, trainer Jobs, status),
//! the ModelDeployment controller (serving Deployments and Services), the endpoint
//! trainers report their events to, and the operator's metrics.

pub mod cli;
pub mod conditions;
pub mod config;
pub mod dataset_check;
pub mod error;
pub mod finetunejob_controller;
pub mod kube_report;
pub mod leader_election;
pub mod metrics;
pub mod model_resolution;
pub mod modeldeployment_controller;
pub mod operator_run;
pub mod pod_parts;
pub mod report;
pub mod serving_deployment;
pub mod serving_observation;
pub mod status_apply;
#[cfg(test)]
mod test_snapshot;
pub mod trainer_job;
pub mod trainer_observation;
pub mod validation_verdict;
