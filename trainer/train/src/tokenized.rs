//! Training examples as token ids: the tokenized conversation both objectives
//! train on, and what the split and the batching need to know of any example.

/// One conversation as the model sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenizedSample {
    /// Line in the dataset file, for messages.
    pub line: u64,
    pub ids: Vec<u32>,
    /// True where the token is trained on (assistant content and end-of-turn).
    pub mask: Vec<bool>,
}

/// What the split and the batching need to know of a training example: its dataset
/// line (the split's order) and its length in tokens (the batches' grouping).
pub trait DataItem {
    fn line(&self) -> u64;
    /// Tokens the model reads for the example, padding aside.
    fn tokens(&self) -> usize;
}

impl DataItem for TokenizedSample {
    fn line(&self) -> u64 {
        self.line
    }

    fn tokens(&self) -> usize {
        self.ids.len()
    }
}

#[cfg(test)]
impl TokenizedSample {
    /// A sample of `len` trained tokens at dataset line `line`: what the split and
    /// batching tests need.
    pub(crate) fn of_len(line: u64, len: usize) -> Self {
        Self {
            line,
            ids: vec![1; len],
            mask: vec![true; len],
        }
    }
}
