//! The line limit: over-long lines are refused by number and skipped without being held.

use std::io::{self, Read};

use super::super::{DatasetKind, DatasetLimits, read_samples};
use super::{SFT_OK, problems, validate_with};

const LIMIT: usize = 96;

fn limits() -> DatasetLimits {
    DatasetLimits {
        max_line_bytes: LIMIT,
        ..DatasetLimits::default()
    }
}

#[test]
fn a_long_line_is_refused_and_the_next_line_still_checked() {
    assert!(SFT_OK.len() <= LIMIT);
    let long = format!(
        r#"{{"messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(200)
    );
    let data = format!("{SFT_OK}\n{long}\n[]\n{SFT_OK}\n");
    let report = validate_with(DatasetKind::Sft, data.as_bytes(), &limits());
    assert_eq!(
        problems(&report),
        vec![
            (
                2,
                format!(
                    "the line is longer than the 96-byte limit (at least {} bytes); it was skipped",
                    long.len()
                )
            ),
            (
                3,
                r#"the line holds an array where a JSON object was expected; every line must be one object like {"messages": [{"role": "user", "content": "..."}, ...]}"#
                    .to_owned()
            ),
        ]
    );
    assert_eq!(report.summary.samples, 2);
    assert_eq!(report.summary.lines, 4);
    assert_eq!(report.summary.longest_sample, Some((1, 8)));
}

#[test]
fn the_limit_counts_the_line_without_its_line_end() {
    let exact = format!("{SFT_OK:<LIMIT$}");
    assert_eq!(exact.len(), LIMIT);
    let data = format!("{exact}\n{exact}\r\n{exact} \n{exact}");
    let report = validate_with(DatasetKind::Sft, data.as_bytes(), &limits());
    assert_eq!(
        problems(&report),
        vec![(
            3,
            "the line is longer than the 96-byte limit (at least 97 bytes); it was skipped"
                .to_owned()
        )]
    );
    assert_eq!(report.summary.samples, 3);
}

#[test]
fn a_long_last_line_without_line_end_is_refused() {
    let data = format!("{SFT_OK}\n{}", "y".repeat(1000));
    let report = validate_with(DatasetKind::Sft, data.as_bytes(), &limits());
    assert_eq!(
        problems(&report),
        vec![(
            2,
            "the line is longer than the 96-byte limit (at least 1000 bytes); it was skipped"
                .to_owned()
        )]
    );
}

/// Makes a `length`-byte line of `x` followed by `tail`, generating the bytes as they are
/// read so that the test itself holds none of the long line.
struct LongLine {
    remaining: u64,
    tail: &'static [u8],
}

impl Read for LongLine {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining > 0 {
            let n = buf
                .len()
                .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
            buf[..n].fill(b'x');
            self.remaining -= n as u64;
            return Ok(n);
        }
        self.tail.read(buf)
    }
}

#[test]
fn a_50_mb_line_is_skipped_without_being_held() {
    const LENGTH: u64 = 50_000_000;
    const MIB: usize = 1024 * 1024;
    let limits = DatasetLimits {
        max_line_bytes: MIB,
        ..DatasetLimits::default()
    };
    let tail = concat!(
        "\n",
        r#"{"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello!"}]}"#,
        "\n"
    );
    let reader = LongLine {
        remaining: LENGTH,
        tail: tail.as_bytes(),
    };
    let mut samples = read_samples(reader, DatasetKind::Sft, &limits);
    let (line, result) = samples
        .next()
        .expect("the long line")
        .expect("reading from memory cannot fail");
    assert_eq!(line, 1);
    assert_eq!(
        result.expect_err("the line is refused").message,
        format!(
            "the line is longer than the 1048576-byte limit (at least {LENGTH} bytes); it was skipped"
        )
    );
    // What the reader held of the line: the limit and one byte, with the usual slack of
    // a growing buffer, far from the line's 50 MB.
    assert!(
        samples.line_capacity() <= 2 * (MIB + 1),
        "held {} bytes",
        samples.line_capacity()
    );
    let (line, result) = samples
        .next()
        .expect("the line after")
        .expect("reading from memory cannot fail");
    assert_eq!(line, 2);
    assert!(result.is_ok());
    assert!(samples.next().is_none());
    assert_eq!(samples.lines_read(), 2);
}

/// One SFT line of `turns` user/assistant pairs, each message's content `content`.
fn conversation(turns: usize, content: &str) -> String {
    let pair = format!(
        r#"{{"role": "user", "content": {content:?}}}, {{"role": "assistant", "content": {content:?}}}"#
    );
    format!(r#"{{"messages": [{}]}}"#, vec![pair; turns].join(", "))
}

#[test]
fn a_line_of_too_many_objects_is_refused_before_it_is_parsed() {
    // 5,000 pairs: 10,000 messages, the array and the sample.
    let line = conversation(5_000, "hi");
    assert_eq!(
        problems(&super::validate(
            DatasetKind::Sft,
            format!("{line}\n").as_bytes()
        )),
        vec![(
            1,
            "the line holds 10002 JSON objects and arrays, more than the 10000 a sample may have \
             (a conversation of thousands of messages): split it into several samples"
                .to_owned()
        )]
    );
    // Braces and brackets inside strings (code, escaped quotes) do not count.
    let code = r#"fn main() { let v = [1, 2]; println!("{:?} \" {", v); }"#.repeat(20);
    let line = conversation(2_000, &code);
    let report = super::validate(DatasetKind::Sft, format!("{line}\n").as_bytes());
    assert!(problems(&report).is_empty(), "{:?}", problems(&report));
}
