//! Latents as the FLUX transformer sees them: each 2x2 patch of the VAE's latent
//! image becomes one token of `4 · channels` values (FluxPipeline's `_pack_latents`),
//! and back (`_unpack_latents`). The VAE shrinks an image 8x per side, so a
//! `height` x `width` image is `(height/16) · (width/16)` tokens: 4,096 at 1024x1024.

use burn::prelude::*;

/// `[batch, channels, h, w]` (h, w even) to `[batch, (h/2)·(w/2), channels·4]`, each
/// token's values ordered channel, then row and column within the patch.
pub fn pack<B: Backend>(latents: Tensor<B, 4>) -> Tensor<B, 3> {
    let [batch, channels, h, w] = latents.dims();
    latents
        .reshape([batch, channels, h / 2, 2, w / 2, 2])
        .permute([0, 2, 4, 1, 3, 5]) // [b, h/2, w/2, c, 2, 2]
        .reshape([batch, (h / 2) * (w / 2), channels * 4])
}

/// The inverse of [`pack`]: `[batch, rows·columns, channels·4]` on a `rows` x `columns`
/// token grid to `[batch, channels, 2·rows, 2·columns]`.
pub fn unpack<B: Backend>(tokens: Tensor<B, 3>, rows: usize, columns: usize) -> Tensor<B, 4> {
    let [batch, _, packed] = tokens.dims();
    let channels = packed / 4;
    tokens
        .reshape([batch, rows, columns, channels, 2, 2])
        .permute([0, 3, 1, 4, 2, 5]) // [b, c, rows, 2, columns, 2]
        .reshape([batch, channels, rows * 2, columns * 2])
}

/// The token grid `(rows, columns)` of an image `height` x `width` pixels through a
/// VAE that shrinks each side `vae_scale` times; both sides must be multiples of
/// `2·vae_scale` (16 for FLUX.1).
pub fn token_grid(height: usize, width: usize, vae_scale: usize) -> Result<(usize, usize), String> {
    let step = 2 * vae_scale;
    if height == 0 || width == 0 || !height.is_multiple_of(step) || !width.is_multiple_of(step) {
        return Err(format!(
            "{width}x{height}: width and height must be positive multiples of {step} (the VAE's {vae_scale}x times the 2x2 packing)"
        ));
    }
    Ok((height / step, width / step))
}
