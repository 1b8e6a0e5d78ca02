//! Checks a whole dataset and sums it up: what `trainer validate` and the operator report.

use std::io::{self, Read};

use super::report::{DatasetLimits, DatasetProblem, DatasetReport, DatasetSummary};
use super::samples::read_samples;
use super::types::DatasetKind;

/// Reads `reader` to the end with [`read_samples`](super::read_samples), so memory stays
/// bounded by `limits.max_line_bytes` however large the file is. Every line is read even
/// after `limits.max_errors` problems, so that the counts cover the whole file.
///
/// # Errors
///
/// Only a failure to read; what is wrong with the data is in the report.
pub fn validate_dataset<R: Read>(
    reader: R,
    kind: DatasetKind,
    limits: &DatasetLimits,
) -> io::Result<DatasetReport> {
    let mut samples = read_samples(reader, kind, limits);
    let mut report = DatasetReport {
        summary: DatasetSummary::default(),
        problems: Vec::new(),
        problems_total: 0,
    };
    for item in samples.by_ref() {
        match item? {
            (line, Ok(sample)) => report.summary.record(line, &sample),
            (_, Err(problem)) => keep(&mut report, problem, limits),
        }
    }
    report.summary.lines = samples.lines_read();
    report.summary.notes = samples.notes();
    // Every line is either a sample or a problem, so this means the file has no lines.
    if report.summary.samples == 0 && report.problems_total == 0 {
        let problem = DatasetProblem::file(
            "no samples: the file is empty (a dataset holds one JSON object a line)",
        );
        keep(&mut report, problem, limits);
    }
    Ok(report)
}

fn keep(report: &mut DatasetReport, problem: DatasetProblem, limits: &DatasetLimits) {
    report.problems_total += 1;
    if report.problems.len() < limits.max_errors {
        report.problems.push(problem);
    }
}
