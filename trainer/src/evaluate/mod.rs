//! `trainer evaluate`'s parts: the models a ModelEvaluation names, made local or
//! reached where they are served ([`resolve`]); their answers to the held-out
//! prompts, from loaded weights ([`answer`]) or over HTTP ([`endpoint`]); and the LLM
//! judge's verdicts on those answers ([`judging`]); all of it kept as it comes, for a
//! retry to continue from ([`kept`]).

pub mod answer;
pub mod ask;
pub mod endpoint;
pub mod judging;
pub mod kept;
pub mod resolve;
