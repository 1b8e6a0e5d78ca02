//! `trainer evaluate`'s parts: the models a ModelEvaluation names, made local or
//! reached where they are served ([`resolve`]); their answers to the held-out
//! prompts, from loaded weights ([`answer`]) or over HTTP ([`endpoint`]); and the LLM
//! judge's verdicts on those answers ([`judging`]).

pub mod answer;
pub mod ask;
pub mod endpoint;
pub mod judging;
pub mod resolve;
