//! Supervised fine-tuning: data preparation ([`data`]), the masked objective
//! ([`loss`]), one optimizer step ([`step`]) and validation ([`evaluate`]).

pub mod data;
pub mod evaluate;
pub mod loss;
pub mod step;
