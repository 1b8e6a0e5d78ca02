//! Evaluation of answers: the held-out chats ([`samples`]: prompts and reference
//! answers), how well a model's answer to a prompt scores against the reference
//! ([`metrics`]: exact match, contains, a regular expression, ROUGE-L and chrF, each
//! a score in [0, 1] per sample), how far a mean over a few hundred samples can be
//! trusted ([`bootstrap`]: a percentile interval from resampling the samples,
//! seeded), and every model's answers scored into one comparison ([`report`]).

pub mod bootstrap;
pub mod chrf;
pub mod metrics;
pub mod report;
pub mod samples;
