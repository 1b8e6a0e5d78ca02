//! The rules one line must follow, each refusal worded so a person can fix the line.

use serde_json::{Map, Value};

use super::types::{ChatMessage, ChatSample, DatasetKind, Role};

/// Checks one line's text (without its line end) against the dataset rules.
///
/// This is what the trainer loads data with.
///
/// # Errors
///
/// The first rule the line breaks, in words, without a `line N:` prefix.
pub fn parse_sample(line: &str, kind: DatasetKind) -> Result<ChatSample, String> {
    check_line(line, kind).map(|checked| checked.sample)
}

/// A valid line, with the keys that were tolerated but will not be used.
pub(super) struct Checked {
    pub(super) sample: ChatSample,
    pub(super) ignored: Vec<IgnoredKey>,
}

/// Where a tolerated unknown key sat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyPlace {
    /// Next to `messages`, e.g. `"weight"` or `"id"`.
    Sample,
    /// Inside a message or a DPO reply, e.g. `"name"`.
    Message,
}

pub(super) struct IgnoredKey {
    pub(super) place: KeyPlace,
    pub(super) name: String,
}

const SAMPLE_KEYS: [&str; 3] = ["messages", "chosen", "rejected"];
const MESSAGE_KEYS: [&str; 2] = ["role", "content"];
const ALLOWED_ROLES: &str = r#""system", "user" or "assistant""#;
const SHAPE_HINT: &str = r#"{"messages": [{"role": "user", "content": "..."}, ...]}"#;

pub(super) fn check_line(line: &str, kind: DatasetKind) -> Result<Checked, String> {
    check_text(line)?;
    check_structure(line)?;
    let value: Value = serde_json::from_str(line).map_err(|error| json_error(&error))?;
    let Value::Object(sample) = value else {
        return Err(format!(
            "the line holds {} where a JSON object was expected; every line must be one object like {SHAPE_HINT}",
            describe(&value)
        ));
    };
    let mut ignored: Vec<IgnoredKey> = sample
        .keys()
        .filter(|key| !SAMPLE_KEYS.contains(&key.as_str()))
        .map(|key| IgnoredKey {
            place: KeyPlace::Sample,
            name: key.clone(),
        })
        .collect();
    check_reply_keys(&sample, kind)?;
    let messages = check_messages(&sample, kind, &mut ignored)?;
    let (chosen, rejected) = match kind {
        DatasetKind::Sft | DatasetKind::Evaluation => (None, None),
        DatasetKind::Dpo => {
            let chosen = check_reply(&sample, "chosen", &mut ignored)?;
            let rejected = check_reply(&sample, "rejected", &mut ignored)?;
            if chosen.content.trim() == rejected.content.trim() {
                return Err(
                    r#""chosen" and "rejected" hold the same reply, so there is no preference to learn"#
                        .to_owned(),
                );
            }
            (Some(chosen), Some(rejected))
        }
    };
    Ok(Checked {
        sample: ChatSample {
            messages,
            chosen,
            rejected,
        },
        ignored,
    })
}

/// Refusals that need no JSON parsing: blank lines and stray byte-order marks.
/// JSON objects and arrays one line may hold: a conversation of thousands of turns.
/// Parsed, each costs ~1-2 KiB, so this bounds what a 16 MiB line of tiny messages
/// (otherwise ~450 MB for 262,144 of them) can take, in the trainer and in the operator.
pub const CONTAINERS_PER_LINE_MAX: usize = 10_000;

/// Counts the objects and arrays of `line` (outside its strings) before it is parsed,
/// refusing a line with more than [`CONTAINERS_PER_LINE_MAX`].
fn check_structure(line: &str) -> Result<(), String> {
    let (mut containers, mut in_string, mut escaped) = (0usize, false, false);
    for &byte in line.as_bytes() {
        match (in_string, escaped, byte) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (true, false, b'"') => in_string = false,
            (false, _, b'"') => in_string = true,
            (false, _, b'{' | b'[') => containers += 1,
            _ => {}
        }
    }
    if containers > CONTAINERS_PER_LINE_MAX {
        return Err(format!(
            "the line holds {containers} JSON objects and arrays, more than the {CONTAINERS_PER_LINE_MAX} \
             a sample may have (a conversation of thousands of messages): split it into several samples"
        ));
    }
    Ok(())
}

fn check_text(line: &str) -> Result<(), String> {
    if line.is_empty() {
        return Err("empty line: every line must hold one JSON object".to_owned());
    }
    if line.trim().is_empty() {
        return Err(
            "empty line (only whitespace): every line must hold one JSON object".to_owned(),
        );
    }
    if let Some(offset) = line.find('\u{FEFF}') {
        // A mark at the start of a later line usually means files were concatenated.
        let hint = if offset == 0 {
            " (were files joined together?)"
        } else {
            ""
        };
        return Err(format!(
            "the line holds a UTF-8 byte-order mark (U+FEFF) at byte offset {offset}; only the very start of the file may hold one{hint}"
        ));
    }
    Ok(())
}

