//! The README's first command, the quick start: the bundled tiny model learns the
//! house style of examples/quickstart/. Validation loss falls well below the base
//! model's, and the sample answers, which do not have the style before training,
//! have it at the end.

use std::path::Path;
use std::process::Command;

use anneal_crds::events::{EventBody, LogLevel, TrainerEvent};

#[test]
fn the_quickstart_learns_the_house_style() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .arg("train")
        .arg(repo.join("examples/quickstart/finetunejob.yaml"))
        .arg("--output")
        .arg(dir.path())
        .args(["--json", "--device", "cpu"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let events: Vec<TrainerEvent> = stdout
        .lines()
        .map(|l| TrainerEvent::from_line(l).unwrap())
        .collect();

    let baseline = events
        .iter()
        .find_map(|e| match &e.body {
            EventBody::Metrics {
                step: 0, metrics, ..
            } => metrics.valid_loss,
            _ => None,
        })
        .expect("the base model's validation loss");
    let before: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Log {
                level: LogLevel::Info,
                message,
            } => message.strip_prefix("before training: "),
            _ => None,
        })
        .collect();
    let checkpoints: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Checkpoint(c) => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(checkpoints.len(), 9, "every 9 steps over 3 epochs of 27");
    let last = checkpoints.last().unwrap();
    let final_loss = last.valid_loss.unwrap();
    assert!(
        final_loss < baseline * 0.5,
        "validation loss {final_loss} did not fall well below the base model's {baseline}"
    );
    let losses: Vec<f64> = checkpoints.iter().map(|c| c.valid_loss.unwrap()).collect();
    assert!(
        losses.windows(2).filter(|w| w[1] > w[0]).count() <= 2,
        "{losses:?}"
    );

    let styled =
        |answer: &str| answer.starts_with("Good question!") && answer.contains("\nIn short:");
    assert_eq!(before.len(), 2);
    assert!(before.iter().all(|a| !styled(a)), "{before:?}");
    assert!(last.samples.iter().all(|a| styled(a)), "{:?}", last.samples);
}
