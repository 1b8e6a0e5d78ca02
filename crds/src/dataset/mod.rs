//! Dataset checking: the jsonl chat-data rules of docs/design.md "Dataset rules", shared by
//! `trainer validate`, the trainer's data loader and the operator.
//!
//! A dataset is UTF-8 text with one JSON object a line:
//!
//! ```text
//! {"messages": [{"role": "system", "content": "..."}, {"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]}
//! {"messages": [{"role": "user", "content": "..."}], "chosen": {"role": "assistant", "content": "..."}, "rejected": {"role": "assistant", "content": "..."}}
//! ```
//!
//! - [`parse_sample`] checks one line's text and returns the sample or the reason it is refused.
//! - [`read_samples`] streams a file as `(line number, sample or problem)`; the trainer loads
//!   data with it, so training and validation can never disagree about a line.
//! - [`validate_dataset`] reads a whole file with [`read_samples`] and returns a
//!   [`DatasetReport`]: summary counts, tolerated oddities as notes, and the problems.
//!
//! Line numbers count from 1. A problem about the file as a whole (it holds no samples) has
//! line [`FILE_LEVEL_LINE`] (0) and displays as `file: ...` instead of `line N: ...`.
//! Memory stays bounded by [`DatasetLimits::max_line_bytes`] whatever the input: a longer
//! line is counted and skipped, never read whole.

mod line_reader;
mod report;
mod rules;
mod samples;
mod types;
mod validate;

#[cfg(test)]
mod tests;

pub use report::{
    DEFAULT_MAX_ERRORS, DEFAULT_MAX_LINE_BYTES, DatasetLimits, DatasetProblem, DatasetReport,
    DatasetSummary, FILE_LEVEL_LINE,
};
pub use rules::parse_sample;
pub use samples::{SampleReader, read_samples};
pub use types::{ChatMessage, ChatSample, DatasetKind, Role};
pub use validate::validate_dataset;
