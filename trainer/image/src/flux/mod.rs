//! The FLUX.1 family (black-forest-labs/FLUX.1-dev and -schnell) as diffusers
//! computes it: the rectified-flow transformer ([`transformer`]), loaded from a
//! diffusers `transformer/` folder ([`weights`]).

pub mod attention;
pub mod blocks;
pub mod config;
pub mod embed;
pub mod linear;
pub mod lora;
pub mod recompute;
pub mod rope;
pub mod trainable_lora;
pub mod transformer;
pub mod weights;

pub use config::FluxConfig;
pub use transformer::{Conditioning, FluxTransformer};
pub use weights::{FluxLoadError, load_flux_transformer};
