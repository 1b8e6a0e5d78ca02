//! Images as PNG files: `[3, height, width]` values in [0, 1] to 8-bit RGB, rounded
//! as diffusers' `numpy_to_pil` rounds them (`round(v · 255)`); and a training run's
//! contact sheet of its samples.

/// Why an image could not be encoded.
#[derive(Debug, thiserror::Error)]
#[error("encoding a PNG: {0}")]
pub struct PngError(#[from] png::EncodingError);

/// `chw`: one image's `3 · height · width` values, channel-major, in [0, 1].
pub fn encode_png(chw: &[f32], width: usize, height: usize) -> Result<Vec<u8>, PngError> {
    encode_rgb_png(&rgb_bytes(chw, width, height), width, height)
}

/// `chw` as interleaved 8-bit RGB, rounded as numpy rounds (ties to even).
pub fn rgb_bytes(chw: &[f32], width: usize, height: usize) -> Vec<u8> {
    let plane = width * height;
    assert_eq!(chw.len(), 3 * plane, "an RGB image of {width}x{height}");
    let mut rgb = Vec::with_capacity(3 * plane);
    for pixel in 0..plane {
        for channel in 0..3 {
            let value = chw[channel * plane + pixel].clamp(0.0, 1.0);
            rgb.push((value * 255.0).round_ties_even() as u8);
        }
    }
    rgb
}

/// Images of one size in a grid, `rows[r][c]` at row r and column c, `gap` pixels of
/// white between them and around: a run's contact sheet (epochs down, prompts
/// across). Each image is 8-bit RGB of `width` x `height`.
pub fn contact_sheet(rows: &[Vec<Vec<u8>>], width: usize, height: usize, gap: usize) -> Vec<u8> {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let sheet_width = columns * (width + gap) + gap;
    let sheet_height = rows.len() * (height + gap) + gap;
    let mut sheet = vec![255u8; sheet_width * sheet_height * 3];
    for (r, row) in rows.iter().enumerate() {
        for (c, image) in row.iter().enumerate() {
            assert_eq!(
                image.len(),
                width * height * 3,
                "a {width}x{height} RGB image"
            );
            let (left, top) = (gap + c * (width + gap), gap + r * (height + gap));
            for y in 0..height {
                let from = y * width * 3;
                let to = ((top + y) * sheet_width + left) * 3;
                sheet[to..to + width * 3].copy_from_slice(&image[from..from + width * 3]);
            }
        }
    }
    sheet
}

/// Interleaved 8-bit RGB of `width` x `height` as a PNG file.
pub fn encode_rgb_png(rgb: &[u8], width: usize, height: usize) -> Result<Vec<u8>, PngError> {
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, width as u32, height as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(rgb)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_contact_sheet_places_each_image_in_its_row_and_column() {
        // Two rows of 2x1 images: row 0 black and red, row 1 one blue image.
        let black = vec![0u8; 6];
        let red = [255u8, 0, 0, 255, 0, 0].to_vec();
        let blue = [0u8, 0, 255, 0, 0, 255].to_vec();
        let sheet = contact_sheet(&[vec![black, red], vec![blue]], 2, 1, 1);
        // 2 columns of 2 pixels and 3 gaps: 7 wide; 2 rows of 1 and 3 gaps: 5 high.
        assert_eq!(sheet.len(), 7 * 5 * 3);
        let pixel = |x: usize, y: usize| sheet[(y * 7 + x) * 3..(y * 7 + x) * 3 + 3].to_vec();
        assert_eq!(pixel(0, 0), vec![255, 255, 255], "the gap is white");
        assert_eq!(pixel(1, 1), vec![0, 0, 0]);
        assert_eq!(pixel(4, 1), vec![255, 0, 0]);
        assert_eq!(pixel(2, 3), vec![0, 0, 255]);
        assert_eq!(
            pixel(4, 3),
            vec![255, 255, 255],
            "an empty cell stays white"
        );
    }

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
