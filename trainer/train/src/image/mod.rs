//! Image jobs (`task: text-to-image`): the folder read into captioned images fitted
//! to their buckets ([`folder`]), each epoch's order of bucketed batches
//! ([`order`]), one optimizer step ([`step`]), the sample images drawn at each
//! checkpoint ([`samples`]), and the run that puts them together ([`run`]). The model side (encoding, the flow-matching loss, trainable FLUX
//! adapters) is in anneal-image.

pub mod folder;
pub mod order;
pub mod run;
pub mod samples;
pub mod step;
