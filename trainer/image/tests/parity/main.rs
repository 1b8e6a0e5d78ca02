//! anneal-image against diffusers 0.42.1 and transformers 5.23.0 on the tiny random
//! fixtures of `scripts/reference/make_flux_fixtures.py`: the FLUX transformer,
//! packing and schedule (`transformer`), the VAE and a whole generation (`vae`), and
//! the text encoders (`text`). One test binary: one link for all of them.

mod fixtures;
mod lora;
mod pipeline;
mod text;
mod trained_adapter;
mod transformer;
mod vae;
