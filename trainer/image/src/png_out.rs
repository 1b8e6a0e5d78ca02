//! Images as PNG files: `[3, height, width]` values in [0, 1] to 8-bit RGB, rounded
//! as diffusers' `numpy_to_pil` rounds them (`round(v · 255)`).

/// Why an image could not be encoded.
#[derive(Debug, thiserror::Error)]
#[error("encoding a PNG: {0}")]
pub struct PngError(#[from] png::EncodingError);

/// `chw`: one image's `3 · height · width` values, channel-major, in [0, 1].
pub fn encode_png(chw: &[f32], width: usize, height: usize) -> Result<Vec<u8>, PngError> {
    let plane = width * height;
    assert_eq!(chw.len(), 3 * plane, "an RGB image of {width}x{height}");
    let mut rgb = Vec::with_capacity(3 * plane);
    for pixel in 0..plane {
        for channel in 0..3 {
            let value = chw[channel * plane + pixel].clamp(0.0, 1.0);
            // Ties to even, as numpy's round.
            rgb.push((value * 255.0).round_ties_even() as u8);
        }
    }
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, width as u32, height as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(&rgb)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixels_round_trip_through_a_png_decoder() {
        // 2x1: a red pixel and a grey one (0.5 rounds to 128 as numpy rounds 127.5).
        let chw = [1.0, 0.5, 0.0, 0.5, 0.0, 0.5];
        let bytes = encode_png(&chw, 2, 1).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buffer = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buffer).unwrap();
        assert_eq!((info.width, info.height), (2, 1));
        assert_eq!(&buffer[..info.buffer_size()], &[255, 0, 0, 128, 128, 128]);
    }
}
