//! `trainer plan` as users run it: the plan of the bundled examples, a 72B job that
//! does not fit one GPU (exit 1, with what would), and the errors that name the flag
//! or the missing shape (exit 2).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

fn plan(args: &[&str]) -> (Option<i32>, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .arg("plan")
        .args(args)
        .output()
        .unwrap();
    (
        status.code(),
        String::from_utf8(stdout).unwrap(),
        String::from_utf8(stderr).unwrap(),
    )
}

/// The cluster example with its base model renamed.
fn cluster_job_with_model(dir: &Path, name: &str) -> String {
    let text = std::fs::read_to_string(examples().join("cluster/support-sft-s3.yaml")).unwrap();
    let path = dir.join("job.yaml");
    std::fs::write(&path, text.replace("Qwen/Qwen2.5-7B-Instruct", name)).unwrap();
    path.display().to_string()
}

#[test]
fn a_7b_lora_job_fits_one_80_gib_gpu_and_the_plan_says_how() {
    let job = examples().join("cluster/support-sft-s3.yaml");
    let (code, stdout, stderr) = plan(&[job.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("Qwen/Qwen2.5-7B-Instruct (28 layers, hidden 3584, vocab 152064; shape from the built-in table)"), "{stdout}");
    assert!(
        stdout.contains("base weights        14.19 GiB  7.62B parameters x 2 bytes (bf16)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("peak                78.57 GiB  of 80 GiB per GPU"),
        "{stdout}"
    );
    assert!(
        stdout.contains("micro-batch 13 x 2 accumulation steps = batchSize 16"),
        "{stdout}"
    );

    // More memory per GPU: a larger micro-batch, fewer accumulation steps.
    let (code, stdout, _) = plan(&[job.to_str().unwrap(), "--gpu-memory", "141GiB"]);
    assert_eq!(code, Some(0));
    assert!(
        stdout.contains("micro-batch 16 x 1 accumulation step = batchSize 16"),
        "{stdout}"
    );
}

#[test]
fn the_quickstart_is_planned_from_its_config_json_on_the_cpu() {
    let job = examples().join("quickstart/finetunejob.yaml");
    let (code, stdout, stderr) = plan(&[job.to_str().unwrap(), "--cpu-memory", "16GiB"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("anneal-tiny (4 layers, hidden 128, vocab 2048; shape from file://"),
        "{stdout}"
    );
    assert!(stdout.contains("x 4 bytes (f32)"), "{stdout}");
    assert!(stdout.contains("of 16 GiB per CPU"), "{stdout}");
}

#[test]
fn a_72b_job_on_one_gpu_does_not_fit_and_the_plan_says_what_would() {
    let dir = tempfile::tempdir().unwrap();
    let job = cluster_job_with_model(dir.path(), "Qwen/Qwen2.5-72B-Instruct");
    let (code, stdout, _) = plan(&[&job]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("does not fit: needs 170.2 GiB per GPU at micro-batch 1 with maxTokens 4096 (base weights 135.4 GiB), more than the 80 GiB of a GPU"),
        "{stdout}"
    );
    assert!(stdout.contains("or on 3 GPUs of 80 GiB"), "{stdout}");
}

#[test]
fn errors_name_the_flag_or_the_missing_shape() {
    let dir = tempfile::tempdir().unwrap();
    let job = cluster_job_with_model(dir.path(), "acme/house-13b");
    let (code, _, stderr) = plan(&[&job]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("acme/house-13b is not a built-in model and s3://models/Qwen2.5-7B-Instruct is not a local folder: give its folder with --base-model DIR"),
        "{stderr}"
    );

    // --base-model gives the shape of any local folder.
    let tiny = examples().join("models/anneal-tiny");
    let (code, stdout, _) = plan(&[&job, "--base-model", tiny.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(
        stdout.contains("(4 layers, hidden 128, vocab 2048;"),
        "{stdout}"
    );

    let (code, _, stderr) = plan(&[&job, "--gpu-memory", "80"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("80: give the unit, e.g. 80GiB"), "{stderr}");

    let tiny = tiny.to_str().unwrap();
    let (code, _, stderr) = plan(&[&job, "--gpus", "0", "--base-model", tiny]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("--gpus 0: the plan needs at least one device"),
        "{stderr}"
    );
}

#[test]
fn a_flux_pipeline_is_planned_from_its_configs_for_generating_and_serving() {
    let configs = crate::support::fixture("../flux1-dev-configs");
    let plan = |memory: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_trainer"))
            .arg("plan")
            .arg(&configs)
            .args(["--gpu-memory", memory])
            .output()
            .unwrap()
    };
    let roomy = plan("80GiB");
    let text = String::from_utf8_lossy(&roomy.stdout);
    assert_eq!(roomy.status.code(), Some(0), "{text}");
    assert!(
        text.contains("11,901,408,320 parameters") && text.contains("22.2 GiB"),
        "{text}"
    );
    assert!(text.contains("4,762,310,656 parameters"), "{text}");
    assert!(
        text.contains("1 image(s) of 1024x1024 with 512 T5 tokens"),
        "{text}"
    );
    assert!(text.contains("fits: both"), "{text}");
    // All weights are loaded before T5 is freed: 31.4 GiB at once; the server adds
    // the activations to them.
    let tight = plan("32GiB");
    let text = String::from_utf8_lossy(&tight.stdout);
    assert_eq!(tight.status.code(), Some(0), "{text}");
    assert!(text.contains("fits: generate-image only"), "{text}");
    let small = plan("24GiB");
    let text = String::from_utf8_lossy(&small.stdout);
    assert_eq!(small.status.code(), Some(1), "{text}");
    assert!(
        text.contains("does not fit: generating needs 31.4 GiB of 24 GiB"),
        "{text}"
    );
}

/// The estimate counts the quick start's tokens through the chat template (240 chats,
/// a tenth held out: 216 an epoch, 27 steps of 8, three epochs), and at a 7B shape
/// its duration and cost follow from the FLOPs printed beside them.
#[test]
fn the_estimate_counts_the_datasets_tokens_and_prices_the_steps() {
    let dir = tempfile::tempdir().unwrap();
    // The tiny model's tokenizer with Qwen2.5-7B's shape.
    let model = dir.path().join("model");
    std::fs::create_dir(&model).unwrap();
    let tiny = examples().join("models/anneal-tiny");
    for file in std::fs::read_dir(&tiny).unwrap() {
        let file = file.unwrap().path();
        if file.extension().is_none_or(|e| e != "safetensors") {
            std::fs::copy(&file, model.join(file.file_name().unwrap())).unwrap();
        }
    }
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tiny.join("config.json")).unwrap()).unwrap();
    for (key, value) in [
        ("hidden_size", 3584),
        ("intermediate_size", 18944),
        ("num_hidden_layers", 28),
        ("num_attention_heads", 28),
        ("num_key_value_heads", 4),
        ("vocab_size", 152_064),
    ] {
        config[key] = value.into();
    }
    config["tie_word_embeddings"] = false.into();
    std::fs::write(model.join("config.json"), config.to_string()).unwrap();

    let job = examples().join("quickstart/finetunejob.yaml");
    let (code, stdout, stderr) = plan(&[
        job.to_str().unwrap(),
        "--base-model",
        model.to_str().unwrap(),
        "--gpus",
        "2",
        "--tflops",
        "1",
        "--utilization",
        "0.5",
        "--price-per-gpu-hour",
        "3",
    ]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let line = |start: &str| {
        stdout
            .lines()
            .find(|l| l.trim_start().starts_with(start))
            .unwrap_or_else(|| panic!("no {start} line:\n{stdout}"))
            .trim()
            .to_owned()
    };
    let tokens_line = line("estimate:");
    assert!(
        tokens_line.starts_with("estimate: 216 samples and ")
            && tokens_line
                .ends_with(" tokens an epoch (after the chat template), 81 steps, 3 epochs"),
        "{tokens_line}"
    );
    let per_epoch: f64 = tokens_line.split(' ').nth(4).unwrap().parse().unwrap();
    assert!(
        (60.0..100.0).contains(&(per_epoch / 216.0)),
        "{per_epoch} tokens: about 85 a chat"
    );
    let flops: f64 = line("compute:").split(' ').nth(1).unwrap().parse().unwrap();
    // About 43 GFLOPs a token at the 7B shape with LoRA and recomputation.
    let per_token = flops / (3.0 * per_epoch);
    assert!((per_token / 43e9 - 1.0).abs() < 0.03, "{per_token:e}");
    // Two GPUs of 1 TFLOPS at half: flops / 1e12 seconds, as many GPU-hours as the
    // duration's hours times two, at 3 each.
    let seconds = flops / 1e12;
    let gpu_hours = 2.0 * seconds / 3600.0;
    assert_eq!(
        line("cost:"),
        format!(
            "cost: {:.2} for {gpu_hours:.2} GPU-hours at 3.00 per GPU-hour",
            3.0 * gpu_hours
        )
    );
    // The 7B shape fits one GPU, so both train at once: data-parallel.
    assert!(
        line("duration:")
            .ends_with("of training steps on 2 GPUs of 1 TFLOPS at 50% utilization, data-parallel"),
        "{}",
        line("duration:")
    );

    // A job whose data is not on this machine gets no estimate, and is told why.
    let cluster = examples().join("cluster/support-sft-s3.yaml");
    let (_, stdout, _) = plan(&[cluster.to_str().unwrap()]);
    assert!(
        stdout.contains("estimate: none, the model's tokenizer is not on this machine"),
        "{stdout}"
    );
}

/// The seconds of a figure such as `0.217 s` after `label`.
fn seconds_after(text: &str, label: &str) -> f64 {
    let start = text
        .find(label)
        .unwrap_or_else(|| panic!("no {label:?} in {text}"))
        + label.len();
    text[start..].split(" s").next().unwrap().parse().unwrap()
}

#[test]
fn measure_times_the_first_steps_and_a_checkpoint_and_adds_up_the_schedule() {
    let manifest = examples().join("quickstart/finetunejob.yaml");
    let (code, out, err) = plan(&[
        manifest.to_str().unwrap(),
        "--cpu-memory",
        "8GiB",
        "--measure",
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    let measured = out
        .lines()
        .find(|l| l.contains("measured on this CPU: "))
        .unwrap_or_else(|| panic!("{out}"));
    let (start, step, checkpoint) = (
        seconds_after(measured, "start "),
        seconds_after(measured, ", "),
        seconds_after(measured, "a step, "),
    );
    assert!(step > 0.0 && checkpoint > 0.0 && start >= 0.0, "{measured}");
    // The job's own schedule: 81 steps, a checkpoint every 9 and every epoch.
    let total = out
        .lines()
        .find(|l| l.contains(" in all on this CPU (81 steps, 9 checkpoints)"))
        .unwrap_or_else(|| panic!("{out}"));
    let expected = start + 81.0 * step + 9.0 * checkpoint;
    let shown = total.split("duration: ").nth(1).unwrap();
    let shown_seconds: f64 = match shown.split_once(" min") {
        Some((minutes, _)) => minutes.trim().parse::<f64>().unwrap() * 60.0,
        None => shown.split(" s").next().unwrap().trim().parse().unwrap(),
    };
    // Whole seconds under two minutes, whole minutes above (rounded to the nearest).
    let rounding = if expected < 120.0 { 1.0 } else { 30.0 };
    assert!(
        (shown_seconds - expected).abs() <= rounding,
        "{total} vs {expected:.1} s"
    );
}
