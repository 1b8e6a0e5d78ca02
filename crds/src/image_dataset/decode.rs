//! Reading one file of an image folder: a caption's text, and an image decoded
//! whole (a truncated or corrupt file fails here, by name, rather than mid-training)
//! within bounds that keep a small file from asking for gigabytes.

use std::io::Cursor;

use image::{DynamicImage, ImageFormat, ImageReader, Limits};

/// The largest image decoded, in pixels a side: 8,192 (a 5 MB file can claim far
/// more, and would then need its width x height x 4 bytes).
pub const DECODE_LIMITS_PIXELS: u32 = 8192;

/// A caption file's text, trimmed.
pub fn caption_text(bytes: &[u8]) -> Result<String, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        format!(
            "is not UTF-8 text (byte {} is not valid)",
            e.valid_up_to() + 1
        )
    })?;
    Ok(text.trim().to_owned())
}

/// Decodes a JPEG, PNG or WebP image, told apart by its content (not its name).
pub fn decode_image(bytes: &[u8]) -> Result<DynamicImage, String> {
    let (reader, format) = image_reader(bytes)?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(DECODE_LIMITS_PIXELS);
    limits.max_image_height = Some(DECODE_LIMITS_PIXELS);
    limits.max_alloc = Some(u64::from(DECODE_LIMITS_PIXELS).pow(2) * 4);
    let mut reader = reader;
    reader.limits(limits);
    reader
        .decode()
        .map_err(|e| format!("cannot be decoded as a {} image: {e}", format_name(format)))
}

/// The width and height a JPEG, PNG or WebP image's header gives, read without
/// decoding its pixels: what the operator checks, in bounded memory, before a pod is
/// scheduled (the trainer decodes every image whole as it loads the folder).
pub fn image_header(bytes: &[u8]) -> Result<(u32, u32), String> {
    let (reader, format) = image_reader(bytes)?;
    let (width, height) = reader
        .into_dimensions()
        .map_err(|e| format!("cannot be decoded as a {} image: {e}", format_name(format)))?;
    if width.max(height) > DECODE_LIMITS_PIXELS {
        return Err(format!(
            "cannot be decoded as a {} image: {width}x{height} is larger than {DECODE_LIMITS_PIXELS} pixels a side",
            format_name(format)
        ));
    }
    Ok((width, height))
}

/// A reader over an image file's bytes in memory.
type BytesReader<'a> = ImageReader<Cursor<&'a [u8]>>;

/// A reader of `bytes` and its format, refused unless JPEG, PNG or WebP.
fn image_reader(bytes: &[u8]) -> Result<(BytesReader<'_>, ImageFormat), String> {
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| format!("cannot be read: {e}"))?;
    let format = match reader.format() {
        Some(format @ (ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::WebP)) => format,
        Some(other) => {
            return Err(format!(
                "is a {} image; only JPEG, PNG and WebP are read",
                other.extensions_str().first().unwrap_or(&"other")
            ));
        }
        None => return Err("is not a JPEG, PNG or WebP image".to_owned()),
    };
    Ok((reader, format))
}

fn format_name(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Jpeg => "JPEG",
        ImageFormat::Png => "PNG",
        _ => "WebP",
    }
}
