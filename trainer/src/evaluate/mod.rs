//! `trainer evaluate`'s parts: the models a ModelEvaluation names made local
//! ([`resolve`]), and their answers to the held-out prompts ([`answer`]).

pub mod answer;
pub mod resolve;
