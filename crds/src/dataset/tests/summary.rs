//! Summary counts, tolerated oddities, the problem cap and readers that misbehave.

use std::io::{self, Read};

use super::super::{
    DatasetKind, DatasetLimits, DatasetReport, DatasetSummary, read_samples, validate_dataset,
};
use super::{SFT_OK, problems, validate, validate_with};

#[test]
fn a_good_sft_file_is_counted_exactly() {
    let data = concat!(
        r#"{"messages":[{"role":"system","content":"Be kind."},{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello!"}]}"#,
        "\n",
        r#"{"messages":[{"role":"user","content":"Where?"},{"role":"assistant","content":"Here."},{"role":"user","content":"When?"},{"role":"assistant","content":"Now, café."}]}"#,
        "\n",
        r#"{"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello!"}]}"#,
        "\n",
    );
    let report = validate(DatasetKind::Sft, data.as_bytes());
    assert_eq!(
        report,
        DatasetReport {
            summary: DatasetSummary {
                samples: 3,
                lines: 3,
                turns: 9,
                system_messages: 1,
                user_messages: 4,
                assistant_messages: 4,
                // "é" is one character, two bytes.
                characters: 16 + 26 + 8,
                longest_sample: Some((2, 26)),
                notes: vec![],
            },
            problems: vec![],
            problems_total: 0,
        }
    );
    assert!(report.is_valid());
}

#[test]
fn a_good_dpo_file_is_counted_exactly() {
    let data = concat!(
        r#"{"messages":[{"role":"user","content":"Hi"}],"chosen":{"role":"assistant","content":"Hello!"},"rejected":{"role":"assistant","content":"What."}}"#,
        "\n",
        r#"{"messages":[{"role":"system","content":"Be kind."},{"role":"user","content":"A?"},{"role":"assistant","content":"B."},{"role":"user","content":"C?"}],"chosen":{"role":"assistant","content":"Sure thing!"},"rejected":{"role":"assistant","content":"No."}}"#,
        "\n",
    );
    let report = validate(DatasetKind::Dpo, data.as_bytes());
    assert_eq!(
        report.summary,
        DatasetSummary {
            samples: 2,
            lines: 2,
            // chosen and rejected are replies, not turns
            turns: 5,
            system_messages: 1,
            user_messages: 3,
            assistant_messages: 1,
            characters: 13 + 28,
            longest_sample: Some((2, 28)),
            notes: vec![],
        }
    );
    assert_eq!(report.problems_total, 0);
}

/// A byte-order mark, CRLF line ends, unknown keys and no final line end.
const TOLERATED: &str = concat!(
    "\u{FEFF}",
    r#"{"id":1,"messages":[{"role":"user","content":"Hi","name":"ann"},{"role":"assistant","content":"Hello!"}]}"#,
    "\r\n",
    r#"{"id":2,"weight":0.5,"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello!"}]}"#,
    "\r\n",
    r#"{"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello!"}]}"#,
);

#[test]
fn tolerated_oddities_become_notes_not_problems() {
    let report = validate(DatasetKind::Sft, TOLERATED.as_bytes());
    assert_eq!(problems(&report), vec![]);
    assert_eq!(report.summary.samples, 3);
    assert_eq!(report.summary.lines, 3);
    assert_eq!(
        report.summary.notes,
        vec![
            "UTF-8 byte-order mark at the start of the file was skipped",
            r"2 lines end in CRLF (\r\n); read as LF",
            r#"unknown sample keys were ignored: "id" (2 samples), "weight" (1 sample)"#,
            r#"unknown message keys were ignored: "name" (1 message)"#,
        ]
    );
}

#[test]
fn one_crlf_line_is_counted_in_the_singular() {
    let report = validate(DatasetKind::Sft, format!("{SFT_OK}\r\n").as_bytes());
    assert_eq!(
        report.summary.notes,
        vec![r"1 line ends in CRLF (\r\n); read as LF"]
    );
}

#[test]
fn problems_past_max_errors_are_counted_not_kept() {
    let mut data = format!("{SFT_OK}\n");
    for _ in 0..30 {
        data.push_str("42\n");
    }
    data.push_str(SFT_OK);
    data.push('\n');
    let limits = DatasetLimits {
        max_errors: 5,
        ..DatasetLimits::default()
    };
    let report = validate_with(DatasetKind::Sft, data.as_bytes(), &limits);
    let kept: Vec<u64> = report.problems.iter().map(|problem| problem.line).collect();
    assert_eq!(kept, vec![2, 3, 4, 5, 6]);
    assert_eq!(report.problems_total, 30);
    assert_eq!(report.summary.samples, 2);
    assert_eq!(report.summary.lines, 32);
    assert!(!report.is_valid());

    let none_kept = DatasetLimits {
        max_errors: 0,
        ..DatasetLimits::default()
    };
    let report = validate_with(DatasetKind::Sft, data.as_bytes(), &none_kept);
    assert_eq!(report.problems, vec![]);
    assert_eq!(report.problems_total, 30);
    assert!(!report.is_valid());
}

