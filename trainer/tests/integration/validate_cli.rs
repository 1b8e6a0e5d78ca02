//! `trainer validate` as a user runs it: exit codes, and the report on stdout.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

fn trainer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(args)
        .output()
        .expect("the trainer binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[test]
fn a_good_dataset_exits_0_with_its_summary() {
    let path = examples().join("datasets/support-sft.jsonl");
    let output = trainer(&["validate", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0));
    let text = stdout(&output);
    assert!(text.contains(": valid SFT dataset\n"), "{text}");
    assert!(
        text.contains("  samples           40 valid of 40 lines\n"),
        "{text}"
    );
}

#[test]
fn a_bad_dataset_exits_1_listing_each_problem_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.jsonl");
    std::fs::write(
        &path,
        concat!(
            r#"{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}"#,
            "\n",
            r#"{"messages": [{"role": "user", "content": "Hi"}]}"#,
            "\n",
            "not json\n",
            r#"{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}"#,
            "\n",
        ),
    )
    .unwrap();
    let output = trainer(&["validate", "--max-errors", "1", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].ends_with("bad.jsonl: invalid SFT dataset"),
        "{text}"
    );
    assert!(lines[1].starts_with("  line 2: "), "{text}");
    assert_eq!(
        lines[2],
        "  ... and 1 more (2 problems in all; raise --max-errors to see them)"
    );
    assert!(
        text.contains("  samples           2 valid of 4 lines\n"),
        "{text}"
    );
}

#[test]
fn a_dpo_file_is_checked_as_dpo_only_when_asked() {
    let path = examples().join("datasets/support-dpo.jsonl");
    let path = path.to_str().unwrap();
    assert_eq!(
        trainer(&["validate", "--method", "dpo", path])
            .status
            .code(),
        Some(0)
    );
    assert_eq!(trainer(&["validate", path]).status.code(), Some(1));
}

