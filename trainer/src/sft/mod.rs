//! Supervised fine-tuning: data preparation and the masked objective.

pub mod data;
pub mod loss;
pub mod step;
