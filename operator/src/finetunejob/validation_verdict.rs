//! The Validating phase as a pure function: spec problems and dataset problems
//! become one verdict, with a reason for the `Validated` condition and a message
//! short enough for a status field and a Kubernetes Event.

use anneal_crds::FineTuneJob;
use anneal_crds::dataset::DatasetReport;
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
    /// A task this version validates but cannot train yet.
    UnsupportedTask,
}

impl VerdictReason {
    pub fn as_str(self) -> &'static str {
        match self {
            VerdictReason::Valid => "Valid",
            VerdictReason::InvalidSpec => "InvalidSpec",
            VerdictReason::InvalidDataset => "InvalidDataset",
            VerdictReason::InsufficientGpuMemory => "InsufficientGpuMemory",
            VerdictReason::ModelUnavailable => "ModelUnavailable",
            VerdictReason::UnsupportedTask => "UnsupportedTask",
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
        // The API and its dataset rules are in place; the trainer's image objective
        // is not yet, so an image job ends here rather than on a trainer pod.
        Ok(()) if job.spec.task.is_image() => Verdict {
            reason: VerdictReason::UnsupportedTask,
            message: format!(
                "spec.task: {}",
                anneal_crds::finetunejob::IMAGE_TRAINING_NOT_YET
            ),
        },
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
    fn a_valid_image_job_ends_in_validating_until_the_trainer_has_the_objective() {
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
        let verdict = judge_spec(&job);
        assert_eq!(verdict.reason.as_str(), "UnsupportedTask");
        assert!(
            verdict
                .message
                .starts_with("spec.task: text-to-image training is not in this version yet"),
            "{}",
            verdict.message
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
