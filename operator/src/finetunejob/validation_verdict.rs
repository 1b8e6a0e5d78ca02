//! The Validating phase as a pure function: spec problems and dataset problems
//! become one verdict, with a reason for the `Validated` condition and a message
//! short enough for a status field and a Kubernetes Event.

use anneal_crds::FineTuneJob;
use anneal_crds::dataset::DatasetReport;
use anneal_crds::image_dataset::ImageFolderReport;
use anneal_crds::validation::validate_finetunejob;

/// Problems listed in a status message before the rest are only counted.
pub const MESSAGE_PROBLEMS_MAX: usize = 10;
/// Status messages stay well below the Event message limit (1 KiB is kept whole by kubectl describe).
pub const MESSAGE_BYTES_MAX: usize = 1024;

/// Why a job did or did not pass validation; the `reason` of the `Validated` condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerdictReason {
    Valid,
    InvalidSpec,
    InvalidDataset,
    /// The memory plan does not fit the GPU the job asks for.
    InsufficientGpuMemory,
    /// A hub model that does not exist at its revision, or that the job's token
    /// cannot read.
    ModelUnavailable,
}

impl VerdictReason {
    pub fn as_str(self) -> &'static str {
        match self {
            VerdictReason::Valid => "Valid",
            VerdictReason::InvalidSpec => "InvalidSpec",
            VerdictReason::InvalidDataset => "InvalidDataset",
            VerdictReason::InsufficientGpuMemory => "InsufficientGpuMemory",
            VerdictReason::ModelUnavailable => "ModelUnavailable",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub reason: VerdictReason,
    pub message: String,
}

impl Verdict {
    pub fn passed(&self) -> bool {
        self.reason == VerdictReason::Valid
    }
}

/// Judges the spec alone; run before the dataset is fetched, so that a bad spec
/// costs no storage reads.
pub fn judge_spec(job: &FineTuneJob) -> Verdict {
    match validate_finetunejob(job) {
        Ok(()) => Verdict {
            reason: VerdictReason::Valid,
            message: "spec is valid".to_owned(),
        },
        Err(errors) => {
            let lines: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
            Verdict {
                reason: VerdictReason::InvalidSpec,
                message: bounded_message("invalid spec", &lines, lines.len() as u64),
            }
        }
    }
}

/// Judges a dataset report; `source` names the field and URI it came from.
pub fn judge_dataset(source: &str, report: &DatasetReport) -> Verdict {
    if report.is_valid() {
        return Verdict {
            reason: VerdictReason::Valid,
            message: format!("{source}: {} samples", report.summary.samples),
        };
    }
    let lines: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
    Verdict {
        reason: VerdictReason::InvalidDataset,
        message: bounded_message(
            &format!("invalid dataset {source}"),
            &lines,
            report.problems_total,
        ),
    }
}

/// Judges an image folder's report; `source` names the field and URI.
pub fn judge_image_folder(source: &str, report: &ImageFolderReport) -> Verdict {
    if report.is_valid() {
        let uncaptioned = report.images.iter().filter(|i| i.caption.is_none()).count();
        let mut message = format!("{source}: {} images", report.images.len());
        if uncaptioned > 0 {
            message.push_str(&format!(
                " ({uncaptioned} without a caption, trained on the trigger word alone)"
            ));
        }
        return Verdict {
            reason: VerdictReason::Valid,
            message,
        };
    }
    let lines: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
    Verdict {
        reason: VerdictReason::InvalidDataset,
        message: bounded_message(
            &format!("invalid dataset {source}"),
            &lines,
            lines.len() as u64,
        ),
    }
}

/// `"{headline}: p1; p2; ... (and N more)"`, cut to whole problems within
/// [`MESSAGE_BYTES_MAX`] so no problem is shown half.
fn bounded_message(headline: &str, problems: &[String], total: u64) -> String {
    let mut message = format!("{headline}: ");
    let mut shown = 0u64;
    for problem in problems.iter().take(MESSAGE_PROBLEMS_MAX) {
        let separator = if shown == 0 { "" } else { "; " };
        // Leave room for the "(and N more)" tail.
        if message.len() + separator.len() + problem.len() + 32 > MESSAGE_BYTES_MAX {
            break;
        }
        message.push_str(separator);
        message.push_str(problem);
        shown += 1;
    }
    if total > shown {
        message.push_str(&format!(" (and {} more)", total - shown));
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use anneal_crds::dataset::{DatasetProblem, DatasetSummary};

    fn report(problems: u64, kept: usize, problem_len: usize) -> DatasetReport {
        DatasetReport {
            summary: DatasetSummary::default(),
            problems: (1..=kept as u64)
                .map(|line| DatasetProblem::new(line, "x".repeat(problem_len)))
                .collect(),
            problems_total: problems,
        }
    }

    #[test]
    fn a_dataset_verdict_lists_problems_and_counts_the_rest() {
        let verdict = judge_dataset("train file://d.jsonl", &report(12, 3, 5));
        assert_eq!(verdict.reason, VerdictReason::InvalidDataset);
        assert_eq!(
            verdict.message,
            "invalid dataset train file://d.jsonl: line 1: xxxxx; line 2: xxxxx; line 3: xxxxx (and 9 more)"
        );
    }

    #[test]
    fn long_problems_are_cut_whole_within_the_byte_bound() {
        let verdict = judge_dataset("train", &report(20, 20, 300));
        assert!(
            verdict.message.len() <= MESSAGE_BYTES_MAX,
            "{}",
            verdict.message.len()
        );
        assert!(
            verdict.message.ends_with(" (and 17 more)"),
            "{}",
            verdict.message
        );
    }

    #[test]
    fn a_valid_image_job_passes_the_spec_and_its_folder_is_judged_by_name() {
        let mut job = FineTuneJob::new(
            "dog",
            serde_json::from_value(serde_json::json!({
                "task": "text-to-image",
                "baseModel": {"name": "anneal-flux-tiny", "source": "s3://models/flux"},
                "dataset": {"images": "s3://data/dogs/"},
                "hyperparameters": {"triggerWord": "sks dog"},
            }))
            .unwrap(),
        );
        job.metadata.namespace = Some("default".into());
        assert_eq!(judge_spec(&job).reason, VerdictReason::Valid);

        use anneal_crds::image_dataset::{CaptionedImage, ImageProblem};
        let image = |name: &str, caption: Option<&str>| CaptionedImage {
            name: name.into(),
            caption: caption.map(str::to_owned),
            width: 64,
            height: 64,
        };
        let good = ImageFolderReport {
            images: vec![image("a.png", Some("a dog")), image("b.png", None)],
            notes: Vec::new(),
            problems: Vec::new(),
        };
        let verdict = judge_image_folder("spec.dataset.images s3://data/dogs/", &good);
        assert_eq!(
            (verdict.reason, verdict.message.as_str()),
            (
                VerdictReason::Valid,
                "spec.dataset.images s3://data/dogs/: 2 images (1 without a caption, trained on the trigger word alone)"
            )
        );
        let bad = ImageFolderReport {
            problems: vec![ImageProblem::file(
                "c.jpg",
                "is not a JPEG, PNG or WebP image",
            )],
            ..good
        };
        let verdict = judge_image_folder("spec.dataset.images s3://data/dogs/", &bad);
        assert_eq!(
            (verdict.reason, verdict.message.as_str()),
            (
                VerdictReason::InvalidDataset,
                "invalid dataset spec.dataset.images s3://data/dogs/: c.jpg: is not a JPEG, PNG or WebP image"
            )
        );
    }

    #[test]
    fn a_bad_spec_names_its_fields() {
        let mut job = FineTuneJob::new(
            "j",
            serde_json::from_value(serde_json::json!({
                "baseModel": {"name": "m", "source": "ftp://x"},
                "dataset": {"train": "file://d.jsonl"},
                "hyperparameters": {"epochs": 11},
            }))
            .unwrap(),
        );
        job.metadata.namespace = Some("default".into());
        let verdict = judge_spec(&job);
        assert_eq!(verdict.reason, VerdictReason::InvalidSpec);
        assert_eq!(
            verdict.message,
            "invalid spec: spec.baseModel.source: must start with one of s3://, gs://, az://, pvc://, file://, hf://, modelscope://, got \"ftp://x\"; spec.hyperparameters.epochs: must be between 1 and 10, got 11"
        );
    }
}
