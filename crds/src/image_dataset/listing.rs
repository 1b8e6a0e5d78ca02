//! The rules a folder's listing can be judged by before any file is read: which
//! files are images and which their captions, and the bounds on count and size.

use std::collections::BTreeMap;

use super::report::ImageProblem;
use super::{CAPTION_EXTENSION, FolderFile, IMAGE_EXTENSIONS, ImageFolderLimits};

/// An image and its caption file, if it has one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImagePair {
    pub image: FolderFile,
    pub caption: Option<FolderFile>,
}

/// What the listing says: the images to read (sorted by name), files left out, and
/// the rules broken.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FolderPlan {
    pub pairs: Vec<ImagePair>,
    pub notes: Vec<String>,
    pub problems: Vec<ImageProblem>,
}

/// Names of files left out listed in one note, the rest counted.
const NAMES_IN_A_NOTE: usize = 10;

/// Judges a listing: pairs each top-level image with its caption and checks the
/// bounds of `limits`.
pub fn plan_folder(files: &[FolderFile], limits: &ImageFolderLimits) -> FolderPlan {
    let mut plan = FolderPlan::default();
    // By stem: the images and the caption of that name.
    let mut stems: BTreeMap<&str, (Vec<&FolderFile>, Option<&FolderFile>)> = BTreeMap::new();
    let mut in_subfolders = Vec::new();
    let mut other = Vec::new();
    for file in files {
        if file.name.contains('/') {
            in_subfolders.push(file.name.as_str());
            continue;
        }
        let Some((stem, extension)) = file.name.rsplit_once('.') else {
            other.push(file.name.as_str());
            continue;
        };
        let extension = extension.to_ascii_lowercase();
        if IMAGE_EXTENSIONS.contains(&extension.as_str()) && !stem.is_empty() {
            stems.entry(stem).or_default().0.push(file);
        } else if extension == CAPTION_EXTENSION && !stem.is_empty() {
            stems.entry(stem).or_default().1 = Some(file);
        } else {
            other.push(file.name.as_str());
        }
    }
    let mut orphan_captions = Vec::new();
    for (images, caption) in stems.into_values() {
        match images.as_slice() {
            [] => orphan_captions.extend(caption.map(|c| c.name.as_str())),
            [image] => plan.pairs.push(ImagePair {
                image: (*image).clone(),
                caption: caption.cloned(),
            }),
            several => {
                let names: Vec<&str> = several.iter().map(|f| f.name.as_str()).collect();
                plan.problems.push(ImageProblem::file(
                    names[0],
                    format!(
                        "{} share one name, so one caption: rename all but one",
                        names.join(", ")
                    ),
                ));
            }
        }
    }
    note_left_out(&mut plan.notes, "not an image or a caption", &other);
    note_left_out(&mut plan.notes, "in a subfolder", &in_subfolders);
    note_left_out(
        &mut plan.notes,
        "a caption without an image",
        &orphan_captions,
    );
    check_bounds(&mut plan, limits);
    plan
}

/// One note naming the files left out for `why`.
fn note_left_out(notes: &mut Vec<String>, why: &str, names: &[&str]) {
    if names.is_empty() {
        return;
    }
    let mut listed = names[..names.len().min(NAMES_IN_A_NOTE)].join(", ");
    if names.len() > NAMES_IN_A_NOTE {
        listed.push_str(&format!(" and {} more", names.len() - NAMES_IN_A_NOTE));
    }
    notes.push(format!("left out ({why}): {listed}"));
}

fn check_bounds(plan: &mut FolderPlan, limits: &ImageFolderLimits) {
    let count = plan.pairs.len();
    if count == 0 && plan.problems.is_empty() {
        plan.problems.push(ImageProblem::folder(
            "holds no images (.jpg, .jpeg, .png or .webp at its top level)",
        ));
    }
    if count > limits.max_images {
        plan.problems.push(ImageProblem::folder(format!(
            "holds {count} images; at most {} are allowed",
            limits.max_images
        )));
    }
    let mut total = 0u64;
    for pair in &plan.pairs {
        total += pair.image.size;
        if pair.image.size > limits.max_image_bytes {
            plan.problems.push(ImageProblem::file(
                &pair.image.name,
                format!(
                    "{} bytes; an image may have at most {}",
                    pair.image.size, limits.max_image_bytes
                ),
            ));
        }
        if let Some(caption) = &pair.caption {
            total += caption.size;
            if caption.size > limits.max_caption_bytes {
                plan.problems.push(ImageProblem::file(
                    &caption.name,
                    format!(
                        "{} bytes; a caption may have at most {}",
                        caption.size, limits.max_caption_bytes
                    ),
                ));
            }
        }
    }
    if total > limits.max_total_bytes {
        plan.problems.push(ImageProblem::folder(format!(
            "holds {total} bytes of images and captions; at most {} are allowed",
            limits.max_total_bytes
        )));
    }
}
