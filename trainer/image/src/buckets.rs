//! Training buckets: every image of an image job is resized and centre-cropped to
//! the nearest of three shapes of one resolution (square, 4:3 and 3:4), so a batch
//! holds images of one shape and no image is stretched. As diffusers' FLUX LoRA
//! script prepares its images: bilinear resize until the image covers the bucket,
//! then a centre crop, then pixels scaled to [-1, 1] for the VAE.

use burn::prelude::*;
use image::imageops::FilterType;
use image::{DynamicImage, RgbImage};

/// The side FLUX's latent tokens cover: the VAE's 8x, then 2x2 packing.
pub const PATCH_PIXELS: u32 = 16;

/// A training shape, in pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Bucket {
    pub width: u32,
    pub height: u32,
}

impl Bucket {
    /// Image tokens of this shape: one per 16x16 pixels.
    pub fn tokens(self) -> usize {
        ((self.width / PATCH_PIXELS) * (self.height / PATCH_PIXELS)) as usize
    }
}

impl std::fmt::Display for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

/// The three buckets of a resolution (its long side): `resolution` square, then
/// landscape and portrait with the short side 3/4 of it, rounded down to whole
/// 16-pixel patches.
pub fn buckets(resolution: u32) -> [Bucket; 3] {
    let short = (resolution * 3 / 4) / PATCH_PIXELS * PATCH_PIXELS;
    let short = short.max(PATCH_PIXELS);
    [
        Bucket {
            width: resolution,
            height: resolution,
        },
        Bucket {
            width: resolution,
            height: short,
        },
        Bucket {
            width: short,
            height: resolution,
        },
    ]
}

/// The bucket whose aspect ratio is nearest the image's (by the log of the ratio,
/// so 2:1 and 1:2 are equally far from square).
pub fn nearest_bucket(width: u32, height: u32, resolution: u32) -> Bucket {
    let aspect = (width as f64 / height as f64).ln();
    let distance = |b: &Bucket| (aspect - (b.width as f64 / b.height as f64).ln()).abs();
    buckets(resolution)
        .into_iter()
        .min_by(|a, b| distance(a).total_cmp(&distance(b)))
        .expect("three buckets")
}

/// The image resized (bilinear, antialiased when shrinking) until it covers the
/// bucket, then centre-cropped to it, as RGB.
pub fn fit_to_bucket(image: &DynamicImage, bucket: Bucket) -> RgbImage {
    let (width, height) = (image.width().max(1), image.height().max(1));
    let scale = f64::max(
        bucket.width as f64 / width as f64,
        bucket.height as f64 / height as f64,
    );
    // Rounded up so that rounding never leaves the image a pixel short of the bucket.
    let resized_width = ((width as f64 * scale).ceil() as u32).max(bucket.width);
    let resized_height = ((height as f64 * scale).ceil() as u32).max(bucket.height);
    let rgb = image.to_rgb8();
    let resized =
        image::imageops::resize(&rgb, resized_width, resized_height, FilterType::Triangle);
    let left = (resized_width - bucket.width) / 2;
    let top = (resized_height - bucket.height) / 2;
    image::imageops::crop_imm(&resized, left, top, bucket.width, bucket.height).to_image()
}

/// `[3, height, width]` in [-1, 1], the VAE encoder's input for one image.
pub fn pixels_for_vae<B: Backend>(image: &RgbImage, device: &B::Device) -> Tensor<B, 3> {
    let (width, height) = image.dimensions();
    let (width, height) = (width as usize, height as usize);
    // Planar: the channels first, as PyTorch's ToTensor lays them out.
    let mut planar = vec![0f32; 3 * width * height];
    for (x, y, pixel) in image.enumerate_pixels() {
        for channel in 0..3 {
            let value = pixel.0[channel] as f32 / 255.0 * 2.0 - 1.0;
            planar[channel * width * height + y as usize * width + x as usize] = value;
        }
    }
    Tensor::from_data(TensorData::new(planar, [3, height, width]), device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use anneal_model::backend::CpuBackend;

    #[test]
    fn a_resolution_gives_square_and_4_3_buckets_of_whole_patches() {
        assert_eq!(
            buckets(1024).map(|b| b.to_string()),
            ["1024x1024", "1024x768", "768x1024"]
        );
        assert_eq!(
            buckets(64).map(|b| b.to_string()),
            ["64x64", "64x48", "48x64"]
        );
        assert_eq!(buckets(1024)[1].tokens(), 64 * 48);
    }

    #[test]
    fn each_image_goes_to_the_bucket_of_the_nearest_aspect() {
        let cases = [
            ((1000, 1000), "1024x1024"),
            ((4000, 3000), "1024x768"),
            ((3000, 4000), "768x1024"),
            ((1920, 1080), "1024x768"),
            ((1100, 1000), "1024x1024"),
            ((1, 10), "768x1024"),
        ];
        for ((width, height), expected) in cases {
            assert_eq!(
                nearest_bucket(width, height, 1024).to_string(),
                expected,
                "{width}x{height}"
            );
        }
    }

    #[test]
    fn fitting_crops_the_centre_without_stretching() {
        // 80x40: a left half red, a right half blue, a green column in the middle.
        let image = RgbImage::from_fn(80, 40, |x, _| match x {
            39 | 40 => image::Rgb([0, 255, 0]),
            x if x < 40 => image::Rgb([255, 0, 0]),
            _ => image::Rgb([0, 0, 255]),
        });
        let bucket = Bucket {
            width: 32,
            height: 32,
        };
        let fitted = fit_to_bucket(&DynamicImage::ImageRgb8(image), bucket);
        assert_eq!(fitted.dimensions(), (32, 32));
        // Scaled by 32/40 to 64x32, cropped to columns 16..48: still red at the left
        // edge, blue at the right, the green seam at the centre.
        assert_eq!(fitted.get_pixel(0, 16).0, [255, 0, 0]);
        assert_eq!(fitted.get_pixel(31, 16).0, [0, 0, 255]);
        let centre = fitted.get_pixel(15, 16).0[1].max(fitted.get_pixel(16, 16).0[1]);
        assert!(centre > 100, "the seam stays in the middle: {centre}");
    }

    #[test]
    fn pixels_reach_the_vae_planar_in_minus_one_to_one() {
        let image = RgbImage::from_fn(2, 1, |x, _| image::Rgb([255 * x as u8, 0, 255]));
        let pixels = pixels_for_vae::<CpuBackend>(&image, &Default::default());
        assert_eq!(pixels.dims(), [3, 1, 2]);
        let values = pixels.into_data().to_vec::<f32>().unwrap();
        assert_eq!(values, vec![-1.0, 1.0, -1.0, -1.0, 1.0, 1.0]);
    }
}
