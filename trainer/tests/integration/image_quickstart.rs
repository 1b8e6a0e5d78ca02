//! The image quick start as a newcomer runs it: the bundled tiny FLUX model learns
//! the pink ball of examples/quickstart/sks-ball/ under the trigger word `sks`. The
//! training loss falls; the samples of the trigger word show the subject at the end
//! and not before (measured: their distance to the nearest picture of it); the
//! contact sheet holds every epoch; and the `try it:` and `serve it:` commands run as
//! printed, the first drawing exactly the run's last sample.

use std::path::{Path, PathBuf};
use std::process::Command;

use anneal_crds::events::{EventBody, TrainerEvent};

use crate::quickstart::{
    PATH_WITHOUT_TRAINER, printed_line, the_serve_it_command_serves_the_adapter, train_as_printed,
};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rgb(png: &Path) -> image::RgbImage {
    image::open(png)
        .unwrap_or_else(|e| panic!("{}: {e}", png.display()))
        .to_rgb8()
}

/// How far `png` is from the nearest of the training `pictures`: the mean distance
/// of its pixels to the picture's, in RGB (0 the same picture, 441 black against
/// white). A sample that shows the subject is near one of its pictures.
fn distance_to_pictures(png: &Path, pictures: &[image::RgbImage]) -> f64 {
    let sample = rgb(png);
    pictures
        .iter()
        .map(|picture| {
            assert_eq!(picture.dimensions(), sample.dimensions());
            let total: f64 = picture
                .pixels()
                .zip(sample.pixels())
                .map(|(a, b)| {
                    (0..3)
                        .map(|c| (f64::from(a.0[c]) - f64::from(b.0[c])).powi(2))
                        .sum::<f64>()
                        .sqrt()
                })
                .sum();
            total / f64::from(sample.width() * sample.height())
        })
        .fold(f64::INFINITY, f64::min)
}

#[test]
fn the_image_quickstart_teaches_the_subject_and_its_printed_commands_run() {
    let dir = tempfile::tempdir().unwrap();
    let stdout = train_as_printed("examples/quickstart/image-lora.yaml", dir.path());
    let runs = dir.path().join("default/sks-ball");
    let run = std::fs::read_dir(&runs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();

    // The loss: each epoch's mean training loss, the last well below the first.
    let text = std::fs::read_to_string(run.join("events.jsonl")).unwrap();
    let events: Vec<TrainerEvent> = text
        .lines()
        .map(|l| TrainerEvent::from_line(l).unwrap())
        .collect();
    let mut epochs = [(0.0, 0u32); 4];
    for event in &events {
        if let EventBody::Metrics { step, metrics, .. } = &event.body
            && let Some(loss) = metrics.train_loss
        {
            let epoch = &mut epochs[((step - 1) / 50) as usize];
            *epoch = (epoch.0 + loss, epoch.1 + 1);
        }
    }
    let means: Vec<f64> = epochs.iter().map(|(sum, n)| sum / f64::from(*n)).collect();
    assert!(epochs.iter().all(|(_, n)| *n == 50), "{epochs:?}");
    assert!(means[3] < means[0] * 0.5, "epoch mean losses {means:?}");

    // The subject: the trigger-word samples (the first two prompts) before training
    // are far from every picture of it, after training near one.
    let pictures: Vec<image::RgbImage> = (1..=5)
        .map(|i| rgb(&repo().join(format!("examples/quickstart/sks-ball/ball-{i}.png"))))
        .collect();
    let distances = |folder: &str| -> Vec<f64> {
        (0..2)
            .map(|i| {
                let sample = run.join(folder).join(format!("sample-{i}.png"));
                distance_to_pictures(&sample, &pictures)
            })
            .collect()
    };
    let (before, after) = (distances("samples/base"), distances("final"));
    assert!(
        before.iter().zip(&after).all(|(b, a)| *a < b * 0.5),
        "distance of the trigger-word samples to the subject's pictures: before {before:?}, after {after:?}"
    );

    // The contact sheet: the base row and four epochs, three prompts each.
    let sheet = image::open(run.join("samples.png")).unwrap();
    assert_eq!(
        (sheet.width(), sheet.height()),
        (3 * 68 + 4, 5 * 68 + 4),
        "3 columns and 5 rows of 64x64 with 4-pixel gaps"
    );
    assert!(run.join("loss.svg").is_file());

    let printed = |label: &str| printed_line(&stdout, label);
    let try_it = printed("try it:");
    let drawn = Command::new("sh")
        .args(["-c", &try_it])
        .env("PATH", PATH_WITHOUT_TRAINER)
        .output()
        .unwrap();
    assert!(
        drawn.status.success(),
        "{try_it}\n{}",
        String::from_utf8_lossy(&drawn.stderr)
    );
    let tried = std::fs::read(run.join("tried/image-0.png")).unwrap();
    assert!(
        tried == std::fs::read(run.join("final/sample-0.png")).unwrap(),
        "`{try_it}` drew another image than the run's last sample"
    );
    the_serve_it_command_serves_the_adapter(&printed("serve it:"), &printed("model id:"));
}
