//! Anneal's operator: the FineTuneJob controller (validation, trainer Jobs, status),
//! the ModelDeployment controller (serving Deployments and Services), the endpoint
//! trainers report their events to, and the operator's metrics.
//!
//! One folder per kind (`finetunejob`, `modeldeployment`) holds its controller and the
//! pure planning and observation it runs; `shared` holds what both kinds use; `report`
//! is the trainers' report endpoint. The process around them (command line, config,
//! leader election, metrics) sits at the top.

pub mod admission;
pub mod cli;
pub mod config;
pub mod console;
pub mod error;
pub mod finetunejob;
pub mod leader_election;
pub mod metrics;
pub mod modeldeployment;
pub mod modelevaluation;
pub mod notify;
pub mod operator_run;
pub mod report;
pub mod shared;
