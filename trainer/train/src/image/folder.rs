//! An image job's folder read for training: the same rules as `trainer validate`
//! (anneal_crds::image_dataset), each image fitted to its bucket as it is decoded,
//! and each caption led by the trigger word.

use std::path::Path;

use anneal_crds::ResolvedHyperparameters;
use anneal_crds::image_dataset::{
    CaptionFallback, ImageFolderLimits, ImageProblem, list_local_folder, read_image_folder,
};
use anneal_image::buckets::{fit_to_bucket, nearest_bucket};
use anneal_image::training_examples::TrainingImage;

/// Why the folder cannot be trained on: every problem, each naming its file.
#[derive(Debug, thiserror::Error)]
#[error("{}", render(.problems))]
pub struct ImageFolderError {
    pub problems: Vec<ImageProblem>,
}

fn render(problems: &[ImageProblem]) -> String {
    let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
    lines.join("; ")
}

/// The folder's images fitted to the buckets of `resolution`, with their captions,
/// and the notes to report (files left out, images trained on the trigger word).
pub struct LoadedFolder {
    pub images: Vec<TrainingImage>,
    pub notes: Vec<String>,
}

/// The caption an image is trained with: the trigger word first, then its caption.
pub fn training_caption(trigger_word: Option<&str>, caption: Option<&str>) -> String {
    match (trigger_word, caption) {
        (Some(word), Some(caption)) => format!("{word}, {caption}"),
        (Some(word), None) => word.to_owned(),
        (None, Some(caption)) => caption.to_owned(),
        (None, None) => String::new(),
    }
}

/// Reads `dir` (a local folder) for a job with hyperparameters `h`, at `resolution`.
pub fn load_image_folder(
    dir: &Path,
    h: &ResolvedHyperparameters,
    resolution: u32,
) -> Result<LoadedFolder, ImageFolderError> {
    let listing = list_local_folder(dir).map_err(|(path, error)| ImageFolderError {
        problems: vec![ImageProblem::folder(format!(
            "cannot be read: {}: {error}",
            path.display()
        ))],
    })?;
    let fallback = match &h.trigger_word {
        Some(word) => CaptionFallback::TriggerWord(word.clone()),
        None => CaptionFallback::None,
    };
    let mut images = Vec::new();
    let report = read_image_folder(
        &listing,
        &fallback,
        &ImageFolderLimits::default(),
        &mut |name| std::fs::read(dir.join(name)).map_err(|e| format!("cannot be read: {e}")),
        &mut |entry, decoded| {
            let bucket = nearest_bucket(entry.width, entry.height, resolution);
            images.push(TrainingImage {
                name: entry.name.clone(),
                bucket,
                pixels: fit_to_bucket(&decoded, bucket),
                caption: training_caption(h.trigger_word.as_deref(), entry.caption.as_deref()),
            });
        },
    );
    if !report.is_valid() {
        return Err(ImageFolderError {
            problems: report.problems,
        });
    }
    Ok(LoadedFolder {
        images,
        notes: report.notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use anneal_crds::finetunejob::Task;
    use anneal_crds::hyperparameters::HyperparametersSpec;

    fn hyperparameters(trigger_word: Option<&str>) -> ResolvedHyperparameters {
        HyperparametersSpec {
            trigger_word: trigger_word.map(str::to_owned),
            ..Default::default()
        }
        .resolve_for(Task::TextToImage)
    }

    fn write_image(path: &Path, width: u32, height: u32) {
        image::RgbImage::from_fn(width, height, |x, _| image::Rgb([x as u8, 9, 9]))
            .save(path)
            .unwrap();
    }

    #[test]
    fn each_image_is_fitted_to_its_bucket_and_captioned_after_the_trigger_word() {
        let dir = tempfile::tempdir().unwrap();
        write_image(&dir.path().join("a.png"), 200, 150);
        std::fs::write(dir.path().join("a.txt"), "a dog on grass\n").unwrap();
        write_image(&dir.path().join("b.jpg"), 90, 120);
        let loaded = load_image_folder(dir.path(), &hyperparameters(Some("sks dog")), 64).unwrap();
        let found: Vec<(&str, String, &str, (u32, u32))> = loaded
            .images
            .iter()
            .map(|i| {
                (
                    i.name.as_str(),
                    i.bucket.to_string(),
                    i.caption.as_str(),
                    i.pixels.dimensions(),
                )
            })
            .collect();
        assert_eq!(
            found,
            vec![
                (
                    "a.png",
                    "64x48".to_owned(),
                    "sks dog, a dog on grass",
                    (64, 48)
                ),
                ("b.jpg", "48x64".to_owned(), "sks dog", (48, 64)),
            ]
        );
        assert_eq!(
            loaded.notes,
            vec![
                "1 image(s) without a caption are trained on the trigger word \"sks dog\" alone: b.jpg"
            ]
        );
    }

    #[test]
    fn a_folder_that_breaks_the_rules_names_each_file() {
        let dir = tempfile::tempdir().unwrap();
        write_image(&dir.path().join("a.png"), 20, 20);
        std::fs::write(dir.path().join("b.png"), b"not an image").unwrap();
        let error = load_image_folder(dir.path(), &hyperparameters(None), 64)
            .err()
            .expect("refused");
        assert_eq!(
            error.to_string(),
            "b.png: is not a JPEG, PNG or WebP image; a.png: has no caption (a .txt file of the same name) and the job sets no hyperparameters.triggerWord to train it on"
        );
    }
}
