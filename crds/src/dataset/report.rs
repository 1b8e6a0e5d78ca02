//! What checking a dataset produces: limits in, problems and summary counts out.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::types::{ChatSample, Role};

/// Default for [`DatasetLimits::max_line_bytes`]: 16 MiB, far above any sample a model's
/// context could hold, low enough that a file without line ends cannot exhaust memory.
pub const DEFAULT_MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// Default for [`DatasetLimits::max_errors`]: enough to see a pattern, few enough to read.
pub const DEFAULT_MAX_ERRORS: usize = 20;

/// The line number of a problem about the file as a whole rather than one of its lines.
pub const FILE_LEVEL_LINE: u64 = 0;

/// Bounds on what checking a dataset may cost and report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatasetLimits {
    /// Longest line accepted, in bytes without its line end; longer lines are problems.
    pub max_line_bytes: usize,
    /// Problems kept in [`DatasetReport::problems`]; later ones are only counted.
    pub max_errors: usize,
}

impl Default for DatasetLimits {
    fn default() -> Self {
        Self {
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            max_errors: DEFAULT_MAX_ERRORS,
        }
    }
}

/// One reason a dataset is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetProblem {
    /// Line number counted from 1, or [`FILE_LEVEL_LINE`] for the file as a whole.
    pub line: u64,
    /// What is wrong, in words, without a `line N:` prefix.
    pub message: String,
}

impl DatasetProblem {
    pub fn new(line: u64, message: impl Into<String>) -> Self {
        Self {
            line,
            message: message.into(),
        }
    }

    /// A problem about the whole file, e.g. that it holds no samples.
    pub fn file(message: impl Into<String>) -> Self {
        Self::new(FILE_LEVEL_LINE, message)
    }

    pub fn is_file_level(&self) -> bool {
        self.line == FILE_LEVEL_LINE
    }
}

impl fmt::Display for DatasetProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_file_level() {
            write!(f, "file: {}", self.message)
        } else {
            write!(f, "line {}: {}", self.line, self.message)
        }
    }
}

impl std::error::Error for DatasetProblem {}

/// Counts over the lines read; sample counts cover valid samples only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatasetSummary {
    /// Valid lines.
    pub samples: u64,
    /// Lines read, valid or not; a final line end does not start another line.
    pub lines: u64,
    /// Messages in valid samples; DPO's `chosen` and `rejected` are not turns.
    pub turns: u64,
    pub system_messages: u64,
    pub user_messages: u64,
    pub assistant_messages: u64,
    /// Characters (not bytes) of all content in valid samples, `chosen` and `rejected` included.
    pub characters: u64,
    /// `(line, characters)` of the valid sample with the most characters; the first one on a tie.
    pub longest_sample: Option<(u64, u64)>,
    /// Oddities that were tolerated, e.g. a byte-order mark or CRLF line ends.
    pub notes: Vec<String>,
}

impl DatasetSummary {
    /// Counts one valid sample found on `line`.
    pub(super) fn record(&mut self, line: u64, sample: &ChatSample) {
        self.samples += 1;
        self.turns += sample.messages.len() as u64;
        for message in &sample.messages {
            match message.role {
                Role::System => self.system_messages += 1,
                Role::User => self.user_messages += 1,
                Role::Assistant => self.assistant_messages += 1,
            }
        }
        let characters = sample.characters();
        self.characters += characters;
        if self
            .longest_sample
            .is_none_or(|(_, longest)| characters > longest)
        {
            self.longest_sample = Some((line, characters));
        }
    }
}

/// The outcome of checking a whole dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatasetReport {
    pub summary: DatasetSummary,
    /// The first [`DatasetLimits::max_errors`] problems in file order.
    pub problems: Vec<DatasetProblem>,
    /// All problems found, including those not kept in `problems`.
    pub problems_total: u64,
}

impl DatasetReport {
    /// True when the dataset may be trained on: no problem at all.
    #[must_use]
    pub fn is_valid(&self) -> bool {
        self.problems_total == 0
    }
}
