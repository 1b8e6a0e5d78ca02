//! Anneal's image models: the FLUX.1 family in burn ([`flux`]), the 2x2 packing of
//! latents into tokens ([`latents`]) and the flow-matching sampler's schedule
//! ([`schedule`]), all as diffusers computes them, on the chat models' loading and
//! precision rules (anneal-model); and the training images' buckets ([`buckets`]).

pub mod blocked_attention;
pub mod buckets;
pub mod flux;
pub mod latents;
pub mod memory;
pub mod pipeline;
pub mod png_out;
pub mod sample;
pub mod schedule;
pub mod text;
pub mod vae;
