//! Image datasets: the folder of captioned images an image job (`task:
//! text-to-image`) trains on, checked by the same rules in `trainer validate DIR`,
//! the trainer's loader and the operator's Validating phase. Every problem names its
//! file.
//!
//! - Images are `.jpg`, `.jpeg`, `.png` and `.webp` files (any case) at the top of the
//!   folder; each is decoded once, so an unreadable or corrupt one is refused by name.
//! - An image's caption is the `.txt` file of the same name (`dog1.png` and
//!   `dog1.txt`): UTF-8, at most 128 KB. Without one (or with an empty one) the image
//!   is trained on the trigger word alone, which needs `hyperparameters.triggerWord`.
//! - At most 100 images and 300 MB in all, at most 5 MB an image.
//! - Other files, files in subfolders and captions without an image are left out and
//!   listed as notes.
//!
//! [`plan_folder`] judges a listing (names and sizes, nothing read);
//! [`validate_image_folder`] then reads and decodes each file through the caller's
//! reader (a local folder or object storage), and [`read_image_folder`] also hands
//! each decoded image to the caller. [`check_image_headers`] is the operator's
//! check: the same rules with each image's header read instead of its pixels.

mod decode;
mod listing;
mod local;
mod report;

#[cfg(test)]
mod tests;

pub use decode::{DECODE_LIMITS_PIXELS, caption_text, decode_image, image_header};
pub use listing::{FolderPlan, ImagePair, plan_folder};
pub use local::list_local_folder;
pub use report::{CaptionedImage, ImageFolderReport, ImageProblem};

/// File name endings of images, compared without case.
pub const IMAGE_EXTENSIONS: [&str; 4] = ["jpg", "jpeg", "png", "webp"];
/// The ending of caption files.
pub const CAPTION_EXTENSION: &str = "txt";

/// The bounds of an image folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageFolderLimits {
    pub max_images: usize,
    /// Images and captions together.
    pub max_total_bytes: u64,
    pub max_image_bytes: u64,
    pub max_caption_bytes: u64,
}

impl Default for ImageFolderLimits {
    fn default() -> Self {
        Self {
            max_images: 100,
            max_total_bytes: 300 * 1000 * 1000,
            max_image_bytes: 5 * 1000 * 1000,
            max_caption_bytes: 128 * 1024,
        }
    }
}

/// A file of the folder as a listing gives it: its path relative to the folder
/// (`/`-separated) and its size in bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FolderFile {
    pub name: String,
    pub size: u64,
}

/// What an image without a caption is trained on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CaptionFallback {
    /// The job's `hyperparameters.triggerWord`.
    TriggerWord(String),
    /// The job sets none: an image without a caption is an error.
    None,
    /// No job is known (`trainer validate DIR`): say what a job needs, as a note.
    Unknown,
}

/// Checks a whole folder: the listing's rules, then every caption and image read
/// through `read` (which returns a file's bytes or why it could not). Images are
/// not read when the listing already breaks a bound.
pub fn validate_image_folder(
    files: &[FolderFile],
    fallback: &CaptionFallback,
    limits: &ImageFolderLimits,
    read: &mut dyn FnMut(&str) -> Result<Vec<u8>, String>,
) -> ImageFolderReport {
    read_image_folder(files, fallback, limits, read, &mut |_, _| {})
}

/// [`validate_image_folder`], handing each image that decodes to `on_image` with its
/// entry in the report (the trainer fits it to its bucket there, so the folder's
/// full-size images are never all in memory at once).
pub fn read_image_folder(
    files: &[FolderFile],
    fallback: &CaptionFallback,
    limits: &ImageFolderLimits,
    read: &mut dyn FnMut(&str) -> Result<Vec<u8>, String>,
    on_image: &mut dyn FnMut(&CaptionedImage, image::DynamicImage),
) -> ImageFolderReport {
    let mut look = |bytes: &[u8]| decode_image(bytes).map(Looked::Decoded);
    walk_folder(files, fallback, limits, read, &mut look, on_image)
}

/// [`validate_image_folder`] reading each image's header only (its format and size),
/// never its pixels: memory stays within one file's bytes (at most
/// `max_image_bytes`) whatever size an image claims. A file whose pixel data is
/// damaged past its header passes here and is refused by the trainer's decode.
pub fn check_image_headers(
    files: &[FolderFile],
    fallback: &CaptionFallback,
    limits: &ImageFolderLimits,
    read: &mut dyn FnMut(&str) -> Result<Vec<u8>, String>,
) -> ImageFolderReport {
    let mut look = |bytes: &[u8]| image_header(bytes).map(|(w, h)| Looked::Header(w, h));
    walk_folder(files, fallback, limits, read, &mut look, &mut |_, _| {})
}

/// What was learnt of an image: its pixels, or only its header's size.
enum Looked {
    Decoded(image::DynamicImage),
    Header(u32, u32),
}

/// The listing's rules, then each caption read and each image looked at with `look`.
fn walk_folder(
    files: &[FolderFile],
    fallback: &CaptionFallback,
    limits: &ImageFolderLimits,
    read: &mut dyn FnMut(&str) -> Result<Vec<u8>, String>,
    look: &mut dyn FnMut(&[u8]) -> Result<Looked, String>,
    on_image: &mut dyn FnMut(&CaptionedImage, image::DynamicImage),
) -> ImageFolderReport {
    let plan = plan_folder(files, limits);
    let mut report = ImageFolderReport {
        images: Vec::new(),
        notes: plan.notes,
        problems: plan.problems,
    };
    if !report.problems.is_empty() {
        return report;
    }
    for pair in &plan.pairs {
        let caption = match &pair.caption {
            Some(file) => match read(&file.name).and_then(|bytes| caption_text(&bytes)) {
                Ok(text) if text.is_empty() => {
                    report
                        .notes
                        .push(format!("{} is empty: the image has no caption", file.name));
                    None
                }
                Ok(text) => Some(text),
                Err(why) => {
                    report.problems.push(ImageProblem::file(&file.name, why));
                    continue;
                }
            },
            None => None,
        };
        match read(&pair.image.name).and_then(|bytes| look(&bytes)) {
            Ok(looked) => {
                let (width, height) = match &looked {
                    Looked::Decoded(image) => (image.width(), image.height()),
                    Looked::Header(width, height) => (*width, *height),
                };
                let entry = CaptionedImage {
                    name: pair.image.name.clone(),
                    caption,
                    width,
                    height,
                };
                if let Looked::Decoded(image) = looked {
                    on_image(&entry, image);
                }
                report.images.push(entry);
            }
            Err(why) => report
                .problems
                .push(ImageProblem::file(&pair.image.name, why)),
        }
    }
    let uncaptioned: Vec<String> = (report.images.iter())
        .filter(|image| image.caption.is_none())
        .map(|image| image.name.clone())
        .collect();
    report.judge_uncaptioned(&uncaptioned, fallback);
    report
}
