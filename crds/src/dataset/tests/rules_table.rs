//! One bad dataset per rule, each with the exact problems it must produce.

use super::super::DatasetKind::{self, Dpo, Evaluation, Sft};
use super::{DPO_OK, SFT_OK, problems, validate};

struct Case {
    name: &'static str,
    kind: DatasetKind,
    data: Vec<u8>,
    /// Valid samples around the bad line(s), which must still be counted.
    samples: u64,
    problems: Vec<(u64, &'static str)>,
}

/// A bad line between two good ones, so the problem must name line 2.
fn line2(name: &'static str, kind: DatasetKind, bad: &str, message: &'static str) -> Case {
    let good = match kind {
        Sft | Evaluation => SFT_OK,
        Dpo => DPO_OK,
    };
    Case {
        name,
        kind,
        data: format!("{good}\n{bad}\n{good}\n").into_bytes(),
        samples: 2,
        problems: vec![(2, message)],
    }
}

/// A whole file given as bytes.
fn file(
    name: &'static str,
    kind: DatasetKind,
    data: &[u8],
    samples: u64,
    problems: Vec<(u64, &'static str)>,
) -> Case {
    Case {
        name,
        kind,
        data: data.to_vec(),
        samples,
        problems,
    }
}

fn cases() -> Vec<Case> {
    vec![
        // jsonl: one JSON object a line.
        line2(
            "cut-off JSON",
            Sft,
            r#"{"messages": [{"role": "user""#,
            "the line is not valid JSON: EOF while parsing an object (column 29)",
        ),
        line2(
            "text after the object",
            Sft,
            r#"{"messages": []} {"#,
            "the line is not valid JSON: trailing characters (column 18)",
        ),
        line2(
            "single quotes",
            Sft,
            r#"{'messages': []}"#,
            "the line is not valid JSON: key must be a string (column 2)",
        ),
        line2(
            "an array line",
            Sft,
            r#"[{"role": "user", "content": "Hi"}]"#,
            r#"the line holds an array where a JSON object was expected; every line must be one object like {"messages": [{"role": "user", "content": "..."}, ...]}"#,
        ),
        line2(
            "a string line",
            Sft,
            r#""Hi there""#,
            r#"the line holds a string where a JSON object was expected; every line must be one object like {"messages": [{"role": "user", "content": "..."}, ...]}"#,
        ),
        line2(
            "a number line",
            Sft,
            "42",
            r#"the line holds a number where a JSON object was expected; every line must be one object like {"messages": [{"role": "user", "content": "..."}, ...]}"#,
        ),
        // messages: present, an array, not empty.
        line2(
            "another format's keys",
            Sft,
            r#"{"prompt": "Hi", "completion": "Hello"}"#,
            r#"the sample has no "messages" key (it has "completion", "prompt"); every line needs "messages", like {"messages": [{"role": "user", "content": "..."}, ...]}"#,
        ),
        line2(
            "an empty object",
            Sft,
            "{}",
            r#"the line is an empty object; every line needs "messages", like {"messages": [{"role": "user", "content": "..."}, ...]}"#,
        ),
        line2(
            "messages is a string",
            Sft,
            r#"{"messages": "Hi"}"#,
            r#""messages" is a string, not an array of {"role": ..., "content": ...} objects"#,
        ),
        line2(
            "messages is empty",
            Sft,
            r#"{"messages": []}"#,
            r#""messages" is an empty array; a sample needs at least one user message and an assistant reply"#,
        ),
        // every message: an object with a known role and string content.
        line2(
            "a message is a string",
            Sft,
            r#"{"messages": ["Hi", {"role": "assistant", "content": "Hello"}]}"#,
            r#"message 1 is a string, not an object with "role" and "content""#,
        ),
        line2(
            "a message without role",
            Sft,
            r#"{"messages": [{"content": "Hi"}, {"role": "assistant", "content": "Hello"}]}"#,
            r#"message 1 has no "role" (expected "system", "user" or "assistant")"#,
        ),
        line2(
            "a numeric role",
            Sft,
            r#"{"messages": [{"role": 1, "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}"#,
            r#"message 1 has a "role" that is a number, not a string (expected "system", "user" or "assistant")"#,
        ),
        line2(
            "the tool role",
            Sft,
            r#"{"messages": [{"role": "user", "content": "Hi"}, {"role": "tool", "content": "{}"}]}"#,
            r#"message 2 has role "tool", which is not supported (allowed roles: "system", "user" or "assistant")"#,
        ),
        line2(
            "the function role",
            Sft,
            r#"{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Ok"}, {"role": "function", "content": "{}"}]}"#,
            r#"message 3 has role "function", which is not supported (allowed roles: "system", "user" or "assistant")"#,
        ),
        line2(
            "a capitalised role",
            Sft,
            r#"{"messages": [{"role": "User", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}"#,
            r#"message 1 has role "User", but roles are lowercase: use "user""#,
        ),
        line2(
            "a message without content",
            Sft,
            r#"{"messages": [{"role": "user"}, {"role": "assistant", "content": "Hello"}]}"#,
            r#"message 1 has no "content""#,
        ),
        line2(
            "content parts",
            Sft,
            r#"{"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}, {"role": "assistant", "content": "Hello"}]}"#,
            r#"message 1 has "content" that is an array, not a string (content parts such as [{"type": "text", ...}] are not supported; put the text in one string)"#,
        ),
        line2(
            "null content",
            Sft,
            r#"{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": null}]}"#,
            r#"message 2 has "content" that is null, not a string"#,
        ),
        // order: system first, then user, then alternating, at least one pair.
        line2(
            "a late system message",
            Sft,
            r#"{"messages": [{"role": "user", "content": "Hi"}, {"role": "system", "content": "Be brief"}, {"role": "assistant", "content": "Hello"}]}"#,
            r#"message 2 has role "system", but a system message may only be the first message"#,
        ),
        line2(
            "two system messages",
            Sft,
            r#"{"messages": [{"role": "system", "content": "A"}, {"role": "system", "content": "B"}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}"#,
            r#"message 2 has role "system", but a system message may only be the first message"#,
        ),
        line2(
            "the assistant speaks first",
            Sft,
            r#"{"messages": [{"role": "system", "content": "Be brief"}, {"role": "assistant", "content": "Hello"}]}"#,
            r#"message 2 has role "assistant" but the conversation must start with a "user" message (after an optional "system" message)"#,
        ),
        line2(
            "two user turns in a row",
            Sft,
            r#"{"messages": [{"role": "user", "content": "Hi"}, {"role": "user", "content": "Hello?"}, {"role": "assistant", "content": "Hello"}]}"#,
            r#"message 2 has role "user" but an "assistant" message was expected here (user and assistant turns must alternate)"#,
        ),
        line2(
            "two assistant turns in a row",
            Sft,
            r#"{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}, {"role": "assistant", "content": "Anyone?"}]}"#,
            r#"message 3 has role "assistant" but a "user" message was expected here (user and assistant turns must alternate)"#,
        ),
        line2(
            "only a system message",
            Sft,
            r#"{"messages": [{"role": "system", "content": "Be brief"}]}"#,
            r#""messages" holds only a system message; a sample needs at least one user message and an assistant reply"#,
        ),
        line2(
            "SFT ends on the user",
            Sft,
            r#"{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Bye"}]}"#,
            r#"the last message (message 3) has role "user", but an SFT sample must end with an "assistant" reply to learn from"#,
        ),
        line2(
            "an empty assistant reply",
            Sft,
            r#"{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": ""}]}"#,
            "message 2 has empty content: an assistant reply must hold text to learn from",
        ),
        line2(
            "a blank assistant reply",
            Sft,
            r#"{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": " \n\t"}]}"#,
            "message 2 has content that is only whitespace: an assistant reply must hold text to learn from",
        ),
        // SFT and DPO shapes.
        line2(
            "DPO keys in SFT data",
            Sft,
            DPO_OK,
            r#"the sample has "chosen" and "rejected", which belong to DPO preference data; train it with --method dpo, or remove them for SFT"#,
        ),
        line2(
            "one DPO key in SFT data",
            Sft,
            r#"{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}], "rejected": {"role": "assistant", "content": "No"}}"#,
            r#"the sample has "rejected", which belongs to DPO preference data; train it with --method dpo, or remove it for SFT"#,
        ),
        line2(
            "SFT data given as DPO",
            Dpo,
            SFT_OK,
            r#"the sample has no "chosen" and "rejected" replies, which DPO data needs; if this is SFT data, train it with --method sft"#,
        ),
        line2(
            "DPO without rejected",
            Dpo,
            r#"{"messages": [{"role": "user", "content": "Hi"}], "chosen": {"role": "assistant", "content": "Hello"}}"#,
            r#"the sample has "chosen" but no "rejected" reply; DPO lines need both "chosen" and "rejected""#,
        ),
        line2(
            "DPO messages end on the assistant",
            Dpo,
            r#"{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}], "chosen": {"role": "assistant", "content": "A"}, "rejected": {"role": "assistant", "content": "B"}}"#,
            r#"the last message (message 2) has role "assistant", but in DPO data "messages" must end with a "user" message; the candidate replies go in "chosen" and "rejected""#,
        ),
        line2(
            "chosen is a bare string",
            Dpo,
            r#"{"messages": [{"role": "user", "content": "Hi"}], "chosen": "Hello", "rejected": "Go away"}"#,
            r#""chosen" is a string, not an object like {"role": "assistant", "content": "..."}"#,
        ),
        line2(
            "chosen from the user",
            Dpo,
            r#"{"messages": [{"role": "user", "content": "Hi"}], "chosen": {"role": "user", "content": "Hello"}, "rejected": {"role": "assistant", "content": "No"}}"#,
            r#""chosen" has role "user", but it must be "assistant""#,
        ),
        line2(
            "rejected without role",
            Dpo,
            r#"{"messages": [{"role": "user", "content": "Hi"}], "chosen": {"role": "assistant", "content": "Hello"}, "rejected": {"content": "No"}}"#,
            r#""rejected" has no "role" (expected "assistant")"#,
        ),
        line2(
            "rejected with numeric content",
            Dpo,
            r#"{"messages": [{"role": "user", "content": "Hi"}], "chosen": {"role": "assistant", "content": "Hello"}, "rejected": {"role": "assistant", "content": 0}}"#,
            r#""rejected" has "content" that is a number, not a string"#,
        ),
        line2(
            "an empty chosen reply",
            Dpo,
            r#"{"messages": [{"role": "user", "content": "Hi"}], "chosen": {"role": "assistant", "content": ""}, "rejected": {"role": "assistant", "content": "No"}}"#,
            r#""chosen" has empty content: an assistant reply must hold text to learn from"#,
        ),
        line2(
            "chosen equals rejected",
            Dpo,
            r#"{"messages": [{"role": "user", "content": "Hi"}], "chosen": {"role": "assistant", "content": "Hello"}, "rejected": {"role": "assistant", "content": "Hello "}}"#,
            r#""chosen" and "rejected" hold the same reply, so there is no preference to learn"#,
        ),
        // the text of the file: empty lines, byte-order marks, UTF-8.
        line2(
            "an empty line",
            Sft,
            "",
            "empty line: every line must hold one JSON object",
        ),
        line2(
            "a line of spaces",
            Sft,
            " \t ",
            "empty line (only whitespace): every line must hold one JSON object",
        ),
        file(
            "two line ends at the end of the file",
            Sft,
            format!("{SFT_OK}\n\n").as_bytes(),
            1,
            vec![(2, "empty line: every line must hold one JSON object")],
        ),
        file(
            "an empty CRLF line",
            Sft,
            format!("{SFT_OK}\r\n\r\n{SFT_OK}\r\n").as_bytes(),
            2,
            vec![(2, "empty line: every line must hold one JSON object")],
        ),
        file(
            "a byte-order mark on line 2",
            Sft,
            format!("{SFT_OK}\n\u{FEFF}{SFT_OK}\n").as_bytes(),
            1,
            vec![(
                2,
                "the line holds a UTF-8 byte-order mark (U+FEFF) at byte offset 0; only the very start of the file may hold one (were files joined together?)",
            )],
        ),
        file(
            "a byte-order mark inside a line",
            Sft,
            format!("{SFT_OK}\n{{\u{FEFF}\"messages\": []}}\n").as_bytes(),
            1,
            vec![(
                2,
                "the line holds a UTF-8 byte-order mark (U+FEFF) at byte offset 1; only the very start of the file may hold one",
            )],
        ),
        file(
            "a Latin-1 byte",
            Sft,
            b"{\"messages\": [{\"role\": \"user\", \"content\": \"caf\xE9\"}]}\n",
            0,
            vec![(
                1,
                "the line is not valid UTF-8: invalid byte 0xE9 at byte offset 46; the file must be UTF-8 text",
            )],
        ),
        file(
            "a character cut at the end of the file",
            Sft,
            // the first two of the three bytes of "€"
            &[SFT_OK.as_bytes(), b"\n{\"a\": \"\xE2\x82"].concat(),
            1,
            vec![(
                2,
                "the line is not valid UTF-8: an incomplete character at byte offset 7; the file must be UTF-8 text",
            )],
        ),
        // the file as a whole.
        file(
            "an empty file",
            Sft,
            b"",
            0,
            vec![(
                0,
                "no samples: the file is empty (a dataset holds one JSON object a line)",
            )],
        ),
        file(
            "only a byte-order mark",
            Dpo,
            "\u{FEFF}".as_bytes(),
            0,
            vec![(
                0,
                "no samples: the file is empty (a dataset holds one JSON object a line)",
            )],
        ),
        file(
            "only a line end",
            Sft,
            b"\n",
            0,
            vec![(1, "empty line: every line must hold one JSON object")],
        ),
        file(
            "several problems, each on its line",
            Sft,
            format!("[]\n{SFT_OK}\n\n{{\"messages\": []}}\n").as_bytes(),
            1,
            vec![
                (
                    1,
                    r#"the line holds an array where a JSON object was expected; every line must be one object like {"messages": [{"role": "user", "content": "..."}, ...]}"#,
                ),
                (3, "empty line: every line must hold one JSON object"),
                (
                    4,
                    r#""messages" is an empty array; a sample needs at least one user message and an assistant reply"#,
                ),
            ],
        ),
    ]
}

#[test]
fn every_rule_names_the_line_and_what_is_wrong() {
    let cases = cases();
    assert!(cases.len() >= 25, "one row per rule");
    let mut failures = Vec::new();
    for case in &cases {
        let report = validate(case.kind, &case.data);
        let want: Vec<(u64, String)> = case
            .problems
            .iter()
            .map(|&(line, message)| (line, message.to_owned()))
            .collect();
        let got = problems(&report);
        if got != want {
            failures.push(format!("{}:\n  got  {got:?}\n  want {want:?}", case.name));
        }
        if report.problems_total != want.len() as u64 || report.is_valid() {
            failures.push(format!(
                "{}: problems_total {}",
                case.name, report.problems_total
            ));
        }
        if report.summary.samples != case.samples {
            failures.push(format!(
                "{}: {} samples, want {}",
                case.name, report.summary.samples, case.samples
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
