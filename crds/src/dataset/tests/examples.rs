//! The sample datasets shipped in `examples/datasets/` pass the rules and keep their style.

use std::fs::File;
use std::path::PathBuf;

use super::super::{ChatSample, DatasetKind, DatasetLimits, Role, read_samples, validate_dataset};

fn example(name: &str) -> File {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/datasets")
        .join(name);
    File::open(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn samples(name: &str, kind: DatasetKind) -> Vec<ChatSample> {
    read_samples(example(name), kind, &DatasetLimits::default())
        .map(|item| {
            let (line, sample) = item.expect("the example is readable");
            sample.unwrap_or_else(|problem| panic!("{name} line {line}: {problem}"))
        })
        .collect()
}

/// The style a model trained on the examples should pick up.
fn in_house_style(reply: &str) -> bool {
    let last_line = reply.lines().last().unwrap_or_default();
    reply.starts_with("Sure thing! ")
        && reply.lines().count() == 2
        && last_line.starts_with("In short: ")
}

#[test]
fn both_examples_are_valid() {
    for (file, kind) in [
        ("support-sft.jsonl", DatasetKind::Sft),
        ("support-dpo.jsonl", DatasetKind::Dpo),
    ] {
        let report = validate_dataset(example(file), kind, &DatasetLimits::default())
            .expect("the example is readable");
        assert_eq!(report.problems, vec![], "{file}");
        assert_eq!(report.problems_total, 0, "{file}");
        assert_eq!(report.summary.samples, 40, "{file}");
        assert_eq!(report.summary.lines, 40, "{file}");
        assert_eq!(report.summary.notes, Vec::<String>::new(), "{file}");
    }
}

#[test]
fn every_sft_reply_is_in_house_style() {
    let samples = samples("support-sft.jsonl", DatasetKind::Sft);
    for sample in &samples {
        for message in sample.messages.iter().filter(|m| m.role == Role::Assistant) {
            assert!(in_house_style(&message.content), "{:?}", message.content);
        }
    }
    let with_system = samples
        .iter()
        .filter(|sample| sample.messages[0].role == Role::System)
        .count();
    let multi_turn = samples
        .iter()
        .filter(|sample| {
            sample
                .messages
                .iter()
                .filter(|m| m.role == Role::User)
                .count()
                == 2
        })
        .count();
    assert!(
        with_system >= 5,
        "{with_system} samples with a system message"
    );
    assert!(multi_turn >= 3, "{multi_turn} multi-turn samples");
}

#[test]
fn every_dpo_pair_prefers_the_house_style() {
    for sample in samples("support-dpo.jsonl", DatasetKind::Dpo) {
        let chosen = sample.chosen.expect("DPO samples have chosen").content;
        let rejected = sample.rejected.expect("DPO samples have rejected").content;
        assert!(in_house_style(&chosen), "{chosen:?}");
        assert!(
            !rejected.contains("Sure thing") && !rejected.contains("In short"),
            "{rejected:?}"
        );
    }
}
