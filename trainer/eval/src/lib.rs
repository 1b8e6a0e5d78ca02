//! Evaluation of answers: the held-out chats ([`samples`]: prompts and reference
//! answers), how well a model's answer to a prompt scores against the reference
//! ([`metrics`]: exact match, contains, a regular expression, ROUGE-L and chrF, each
//! a score in [0, 1] per sample; [`named`]: a manifest's metrics as the report
//! labels them), how far a mean over a few hundred samples can be
//! trusted ([`bootstrap`]: a percentile interval from resampling the samples,
//! seeded), every model's answers scored into one comparison ([`report`]), and that
//! comparison as a self-contained page ([`html`]); and the LLM judge's requests and
//! the reading of its replies ([`judge`]); and the comparison as a ModelEvaluation's
//! status carries it ([`status`]).

pub mod bootstrap;
pub mod chrf;
pub mod html;
pub mod judge;
pub mod metrics;
pub mod named;
pub mod report;
pub mod samples;
pub mod status;
