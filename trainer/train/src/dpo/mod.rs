//! Direct preference optimisation: preference pairs tokenized with the reply
//! scored ([`data`]), the DPO loss and rewards ([`loss`]), the reference model the
//! rewards are measured against ([`reference`]), one optimizer step ([`step`]) and
//! validation ([`evaluate`]).

pub mod data;
pub mod evaluate;
pub mod loss;
pub mod reference;
pub mod step;
