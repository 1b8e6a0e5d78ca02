//! Streams a dataset as checked samples, one line at a time; the trainer's loader and the
//! validator share it so they can never disagree about a line.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::iter::FusedIterator;

use super::line_reader::{LineReader, RawLine};
use super::report::{DatasetLimits, DatasetProblem};
use super::rules::{self, IgnoredKey, KeyPlace};
use super::types::{ChatSample, DatasetKind};

/// Streams `reader` as `(line number, sample or problem)`, holding at most one line of
/// `limits.max_line_bytes` in memory. An I/O error is yielded once and ends the stream.
pub fn read_samples<R: Read>(
    reader: R,
    kind: DatasetKind,
    limits: &DatasetLimits,
) -> SampleReader<R> {
    SampleReader {
        lines: LineReader::new(reader, limits.max_line_bytes),
        max_line_bytes: limits.max_line_bytes,
        kind,
        ignored: IgnoredTally::default(),
        failed: false,
    }
}

/// The iterator [`read_samples`] returns. After the last item, [`SampleReader::notes`]
/// says what was tolerated on the way.
pub struct SampleReader<R> {
    lines: LineReader<R>,
    max_line_bytes: usize,
    kind: DatasetKind,
    ignored: IgnoredTally,
    failed: bool,
}

impl<R: Read> SampleReader<R> {
    /// Lines read so far, valid or not.
    pub fn lines_read(&self) -> u64 {
        self.lines.lines_read()
    }

    /// Oddities tolerated in the lines read so far (byte-order mark, CRLF line ends, unknown
    /// keys), as sentences for a person.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if self.lines.bom_skipped() {
            notes.push("UTF-8 byte-order mark at the start of the file was skipped".to_owned());
        }
        match self.lines.crlf_lines() {
            0 => {}
            1 => notes.push("1 line ends in CRLF (\\r\\n); read as LF".to_owned()),
            count => notes.push(format!("{count} lines end in CRLF (\\r\\n); read as LF")),
        }
        notes.extend(self.ignored.notes());
        notes
    }

    #[cfg(test)]
    pub(super) fn line_capacity(&self) -> usize {
        self.lines.line_capacity()
    }
}

/// Checks one line's bytes; a free function so that it can borrow the tally while the line
/// still borrows the reader's buffer.
fn check(
    kind: DatasetKind,
    ignored: &mut IgnoredTally,
    number: u64,
    bytes: &[u8],
) -> Result<ChatSample, DatasetProblem> {
    let text = std::str::from_utf8(bytes).map_err(|error| {
            let offset = error.valid_up_to();
            let what = match error.error_len() {
                Some(_) => format!("invalid byte 0x{:02X}", bytes[offset]),
                None => "an incomplete character".to_owned(),
            };
            DatasetProblem::new(
                number,
                format!(
                    "the line is not valid UTF-8: {what} at byte offset {offset}; the file must be UTF-8 text{}",
                    encoding_hint(number, bytes)
                ),
            )
        })?;
    let checked =
        rules::check_line(text, kind).map_err(|message| DatasetProblem::new(number, message))?;
    ignored.add(&checked.ignored);
    Ok(checked.sample)
}

/// What a file that opens with a UTF-16 or UTF-32 byte-order mark is, and how to
/// convert it: such files are what some editors and spreadsheet exports save as
/// "Unicode", and otherwise read as a puzzling invalid byte 0xFF or 0xFE.
fn encoding_hint(number: u64, bytes: &[u8]) -> &'static str {
    if number != 1 {
        return "";
    }
    match bytes {
        [0xFF, 0xFE, 0, 0, ..] | [0, 0, 0xFE, 0xFF, ..] => {
            " (it opens with a UTF-32 byte-order mark: convert it, e.g. `iconv -f UTF-32 -t UTF-8 in.jsonl > out.jsonl`)"
        }
        [0xFF, 0xFE, ..] | [0xFE, 0xFF, ..] => {
            " (it opens with a UTF-16 byte-order mark: convert it, e.g. `iconv -f UTF-16 -t UTF-8 in.jsonl > out.jsonl`)"
        }
        _ => "",
    }
}

impl<R: Read> Iterator for SampleReader<R> {
    type Item = io::Result<(u64, Result<ChatSample, DatasetProblem>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let (number, result) = match self.lines.next_line() {
            Ok(None) => return None,
            Err(error) => {
                self.failed = true;
                return Some(Err(error));
            }
            Ok(Some(RawLine::TooLong { number, bytes })) => {
                let limit = self.max_line_bytes;
                let problem = DatasetProblem::new(
                    number,
                    format!(
                        "the line is longer than the {limit}-byte limit (at least {bytes} bytes); it was skipped"
                    ),
                );
                (number, Err(problem))
            }
            Ok(Some(RawLine::Text { number, bytes })) => {
                (number, check(self.kind, &mut self.ignored, number, bytes))
            }
        };
        Some(Ok((number, result)))
    }
}

impl<R: Read> FusedIterator for SampleReader<R> {}

/// Counts of unknown keys seen in valid samples, so that a silently unused `"weight"` is
/// at least mentioned. Distinct names are capped because every line could invent its own.
#[derive(Default)]
struct IgnoredTally {
    sample: BTreeMap<String, u64>,
    message: BTreeMap<String, u64>,
    sample_others: u64,
    message_others: u64,
}

const MAX_IGNORED_NAMES: usize = 16;

impl IgnoredTally {
    fn add(&mut self, keys: &[IgnoredKey]) {
        for key in keys {
            let (names, others) = match key.place {
                KeyPlace::Sample => (&mut self.sample, &mut self.sample_others),
                KeyPlace::Message => (&mut self.message, &mut self.message_others),
            };
            if let Some(count) = names.get_mut(&key.name) {
                *count += 1;
            } else if names.len() < MAX_IGNORED_NAMES {
                names.insert(key.name.clone(), 1);
            } else {
                *others += 1;
            }
        }
    }

    fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        let places = [
            ("sample", &self.sample, self.sample_others),
            ("message", &self.message, self.message_others),
        ];
        for (place, names, others) in places {
            if names.is_empty() {
                continue;
            }
            let mut listed: Vec<String> = names
                .iter()
                .map(|(name, &count)| {
                    format!("{} ({count} {place}{})", rules::quote(name), plural(count))
                })
                .collect();
            if others > 0 {
                listed.push(format!("{others} more of other names"));
            }
            notes.push(format!(
                "unknown {place} keys were ignored: {}",
                listed.join(", ")
            ));
        }
        notes
    }
}

fn plural(count: u64) -> &'static str {
    if count == 1 { "" } else { "s" }
}
