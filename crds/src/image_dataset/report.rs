//! What checking an image folder found: the images with their captions and sizes,
//! notes on what was left out, and the problems, each naming its file.

use std::fmt;

use super::CaptionFallback;

/// An image that passed, with its caption (`None`: trained on the trigger word).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptionedImage {
    pub name: String,
    pub caption: Option<String>,
    pub width: u32,
    pub height: u32,
}

/// A broken rule: about one file, or (`file: None`) the folder as a whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageProblem {
    pub file: Option<String>,
    pub message: String,
}

impl ImageProblem {
    pub fn file(name: &str, message: impl Into<String>) -> Self {
        Self {
            file: Some(name.to_owned()),
            message: message.into(),
        }
    }

    pub fn folder(message: impl Into<String>) -> Self {
        Self {
            file: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for ImageProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{file}: {}", self.message),
            None => write!(f, "the folder {}", self.message),
        }
    }
}

/// The outcome of [`super::validate_image_folder`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageFolderReport {
    pub images: Vec<CaptionedImage>,
    pub notes: Vec<String>,
    pub problems: Vec<ImageProblem>,
}

impl ImageFolderReport {
    pub fn is_valid(&self) -> bool {
        self.problems.is_empty()
    }

    /// Images without a caption: trained on the trigger word (a note), an error
    /// when the job has none, a note on what a job needs when no job is known.
    pub(super) fn judge_uncaptioned(&mut self, names: &[String], fallback: &CaptionFallback) {
        if names.is_empty() {
            return;
        }
        match fallback {
            CaptionFallback::TriggerWord(word) => self.notes.push(format!(
                "{} image(s) without a caption are trained on the trigger word {word:?} alone: {}",
                names.len(),
                names.join(", ")
            )),
            CaptionFallback::None => {
                for name in names {
                    self.problems.push(ImageProblem::file(
                        name,
                        "has no caption (a .txt file of the same name) and the job sets no hyperparameters.triggerWord to train it on",
                    ));
                }
            }
            CaptionFallback::Unknown => self.notes.push(format!(
                "{} image(s) without a caption need the job's hyperparameters.triggerWord: {}",
                names.len(),
                names.join(", ")
            )),
        }
    }
}

impl fmt::Display for ImageFolderReport {
    /// The report `trainer validate` prints.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let captioned = self.images.iter().filter(|i| i.caption.is_some()).count();
        writeln!(
            f,
            "{} images, {captioned} with a caption",
            self.images.len()
        )?;
        for note in &self.notes {
            writeln!(f, "note: {note}")?;
        }
        for problem in &self.problems {
            writeln!(f, "error: {problem}")?;
        }
        if self.is_valid() {
            writeln!(f, "valid")
        } else {
            writeln!(f, "invalid: {} problem(s)", self.problems.len())
        }
    }
}
