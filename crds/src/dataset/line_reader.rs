//! A line reader whose memory stays bounded by the line limit, however long a line is.
//!
//! `BufRead::read_until` would collect a whole line before anyone could look at its length,
//! so a multi-gigabyte file without line ends would be read into memory. This reader walks
//! the buffer with `fill_buf`/`consume`, keeps at most `max_line_bytes + 1` bytes of a line
//! and only counts the rest.

use std::io::{self, BufRead, BufReader, Read};

/// The UTF-8 encoding of U+FEFF, which some editors put at the start of a file.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Size of the read buffer; unrelated to the line limit.
const BUFFER_BYTES: usize = 64 * 1024;

/// One line, without its line end.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum RawLine<'a> {
    /// A line within the limit; a `\r` before the `\n` has been removed.
    Text { number: u64, bytes: &'a [u8] },
    /// A line over the limit; `bytes` is its full length without the line end.
    TooLong { number: u64, bytes: u64 },
}

pub(super) struct LineReader<R> {
    inner: BufReader<R>,
    max_line_bytes: usize,
    /// The current line's kept bytes; reused so each line costs no allocation.
    line: Vec<u8>,
    /// Number of the last line returned.
    number: u64,
    started: bool,
    /// Set at end of input so a reader such as a terminal is not asked again.
    finished: bool,
    bom_skipped: bool,
    crlf_lines: u64,
}

impl<R: Read> LineReader<R> {
    pub(super) fn new(reader: R, max_line_bytes: usize) -> Self {
        Self {
            inner: BufReader::with_capacity(BUFFER_BYTES, reader),
            max_line_bytes,
            line: Vec::new(),
            number: 0,
            started: false,
            finished: false,
            bom_skipped: false,
            crlf_lines: 0,
        }
    }

    /// Lines returned so far.
    pub(super) fn lines_read(&self) -> u64 {
        self.number
    }

    /// Whether a byte-order mark opened the input (it is not part of line 1).
    pub(super) fn bom_skipped(&self) -> bool {
        self.bom_skipped
    }

    /// Lines that ended in `\r\n`.
    pub(super) fn crlf_lines(&self) -> u64 {
        self.crlf_lines
    }

    /// Capacity of the line buffer: what this reader holds of a line at most.
    #[cfg(test)]
    pub(super) fn line_capacity(&self) -> usize {
        self.line.capacity()
    }

    /// The next line, or `None` at the end of input. A line end right before the end of
    /// input ends the last line; it does not start an empty one.
    pub(super) fn next_line(&mut self) -> io::Result<Option<RawLine<'_>>> {
        if self.finished {
            return Ok(None);
        }
        self.line.clear();
        if !self.started {
            self.started = true;
            self.skip_bom()?;
        }
        // One byte past the limit is kept so that a `\r` before the `\n` does not count
        // against it; anything longer is only counted.
        let keep = self.max_line_bytes.saturating_add(1);
        let mut length = self.line.len() as u64;
        let mut last_byte = self.line.last().copied();
        let mut terminated = false;
        while !terminated {
            let available = match self.inner.fill_buf() {
                Ok(available) => available,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            };
            if available.is_empty() {
                self.finished = true;
                break;
            }
            let (taken, consumed) = match available.iter().position(|&byte| byte == b'\n') {
                Some(end) => {
                    terminated = true;
                    (end, end + 1)
                }
                None => (available.len(), available.len()),
            };
            let room = keep.saturating_sub(self.line.len());
            self.line.extend_from_slice(&available[..taken.min(room)]);
            if taken > 0 {
                last_byte = Some(available[taken - 1]);
            }
            length += taken as u64;
            self.inner.consume(consumed);
        }
        if !terminated && length == 0 {
            return Ok(None);
        }
        self.number += 1;
        if terminated && last_byte == Some(b'\r') {
            self.crlf_lines += 1;
            length -= 1;
        }
        if length > self.max_line_bytes as u64 {
            return Ok(Some(RawLine::TooLong {
                number: self.number,
                bytes: length,
            }));
        }
        // Within the limit the whole line was kept, so its length is the buffer's.
        self.line.truncate(length as usize);
        Ok(Some(RawLine::Text {
            number: self.number,
            bytes: &self.line,
        }))
    }

    /// Skips a byte-order mark at the very start of the input. Its bytes may arrive in
    /// separate reads, so they are matched one at a time; a partial match is not a mark and
    /// its bytes go back into line 1.
    fn skip_bom(&mut self) -> io::Result<()> {
        while self.line.len() < BOM.len() {
            let available = match self.inner.fill_buf() {
                Ok(available) => available,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            };
            match available.first() {
                Some(&byte) if byte == BOM[self.line.len()] => {
                    self.line.push(byte);
                    self.inner.consume(1);
                }
                _ => return Ok(()),
            }
        }
        self.line.clear();
        self.bom_skipped = true;
        Ok(())
    }
}