#[test]
fn the_default_limits_are_16_mib_and_20_problems() {
    assert_eq!(
        DatasetLimits::default(),
        DatasetLimits {
            max_line_bytes: 16 * 1024 * 1024,
            max_errors: 20,
        }
    );
}

/// Hands out one byte a read, and every other read is interrupted, so byte-order marks,
/// CRLF pairs and characters all arrive split.
struct Trickle<'a> {
    data: &'a [u8],
    interrupt: bool,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.interrupt = !self.interrupt;
        if self.interrupt {
            return Err(io::ErrorKind::Interrupted.into());
        }
        let Some((&first, rest)) = self.data.split_first() else {
            return Ok(0);
        };
        let Some(slot) = buf.first_mut() else {
            return Ok(0);
        };
        *slot = first;
        self.data = rest;
        Ok(1)
    }
}

#[test]
fn split_reads_give_the_same_report() {
    let half_bom = b"\xEF\xBB{}\n".as_slice();
    let inputs = [
        TOLERATED.as_bytes(),
        half_bom,
        "{\"messages\": \"caf\u{e9}\"}\r\n\r\n".as_bytes(),
    ];
    for data in inputs {
        let whole = validate(DatasetKind::Sft, data);
        let limits = DatasetLimits::default();
        let trickled = validate_dataset(
            Trickle {
                data,
                interrupt: false,
            },
            DatasetKind::Sft,
            &limits,
        )
        .expect("interrupted reads are retried");
        assert_eq!(trickled, whole);
    }
    assert_eq!(
        problems(&validate(DatasetKind::Sft, half_bom)),
        vec![(
            1,
            "the line is not valid UTF-8: invalid byte 0xEF at byte offset 0; the file must be UTF-8 text"
                .to_owned()
        )]
    );
}

/// Yields its data, then fails.
struct Failing<'a>(&'a [u8]);

impl Read for Failing<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.0.is_empty() {
            return Err(io::Error::other("disk on fire"));
        }
        let n = self.0.read(buf)?;
        Ok(n)
    }
}

#[test]
fn a_read_error_ends_the_stream_once() {
    let data = format!("{SFT_OK}\n{SFT_OK}");
    let limits = DatasetLimits::default();
    let mut samples = read_samples(Failing(data.as_bytes()), DatasetKind::Sft, &limits);
    let (line, sample) = samples
        .next()
        .expect("a first item")
        .expect("the first line is complete");
    assert_eq!(line, 1);
    assert!(sample.is_ok());
    // The second line has no line end yet, so the reader must ask for more and fail.
    let error = samples
        .next()
        .expect("an item")
        .expect_err("the read error");
    assert_eq!(error.to_string(), "disk on fire");
    assert!(samples.next().is_none());

    let error = validate_dataset(Failing(data.as_bytes()), DatasetKind::Sft, &limits)
        .expect_err("validation passes the read error on");
    assert_eq!(error.kind(), io::ErrorKind::Other);
}

#[test]
fn a_utf16_or_utf32_file_is_named_as_such_with_how_to_convert_it() {
    let line = format!("{SFT_OK}\n");
    let utf16le: Vec<u8> = [0xFF, 0xFE]
        .into_iter()
        .chain(line.encode_utf16().flat_map(u16::to_le_bytes))
        .collect();
    let utf16be: Vec<u8> = [0xFE, 0xFF]
        .into_iter()
        .chain(line.encode_utf16().flat_map(u16::to_be_bytes))
        .collect();
    let utf32le: Vec<u8> = [0xFF, 0xFE, 0, 0]
        .into_iter()
        .chain(line.chars().flat_map(|c| (c as u32).to_le_bytes()))
        .collect();
    for (data, first, encoding) in [
        (&utf16le, 0xFF, "UTF-16"),
        (&utf16be, 0xFE, "UTF-16"),
        (&utf32le, 0xFF, "UTF-32"),
    ] {
        let found = problems(&validate(DatasetKind::Sft, data));
        assert_eq!(
            found[0],
            (
                1,
                format!(
                    "the line is not valid UTF-8: invalid byte 0x{first:02X} at byte offset 0; the file must be UTF-8 text \
                     (it opens with a {encoding} byte-order mark: convert it, e.g. `iconv -f {encoding} -t UTF-8 in.jsonl > out.jsonl`)"
                )
            ),
            "{encoding}"
        );
    }
}
