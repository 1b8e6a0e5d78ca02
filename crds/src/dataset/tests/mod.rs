//! Tests of the dataset rules, the bounded line reader and the shipped example datasets.

mod examples;
mod line_limits;
mod parse;
mod rules_table;
mod summary;

use super::{DatasetKind, DatasetLimits, DatasetReport, validate_dataset};

/// A valid SFT line, used around bad lines so that line numbers are checked too.
const SFT_OK: &str =
    r#"{"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello!"}]}"#;

/// A valid DPO line.
const DPO_OK: &str = r#"{"messages":[{"role":"user","content":"Hi"}],"chosen":{"role":"assistant","content":"Hello!"},"rejected":{"role":"assistant","content":"What."}}"#;

fn validate(kind: DatasetKind, data: &[u8]) -> DatasetReport {
    validate_with(kind, data, &DatasetLimits::default())
}

fn validate_with(kind: DatasetKind, data: &[u8], limits: &DatasetLimits) -> DatasetReport {
    validate_dataset(data, kind, limits).expect("reading from memory cannot fail")
}

/// Problems as `(line, message)` pairs, which compare and print more readably.
fn problems(report: &DatasetReport) -> Vec<(u64, String)> {
    report
        .problems
        .iter()
        .map(|problem| (problem.line, problem.message.clone()))
        .collect()
}
