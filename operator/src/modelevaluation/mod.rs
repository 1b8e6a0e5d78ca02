//! The ModelEvaluation kind: planning the Job that runs `trainer evaluate` for an
//! evaluation and the Secret with its manifest.

pub mod evaluation_job;
