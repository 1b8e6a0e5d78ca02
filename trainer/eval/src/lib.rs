//! Evaluation of answers: how well a model's answer to a prompt scores against the
//! reference answer ([`metrics`]: exact match, contains, a regular expression,
//! ROUGE-L and chrF, each a score in [0, 1] per sample), and how far a mean over a
//! few hundred samples can be trusted ([`bootstrap`]: a percentile interval from
//! resampling the samples, seeded).

pub mod bootstrap;
pub mod chrf;
pub mod metrics;
