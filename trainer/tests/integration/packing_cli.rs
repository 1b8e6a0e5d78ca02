//! `dataset.packing: true` as a user runs it: the run says it packs, and every step's
//! loss, and the validation loss at each checkpoint, are those of the same job
//! unpacked (no dropout, so both draw nothing at random).

use std::path::Path;

use anneal_crds::events::EventBody;

use crate::train_cli::{events, expect, job_dir, trainer_train};

/// Each step's training loss and each evaluation's validation loss, in order, and
/// the run's log lines.
fn losses(dir: &Path, packing: bool) -> (Vec<f64>, Vec<f64>, Vec<String>) {
    let manifest = job_dir(dir, None);
    let mut text = std::fs::read_to_string(&manifest)
        .unwrap()
        .replace("dropout: 0.1", "dropout: 0.0");
    if packing {
        text = text.replace(
            "validationSplit: 0.2}",
            "validationSplit: 0.2, packing: true}",
        );
        assert!(text.contains("packing: true"), "{text}");
    }
    std::fs::write(&manifest, text).unwrap();
    let output = trainer_train(&manifest, &dir.join("out"), &[])
        .output()
        .unwrap();
    expect(&output, 0);
    let (mut train, mut valid, mut logs) = (Vec::new(), Vec::new(), Vec::new());
    for event in events(&output.stdout) {
        match event.body {
            EventBody::Metrics { metrics, .. } => {
                train.extend(metrics.train_loss);
                valid.extend(metrics.valid_loss);
            }
            EventBody::Log { message, .. } => logs.push(message),
            _ => {}
        }
    }
    (train, valid, logs)
}

#[test]
fn a_packed_run_has_the_losses_of_the_unpacked_one() {
    let (plain, packed) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (train, valid, logs) = losses(plain.path(), false);
    let (packed_train, packed_valid, packed_logs) = losses(packed.path(), true);
    assert!(train.len() >= 10, "{train:?}");
    assert!(!valid.is_empty());
    let close = |a: &[f64], b: &[f64]| {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| (x - y).abs() <= 1e-4 * y.abs())
    };
    assert!(close(&packed_train, &train), "{packed_train:?}\n{train:?}");
    assert!(close(&packed_valid, &valid), "{packed_valid:?}\n{valid:?}");
    // It learns: the second epoch's mean loss below the first's.
    let half = train.len() / 2;
    let mean = |l: &[f64]| l.iter().sum::<f64>() / l.len() as f64;
    assert!(mean(&train[half..]) < mean(&train[..half]), "{train:?}");
    let says = |logs: &[String]| {
        logs.iter()
            .any(|l| l.ends_with("; chats packed into rows of 256 tokens"))
    };
    assert!(says(&packed_logs), "{packed_logs:?}");
    assert!(!says(&logs), "{logs:?}");
}
