//! FLUX's VAE: images to latents and back ([`model`]), loaded from a diffusers
//! `vae/` folder ([`weights`]).

pub mod config;
pub mod layers;
pub mod model;
pub mod weights;

pub use config::VaeConfig;
pub use model::{LatentDistribution, Vae};
pub use weights::{VaeLoadError, VaeParts, load_vae};