#[test]
fn a_manifest_is_checked_with_the_datasets_it_names() {
    let path = examples().join("support-dpo.yaml");
    let output = trainer(&["validate", path.to_str().unwrap()]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(
        text.contains("valid FineTuneJob pedalhop-support-dpo\n"),
        "{text}"
    );
    assert!(
        text.contains("  method            dpo, training lora\n"),
        "{text}"
    );
    assert!(
        text.contains("support-dpo.jsonl: valid DPO dataset\n"),
        "{text}"
    );
    // No gradientAccumulation: the trainer runs the memory plan's micro-batch.
    assert!(
        text.contains(", batch 8 (micro-batch: the largest the device holds, see trainer plan),"),
        "{text}"
    );
    let path = examples().join("cluster/support-sft-s3.yaml");
    let text = stdout(&trainer(&["validate", path.to_str().unwrap()]));
    assert!(
        text.contains(", batch 16 (micro-batch 4, set by gradientAccumulation),"),
        "{text}"
    );
}

#[test]
fn a_bad_manifest_exits_1_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("job.yaml");
    let text = std::fs::read_to_string(examples().join("support-sft.yaml"))
        .unwrap()
        .replace("epochs: 3", "epochs: 30");
    std::fs::write(&path, text).unwrap();
    let output = trainer(&["validate", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stdout(&output)
            .contains("  spec.hyperparameters.epochs: must be between 1 and 10, got 30\n"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn a_missing_file_exits_2() {
    let output = trainer(&["validate", "/nonexistent/data.jsonl"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.starts_with("trainer validate: cannot open /nonexistent/data.jsonl"),
        "{stderr}"
    );
}

#[test]
fn a_device_fifo_or_folder_is_refused_at_once_instead_of_read_forever() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe.jsonl");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    for path in [Path::new("/dev/zero"), fifo.as_path()] {
        let output = trainer(&["validate", path.to_str().unwrap()]);
        assert_eq!(output.status.code(), Some(2), "{}", path.display());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            stderr.trim(),
            format!(
                "trainer validate: cannot open {}: not a regular file (a FIFO or a device cannot be a dataset)",
                path.display()
            )
        );
    }
}

/// Writes a `width` x `height` image in the format its name's ending says.
fn write_image(path: &Path, width: u32, height: u32) {
    image::RgbImage::from_fn(width, height, |x, y| image::Rgb([x as u8, y as u8, 90]))
        .save(path)
        .unwrap();
}

#[test]
fn an_image_folder_is_checked_file_by_file() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path();
    write_image(&folder.join("dog1.png"), 48, 32);
    std::fs::write(folder.join("dog1.txt"), "a dog on the grass\n").unwrap();
    write_image(&folder.join("dog2.jpg"), 32, 48);
    // A download cut off halfway.
    write_image(&folder.join("broken.png"), 64, 64);
    let bytes = std::fs::read(folder.join("broken.png")).unwrap();
    std::fs::write(folder.join("broken.png"), &bytes[..bytes.len() / 2]).unwrap();
    let output = trainer(&["validate", folder.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert_eq!(
        lines[0],
        format!(
            "{}: invalid image folder, 2 images, 1 with a caption",
            folder.display()
        )
    );
    assert_eq!(
        lines[1],
        "note: 1 image(s) without a caption need the job's hyperparameters.triggerWord: dog2.jpg"
    );
    assert!(
        lines[2].starts_with("error: broken.png: cannot be decoded as a PNG image: "),
        "{text}"
    );
    assert_eq!(lines[3], "invalid: 1 problem(s)");

    std::fs::remove_file(folder.join("broken.png")).unwrap();
    let output = trainer(&["validate", folder.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    assert!(stdout(&output).ends_with("\nvalid\n"));
}

/// An image job on `folder` in a manifest beside it; `extra` goes under
/// `hyperparameters`.
fn image_job(dir: &Path, extra: &str) -> PathBuf {
    let manifest = dir.join("dog.yaml");
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: anneal.dev/v1alpha1
kind: FineTuneJob
metadata: {{name: dog}}
spec:
  task: text-to-image
  baseModel: {{name: anneal-flux-tiny, source: file://models/anneal-flux-tiny}}
  dataset: {{images: file://photos/}}
  hyperparameters: {{preset: fast, repeats: 4, resolution: 64{extra}}}
"
        ),
    )
    .unwrap();
    manifest
}

#[test]
fn an_image_job_is_checked_with_its_folder_and_trigger_word() {
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("photos");
    std::fs::create_dir(&photos).unwrap();
    write_image(&photos.join("dog1.png"), 48, 32);
    write_image(&photos.join("dog2.webp"), 32, 32);
    std::fs::write(photos.join("dog2.txt"), "a dog asleep").unwrap();

    let without_word = image_job(dir.path(), "");
    let output = trainer(&["validate", without_word.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    assert!(
        text.contains("error: dog1.png: has no caption (a .txt file of the same name) and the job sets no hyperparameters.triggerWord to train it on\n"),
        "{text}"
    );

    let with_word = image_job(dir.path(), ", triggerWord: sks dog");
    let output = trainer(&["validate", with_word.to_str().unwrap()]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(
        text.contains("  task              text-to-image, LoRA with the flow-matching loss\n  hyperparameters   lr 0.0002, epochs 4, batch 1, repeats 4, resolution 64, trigger word \"sks dog\"\n  lora              rank 8, alpha 8, dropout 0, modules attention\n"),
        "{text}"
    );
    assert!(
        text.contains("note: 1 image(s) without a caption are trained on the trigger word \"sks dog\" alone: dog1.png\n"),
        "{text}"
    );

    // Training it on a folder with a corrupt image fails before the model is loaded
    // (here there is none), naming the file, with exit 2.
    std::fs::write(photos.join("dog3.jpg"), b"not a jpeg").unwrap();
    let output = trainer(&[
        "train",
        with_word.to_str().unwrap(),
        "--base-model",
        &format!(
            "{}/../examples/models/anneal-flux-tiny",
            env!("CARGO_MANIFEST_DIR")
        ),
        "--output",
        dir.path().join("runs").to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr,
        "trainer train: dataset.images: dog3.jpg: is not a JPEG, PNG or WebP image\n"
    );
    assert!(
        !dir.path().join("runs").exists(),
        "a run that cannot start leaves no folder"
    );
}
