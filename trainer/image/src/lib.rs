//! Anneal's image models: the FLUX.1 family in burn ([`flux`]), the 2x2 packing of
//! latents into tokens ([`latents`]) and the flow-matching sampler's schedule
//! ([`schedule`]), all as diffusers computes them, on the chat models' loading and
//! precision rules (anneal-model); and for LoRA training, the training images'
//! buckets ([`buckets`]), the examples encoded once ([`training_examples`]), the
//! flow-matching loss ([`flow_matching`]) and trainable adapters written in
//! diffusers' format ([`flux::trainable_lora`]).

pub mod blocked_attention;
pub mod buckets;
pub mod flow_matching;
pub mod flux;
pub mod latents;
pub mod memory;
pub mod pipeline;
pub mod png_out;
pub mod sample;
pub mod schedule;
pub mod text;
pub mod training_examples;
pub mod vae;