fn json_error(error: &serde_json::Error) -> String {
    let text = error.to_string();
    // serde_json ends with " at line L column C"; L is always 1 here and would be mistaken
    // for the file's line number, so only the column is kept.
    let reason = text
        .rsplit_once(" at line ")
        .map_or(text.as_str(), |(reason, _)| reason);
    format!(
        "the line is not valid JSON: {reason} (column {})",
        error.column()
    )
}

/// For SFT, DPO keys mean the wrong method was picked; for DPO, both replies must be there.
fn check_reply_keys(sample: &Map<String, Value>, kind: DatasetKind) -> Result<(), String> {
    let chosen = sample.contains_key("chosen");
    let rejected = sample.contains_key("rejected");
    let (present, them) = match (chosen, rejected) {
        (true, true) => (r#""chosen" and "rejected", which belong"#, "them"),
        (true, false) => (r#""chosen", which belongs"#, "it"),
        (false, true) => (r#""rejected", which belongs"#, "it"),
        (false, false) => ("", ""),
    };
    match kind {
        DatasetKind::Sft if chosen || rejected => Err(format!(
            "the sample has {present} to DPO preference data; train it with --method dpo, or remove {them} for SFT"
        )),
        DatasetKind::Evaluation if chosen || rejected => Err(format!(
            "the sample has {present} to DPO preference data; an evaluation's chat ends on its reference answer (or on the user's turn, without one), so remove {them}"
        )),
        DatasetKind::Dpo if !chosen && !rejected => Err(
            r#"the sample has no "chosen" and "rejected" replies, which DPO data needs; if this is SFT data, train it with --method sft"#
                .to_owned(),
        ),
        DatasetKind::Dpo if !(chosen && rejected) => {
            let (has, missing) = if chosen {
                ("chosen", "rejected")
            } else {
                ("rejected", "chosen")
            };
            Err(format!(
                r#"the sample has "{has}" but no "{missing}" reply; DPO lines need both "chosen" and "rejected""#
            ))
        }
        _ => Ok(()),
    }
}

fn check_messages(
    sample: &Map<String, Value>,
    kind: DatasetKind,
    ignored: &mut Vec<IgnoredKey>,
) -> Result<Vec<ChatMessage>, String> {
    let Some(value) = sample.get("messages") else {
        return Err(missing_messages(sample));
    };
    let Value::Array(items) = value else {
        return Err(format!(
            r#""messages" is {}, not an array of {{"role": ..., "content": ...}} objects"#,
            describe(value)
        ));
    };
    if items.is_empty() {
        return Err(
            r#""messages" is an empty array; a sample needs at least one user message and an assistant reply"#
                .to_owned(),
        );
    }
    let mut messages = Vec::with_capacity(items.len());
    // The role the next non-system message must have; `None` before the first one.
    let mut expected: Option<Role> = None;
    for (index, item) in items.iter().enumerate() {
        let label = format!("message {}", index + 1);
        let fields = message_object(item, &label)?;
        let role = parse_role(role_name(fields, &label, ALLOWED_ROLES)?, &label)?;
        let content = content_text(fields, &label)?;
        match (role, expected) {
            (Role::System, _) if index > 0 => {
                return Err(format!(
                    r#"{label} has role "system", but a system message may only be the first message"#
                ));
            }
            (Role::System, _) => {}
            (Role::Assistant, None) => {
                return Err(format!(
                    r#"{label} has role "assistant" but the conversation must start with a "user" message (after an optional "system" message)"#
                ));
            }
            (role, Some(want)) if role != want => {
                let article = if want == Role::Assistant { "an" } else { "a" };
                return Err(format!(
                    r#"{label} has role "{role}" but {article} "{want}" message was expected here (user and assistant turns must alternate)"#
                ));
            }
            _ => {}
        }
        match role {
            Role::System => {}
            Role::User => expected = Some(Role::Assistant),
            Role::Assistant => {
                check_reply_text(content, &label)?;
                expected = Some(Role::User);
            }
        }
        note_ignored(fields, ignored);
        messages.push(ChatMessage {
            role,
            content: content.to_owned(),
        });
    }
    let last = messages.len();
    match (kind, expected) {
        (_, None) => Err(
            r#""messages" holds only a system message; a sample needs at least one user message and an assistant reply"#
                .to_owned(),
        ),
        (DatasetKind::Sft, Some(Role::Assistant)) => Err(format!(
            r#"the last message (message {last}) has role "user", but an SFT sample must end with an "assistant" reply to learn from"#
        )),
        (DatasetKind::Dpo, Some(Role::User)) => Err(format!(
            r#"the last message (message {last}) has role "assistant", but in DPO data "messages" must end with a "user" message; the candidate replies go in "chosen" and "rejected""#
        )),
        _ => Ok(messages),
    }
}

/// Names the keys that are there, since a missing `messages` usually means another format
/// (`prompt`/`completion`, `instruction`/`output`).
fn missing_messages(sample: &Map<String, Value>) -> String {
    const SHOWN: usize = 5;
    if sample.is_empty() {
        return format!(
            "the line is an empty object; every line needs \"messages\", like {SHAPE_HINT}"
        );
    }
    // Sorted so the message does not depend on serde_json's map order features.
    let mut keys: Vec<&str> = sample.keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut listed: Vec<String> = keys.iter().take(SHOWN).map(|key| quote(key)).collect();
    if keys.len() > SHOWN {
        listed.push(format!("and {} more", keys.len() - SHOWN));
    }
    format!(
        "the sample has no \"messages\" key (it has {}); every line needs \"messages\", like {SHAPE_HINT}",
        listed.join(", ")
    )
}

/// Checks a DPO reply, `chosen` or `rejected`, which must be an assistant message with text.
fn check_reply(
    sample: &Map<String, Value>,
    key: &str,
    ignored: &mut Vec<IgnoredKey>,
) -> Result<ChatMessage, String> {
    let label = format!("\"{key}\"");
    let Some(value) = sample.get(key) else {
        return Err(format!("the sample has no {label} reply"));
    };
    let Value::Object(fields) = value else {
        return Err(format!(
            r#"{label} is {}, not an object like {{"role": "assistant", "content": "..."}}"#,
            describe(value)
        ));
    };
    let role = role_name(fields, &label, r#""assistant""#)?;
    if role != "assistant" {
        return Err(format!(
            r#"{label} has role {}, but it must be "assistant""#,
            quote(role)
        ));
    }
    let content = content_text(fields, &label)?;
    check_reply_text(content, &label)?;
    note_ignored(fields, ignored);
    Ok(ChatMessage {
        role: Role::Assistant,
        content: content.to_owned(),
    })
}

fn message_object<'a>(item: &'a Value, label: &str) -> Result<&'a Map<String, Value>, String> {
    match item {
        Value::Object(fields) => Ok(fields),
        other => Err(format!(
            r#"{label} is {}, not an object with "role" and "content""#,
            describe(other)
        )),
    }
}

fn role_name<'a>(
    fields: &'a Map<String, Value>,
    label: &str,
    allowed: &str,
) -> Result<&'a str, String> {
    match fields.get("role") {
        Some(Value::String(role)) => Ok(role),
        None => Err(format!(r#"{label} has no "role" (expected {allowed})"#)),
        Some(other) => Err(format!(
            r#"{label} has a "role" that is {}, not a string (expected {allowed})"#,
            describe(other)
        )),
    }
}

fn parse_role(name: &str, label: &str) -> Result<Role, String> {
    if let Some(role) = Role::from_name(name) {
        return Ok(role);
    }
    let quoted = quote(name);
    if let Some(role) = Role::from_name(&name.to_ascii_lowercase()) {
        return Err(format!(
            r#"{label} has role {quoted}, but roles are lowercase: use "{role}""#
        ));
    }
    Err(format!(
        "{label} has role {quoted}, which is not supported (allowed roles: {ALLOWED_ROLES})"
    ))
}

fn content_text<'a>(fields: &'a Map<String, Value>, label: &str) -> Result<&'a str, String> {
    match fields.get("content") {
        Some(Value::String(content)) => Ok(content),
        None => Err(format!(r#"{label} has no "content""#)),
        Some(Value::Array(_)) => Err(format!(
            r#"{label} has "content" that is an array, not a string (content parts such as [{{"type": "text", ...}}] are not supported; put the text in one string)"#
        )),
        Some(other) => Err(format!(
            r#"{label} has "content" that is {}, not a string"#,
            describe(other)
        )),
    }
}

/// An assistant reply is what the model learns; without text there is nothing to learn.
fn check_reply_text(content: &str, label: &str) -> Result<(), String> {
    if content.is_empty() {
        Err(format!(
            "{label} has empty content: an assistant reply must hold text to learn from"
        ))
    } else if content.trim().is_empty() {
        Err(format!(
            "{label} has content that is only whitespace: an assistant reply must hold text to learn from"
        ))
    } else {
        Ok(())
    }
}

fn note_ignored(fields: &Map<String, Value>, ignored: &mut Vec<IgnoredKey>) {
    ignored.extend(
        fields
            .keys()
            .filter(|key| !MESSAGE_KEYS.contains(&key.as_str()))
            .map(|key| IgnoredKey {
                place: KeyPlace::Message,
                name: key.clone(),
            }),
    );
}

/// The kind of a JSON value, as a phrase: "an array", "null".
fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Quotes text taken from the data, escaped and shortened, so that a message stays one
/// readable line whatever the data holds.
pub(super) fn quote(text: &str) -> String {
    const SHOWN: usize = 40;
    match text.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{:?}…", &text[..cut]),
        None => format!("{text:?}"),
    }
}
