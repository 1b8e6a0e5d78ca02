//! `parse_sample`, the one-line entry point the trainer loads data with.

use super::super::{ChatMessage, ChatSample, DatasetKind, DatasetProblem, Role, parse_sample};
use super::{DPO_OK, SFT_OK};

fn message(role: Role, content: &str) -> ChatMessage {
    ChatMessage {
        role,
        content: content.to_owned(),
    }
}

#[test]
fn an_sft_line_becomes_its_messages() {
    let sample = parse_sample(SFT_OK, DatasetKind::Sft).expect("valid line");
    assert_eq!(
        sample,
        ChatSample {
            messages: vec![
                message(Role::User, "Hi"),
                message(Role::Assistant, "Hello!")
            ],
            chosen: None,
            rejected: None,
        }
    );
    assert_eq!(sample.characters(), 8);
}

#[test]
fn a_dpo_line_keeps_both_replies() {
    let sample = parse_sample(DPO_OK, DatasetKind::Dpo).expect("valid line");
    assert_eq!(
        sample,
        ChatSample {
            messages: vec![message(Role::User, "Hi")],
            chosen: Some(message(Role::Assistant, "Hello!")),
            rejected: Some(message(Role::Assistant, "What.")),
        }
    );
    assert_eq!(sample.characters(), 13);
}

#[test]
fn unknown_keys_and_surrounding_whitespace_are_tolerated() {
    let line = r#"  {"id": 7, "messages":[{"role":"user","content":"Hi","name":"ann"},{"role":"assistant","content":"Yo","weight":0}]}  "#;
    let sample = parse_sample(line, DatasetKind::Sft).expect("valid line");
    assert_eq!(sample.messages.len(), 2);
}

#[test]
fn an_error_has_no_line_prefix() {
    assert_eq!(
        parse_sample("", DatasetKind::Sft),
        Err("empty line: every line must hold one JSON object".to_owned())
    );
}

#[test]
fn the_same_line_is_refused_for_the_other_method() {
    assert!(parse_sample(SFT_OK, DatasetKind::Dpo).is_err());
    assert!(parse_sample(DPO_OK, DatasetKind::Sft).is_err());
}

#[test]
fn a_sample_round_trips_through_serde() {
    let sample = parse_sample(DPO_OK, DatasetKind::Dpo).expect("valid line");
    let json = serde_json::to_string(&sample).expect("serializable");
    assert_eq!(
        serde_json::from_str::<ChatSample>(&json).expect("deserializable"),
        sample
    );
    let sft = parse_sample(SFT_OK, DatasetKind::Sft).expect("valid line");
    assert_eq!(
        serde_json::to_string(&sft).expect("serializable"),
        SFT_OK,
        "absent replies are left out"
    );
}

#[test]
fn problems_display_with_their_line_or_as_the_file() {
    assert_eq!(DatasetProblem::new(3, "bad").to_string(), "line 3: bad");
    let file = DatasetProblem::file("no samples");
    assert!(file.is_file_level());
    assert_eq!(file.to_string(), "file: no samples");
}
