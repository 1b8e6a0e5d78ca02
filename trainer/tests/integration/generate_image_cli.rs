//! `trainer generate-image` as a user runs it, on the tiny random FLUX pipeline of
//! the reference fixtures (diffusers layout, 2x VAE: sizes are multiples of 4).

use std::path::Path;
use std::process::{Command, Output};

use crate::support::fixture;

fn generate_image(out: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trainer"))
        .arg("generate-image")
        .arg("--model")
        .arg(fixture("flux-tiny"))
        .args([
            "--prompt",
            "a red circle on a blue background",
            "--device",
            "cpu",
        ])
        .args(["--max-sequence-length", "30", "--steps", "3"])
        .arg("--out")
        .arg(out)
        .args(args)
        .output()
        .unwrap()
}

/// The RGB pixels and size of a PNG file.
fn decode(path: &Path) -> (Vec<u8>, u32, u32) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buffer = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buffer).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    buffer.truncate(info.buffer_size());
    (buffer, info.width, info.height)
}

#[test]
fn n_images_are_written_as_pngs_and_a_seed_gives_the_same_ones_again() {
    let dir = tempfile::tempdir().unwrap();
    let (first, again, other) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
    );
    let output = generate_image(&first, &["--size", "12x16", "--n", "2", "--seed", "5"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let written: Vec<&str> = stdout.lines().collect();
    assert_eq!(written.len(), 2, "{stdout}");
    assert!(written[1].ends_with("image-1.png"));
    let (pixels, width, height) = decode(&first.join("image-0.png"));
    assert_eq!((width, height), (12, 16));
    let (second, _, _) = decode(&first.join("image-1.png"));
    assert_ne!(
        pixels, second,
        "two images of one prompt come from different noise"
    );
    // Random weights still make a picture: not one flat colour.
    assert!(pixels.iter().any(|&p| p != pixels[0]));

    assert!(
        generate_image(&again, &["--size", "12x16", "--n", "2", "--seed", "5"])
            .status
            .success()
    );
    assert_eq!(decode(&again.join("image-0.png")).0, pixels);
    assert!(
        generate_image(&other, &["--size", "12x16", "--seed", "6"])
            .status
            .success()
    );
    assert_ne!(decode(&other.join("image-0.png")).0, pixels);
}

#[test]
fn bad_settings_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let refused = |args: &[&str]| {
        let output = generate_image(&out, args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        String::from_utf8(output.stderr).unwrap()
    };
    let error = refused(&["--size", "13x16"]);
    assert!(
        error.contains("size 13x16") && error.contains("multiples of 4"),
        "{error}"
    );
    assert!(refused(&["--n", "0"]).contains("--n must be"));
    assert!(refused(&["--max-sequence-length", "0"]).contains("--max-sequence-length"));
    assert!(!out.exists(), "nothing written for a refused request");

    let output = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args([
            "generate-image",
            "--model",
            "/no/such/pipeline",
            "--prompt",
            "x",
        ])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--model"));
    let output = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args([
            "generate-image",
            "--model",
            "x",
            "--prompt",
            "x",
            "--size",
            "big",
        ])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&output.stderr).contains("expected WIDTHxHEIGHT"));
}

#[test]
fn a_lora_adapter_changes_the_images_and_a_missing_one_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (base, adapted) = (dir.path().join("base"), dir.path().join("adapted"));
    let adapter = fixture("flux-tiny").join("lora-a");
    let adapter = adapter.to_str().unwrap();
    assert!(generate_image(&base, &["--size", "12x16"]).status.success());
    let output = generate_image(&adapted, &["--size", "12x16", "--adapter", adapter]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_ne!(
        decode(&base.join("image-0.png")).0,
        decode(&adapted.join("image-0.png")).0
    );

    let output = generate_image(&dir.path().join("none"), &["--adapter", "/no/such/lora"]);
    assert_eq!(output.status.code(), Some(2));
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains("--adapter /no/such/lora"), "{error}");
}

