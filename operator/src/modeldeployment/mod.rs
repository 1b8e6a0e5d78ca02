//! The ModelDeployment kind: resolving which model to serve (a FineTuneJob's
//! checkpoint or a base model with adapters), planning the serving Deployment and
//! Service, and reading their state back into status; `controller` ties them together.

pub mod controller;
pub mod model_resolution;
pub mod replica_adapters;
pub mod serving_deployment;
pub mod serving_memory;
pub mod serving_observation;
