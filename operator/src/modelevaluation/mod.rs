//! The ModelEvaluation kind: planning the Job that runs `trainer evaluate` for an
//! evaluation and the Secret with its manifest, reading the Job's state and the
//! results it wrote back into status; `controller` ties them together.

pub mod controller;
pub mod evaluation_job;
pub mod evaluation_observation;