#[test]
fn a_pipeline_fetched_from_a_hub_generates_as_the_local_folder_does() {
    // The fixture pipeline published on a fake Hugging Face Hub (the LoRA folders and
    // reference files beside it are not pipeline files, and are not fetched).
    let hub = anneal_fake_hub::FakeHub::start();
    hub.publish_folder("anneal/flux-tiny", "main", &fixture("flux-tiny"));
    let dir = tempfile::tempdir().unwrap();
    let mut fetch = Command::new(env!("CARGO_BIN_EXE_trainer"));
    fetch
        .args(["fetch", "hf://anneal/flux-tiny"])
        .arg(dir.path().join("pipeline"));
    let output = crate::hub_cli::with_hub(fetch, &hub, &dir.path().join("cache"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let fetched = dir.path().join("pipeline");
    assert!(
        fetched
            .join("transformer/diffusion_pytorch_model.safetensors")
            .is_file()
    );
    assert!(!fetched.join("lora-a").exists() && !fetched.join("reference.safetensors").exists());

    let run = |model: &Path, out: &Path| {
        let output = Command::new(env!("CARGO_BIN_EXE_trainer"))
            .arg("generate-image")
            .arg("--model")
            .arg(model)
            .args(["--prompt", "a dot", "--size", "12x16", "--steps", "2"])
            .args(["--max-sequence-length", "30", "--device", "cpu", "--out"])
            .arg(out)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        decode(&out.join("image-0.png")).0
    };
    assert_eq!(
        run(&fetched, &dir.path().join("a")),
        run(&fixture("flux-tiny"), &dir.path().join("b"))
    );
}

/// The nearest of the tiny image model's eight colours to the mean of `pixels` (RGB
/// rows of a 32x32 picture) in rows and columns `range`.
fn colour_in(
    pixels: &[u8],
    rows: std::ops::Range<usize>,
    columns: std::ops::Range<usize>,
) -> &'static str {
    const COLOURS: [(&str, [f32; 3]); 8] = [
        ("red", [220.0, 40.0, 40.0]),
        ("green", [40.0, 170.0, 60.0]),
        ("blue", [40.0, 80.0, 220.0]),
        ("yellow", [235.0, 210.0, 40.0]),
        ("orange", [240.0, 140.0, 30.0]),
        ("purple", [140.0, 60.0, 180.0]),
        ("white", [245.0, 245.0, 245.0]),
        ("black", [20.0, 20.0, 20.0]),
    ];
    let mut mean = [0f32; 3];
    let mut count = 0.0;
    for row in rows {
        for column in columns.clone() {
            for (c, m) in mean.iter_mut().enumerate() {
                *m += f32::from(pixels[(row * 32 + column) * 3 + c]);
            }
            count += 1.0;
        }
    }
    let mean = mean.map(|m| m / count);
    COLOURS
        .iter()
        .min_by(|a, b| {
            let distance = |c: &[f32; 3]| (0..3).map(|i| (c[i] - mean[i]).powi(2)).sum::<f32>();
            distance(&a.1).total_cmp(&distance(&b.1))
        })
        .unwrap()
        .0
}

#[test]
fn the_bundled_tiny_image_model_draws_the_colours_its_prompts_name() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/models/anneal-flux-tiny");
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("red", "white"),
        ("blue", "yellow"),
        ("green", "black"),
        ("yellow", "purple"),
        ("white", "blue"),
        ("black", "orange"),
    ];
    let mut right = Vec::new();
    for (i, (colour, ground)) in cases.iter().enumerate() {
        let out = dir.path().join(i.to_string());
        // Size, steps and prompt length come from the model's anneal_pipeline.json.
        let output = Command::new(env!("CARGO_BIN_EXE_trainer"))
            .arg("generate-image")
            .arg("--model")
            .arg(&model)
            .args([
                "--prompt",
                &format!("a {colour} square on a {ground} background"),
            ])
            .args(["--seed", "1", "--device", "cpu", "--out"])
            .arg(&out)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let (pixels, width, height) = decode(&out.join("image-0.png"));
        assert_eq!((width, height), (32, 32));
        let centre = colour_in(&pixels, 13..19, 13..19);
        let corners = [
            colour_in(&pixels, 0..3, 0..3),
            colour_in(&pixels, 29..32, 29..32),
        ];
        right.push((*colour, *ground, centre, corners));
    }
    let drawn = right
        .iter()
        .filter(|(colour, ground, centre, corners)| {
            centre == colour && corners.iter().all(|c| c == ground)
        })
        .count();
    assert!(
        drawn >= 5,
        "pictures (asked colour, ground, centre, corners): {right:?}"
    );
}
