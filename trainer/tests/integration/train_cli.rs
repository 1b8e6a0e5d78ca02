//! `trainer train` as a user and a pod run it: a run killed with SIGKILL, then
//! stopped with SIGTERM, and resumed each time ends with the adapter of the run
//! that was never interrupted; bad input fails before training with the field or
//! line named and the exit code that tells a pod not to retry; a DPO job trains and
//! reports its rewards the same way; without gradientAccumulation the micro-batch is
//! the memory plan's for `--cpu-memory`, and a job that does not fit is refused.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use anneal_crds::events::{EventBody, TrainerEvent};
use anneal_crds::finetunejob::JobPhase;
use anneal_crds::manifest::parse_finetunejob;
use anneal_crds::memory_plan::plan::peak_bytes;
use anneal_crds::memory_plan::{ByteSize, DeviceMemory, ModelShape, PlanInputs, plan};
use anneal_crds::storage::Storage;
use anneal_train::state::TrainerState;

pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A job folder: the manifest, and 24 samples of the quick start's data.
pub(crate) fn job_dir(dir: &Path, train_lines: Option<&str>) -> PathBuf {
    let data =
        std::fs::read_to_string(repo().join("examples/quickstart/house-style.jsonl")).unwrap();
    let lines = train_lines
        .map(str::to_owned)
        .unwrap_or_else(|| data.lines().take(24).collect::<Vec<_>>().join("\n") + "\n");
    std::fs::write(dir.join("train.jsonl"), lines).unwrap();
    let model = std::path::absolute(repo().join("examples/models/anneal-tiny")).unwrap();
    let manifest = format!(
        r#"apiVersion: anneal.dev/v1alpha1
kind: FineTuneJob
metadata: {{name: cli, namespace: team-a}}
spec:
  baseModel: {{name: anneal-tiny, source: "file://{}"}}
  dataset: {{train: "file://train.jsonl", validationSplit: 0.2}}
  hyperparameters:
    learningRate: 0.003
    epochs: 2
    batchSize: 4
    gradientAccumulation: 2
    maxTokens: 256
    lora: {{rank: 4, alpha: 8, dropout: 0.1}}
  checkpoints: {{everyEpoch: true, everySteps: 2}}
"#,
        model.display()
    );
    let path = dir.join("job.yaml");
    std::fs::write(&path, manifest).unwrap();
    path
}

pub(crate) fn trainer_train(manifest: &Path, output: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_trainer"));
    command
        .arg("train")
        .arg(manifest)
        .arg("--output")
        .arg(output)
        .args(["--run-id", "r1", "--json", "--device", "cpu"])
        .args(extra)
        .env_remove("ANNEAL_RESUME")
        .env_remove("ANNEAL_RUN_ID")
        .env_remove("ANNEAL_OUTPUT");
    command
}

pub(crate) fn events(stdout: &[u8]) -> Vec<TrainerEvent> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| TrainerEvent::from_line(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// The result of the `Succeeded` event among `events`.
pub(crate) fn succeeded_result(events: &[TrainerEvent]) -> anneal_crds::finetunejob::JobResult {
    events
        .iter()
        .find_map(|e| match &e.body {
            EventBody::Phase {
                phase: JobPhase::Succeeded,
                result,
                ..
            } => result.clone(),
            _ => None,
        })
        .expect("a Succeeded event with the result")
}

pub(crate) fn expect(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs until an event `until` accepts, then signals the process and reaps it.
pub(crate) fn run_until(
    mut command: Command,
    until: impl Fn(&TrainerEvent) -> bool,
    signal: &str,
) -> Child {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    for line in BufReader::new(stdout).lines() {
        let event = TrainerEvent::from_line(&line.unwrap()).unwrap();
        if until(&event) {
            let status = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status()
                .unwrap();
            assert!(status.success());
            break;
        }
    }
    child
}

#[test]
fn killed_then_stopped_then_resumed_ends_like_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = job_dir(dir.path(), None);
    let straight = dir.path().join("straight");
    let output = trainer_train(&manifest, &straight, &[]).output().unwrap();
    expect(&output, 0);
    let result = succeeded_result(&events(&output.stdout));
    assert_eq!(result.model_id, "ft:anneal-tiny:cli:ckpt-10");
    let run = straight.join("team-a/cli/r1");
    assert_eq!(
        result.uri,
        format!("file://{}", run.join("final").display())
    );

    // SIGKILL right after the first checkpoint lands: nothing gets to clean up.
    let interrupted = dir.path().join("interrupted");
    let mut child = run_until(
        trainer_train(&manifest, &interrupted, &[]),
        |e| matches!(&e.body, EventBody::Checkpoint(c) if c.name == "ckpt-2"),
        "-KILL",
    );
    let status = child.wait().unwrap();
    assert_eq!(status.code(), None, "killed by a signal");

    // Resume, and stop it with SIGTERM (as Kubernetes does) a few steps later.
    let child = run_until(
        trainer_train(&manifest, &interrupted, &["--resume"]),
        |e| matches!(&e.body, EventBody::Progress(p) if p.step >= 5),
        "-TERM",
    );
    let stopped = child.wait_with_output().unwrap();
    expect(&stopped, 143);
    assert!(String::from_utf8_lossy(&stopped.stderr).contains("--resume"));

    let output = trainer_train(&manifest, &interrupted, &["--resume"])
        .output()
        .unwrap();
    expect(&output, 0);
    let resumed_run = interrupted.join("team-a/cli/r1");
    for file in ["adapter_model.safetensors", "adapter_config.json"] {
        assert!(
            std::fs::read(run.join("final").join(file)).unwrap()
                == std::fs::read(resumed_run.join("final").join(file)).unwrap(),
            "final/{file} differs"
        );
    }
}

#[test]
fn a_bad_dataset_line_fails_before_training_and_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let good = r#"{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Sure thing! Hello."}]}"#;
    let bad = r#"{"messages": [{"role": "user", "content": "Hi"}, {"role": "user", "content": "Again"}]}"#;
    let manifest = job_dir(dir.path(), Some(&format!("{good}\n{good}\n{bad}\n")));
    let output = trainer_train(&manifest, &dir.path().join("out"), &[])
        .output()
        .unwrap();
    expect(&output, 2);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("line 3"), "{stderr}");
    assert!(!dir.path().join("out/team-a/cli/r1/checkpoints").exists());
}

#[test]
fn a_source_local_mode_cannot_fetch_says_how_to_use_the_tiny_model() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = job_dir(dir.path(), None);
    let text = std::fs::read_to_string(&manifest).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("baseModel:"))
        .unwrap()
        .to_owned();
    let pvc = "  baseModel: {name: anneal-tiny, source: \"pvc://models/anneal-tiny\"}";
    std::fs::write(&manifest, text.replace(&line, pvc)).unwrap();
    let output = trainer_train(&manifest, &dir.path().join("out"), &[])
        .output()
        .unwrap();
    expect(&output, 2);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("spec.baseModel.source: pvc://models/anneal-tiny cannot be fetched")
            && stderr.contains("--base-model examples/models/anneal-tiny"),
        "{stderr}"
    );
}

#[test]
fn a_base_model_whose_complete_marker_lists_a_missing_file_fails_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = job_dir(dir.path(), None);
    let models = Storage::open(&format!("file://{}/models", dir.path().display())).unwrap();
    models
        .upload_dir_complete(&repo().join("examples/models/anneal-tiny"), "anneal-tiny")
        .unwrap();
    let model = dir.path().join("models/anneal-tiny");
    std::fs::remove_file(model.join("tokenizer_config.json")).unwrap();

    let output = trainer_train(
        &manifest,
        &dir.path().join("out"),
        &["--base-model", model.to_str().unwrap()],
    )
    .output()
    .unwrap();
    expect(&output, 1);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("--base-model {}", model.display()))
            && stderr.contains("incomplete")
            && stderr.contains("tokenizer_config.json"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty(), "no event: training never started");
    assert!(!dir.path().join("out/team-a/cli/r1").exists());
}

/// A DPO job folder: the manifest and `lines` (the quick start's preference pairs
/// when `None`).
fn dpo_job_dir(dir: &Path, lines: Option<String>) -> PathBuf {
    let data =
        std::fs::read_to_string(repo().join("examples/quickstart/house-style-dpo.jsonl")).unwrap();
    let lines =
        lines.unwrap_or_else(|| data.lines().take(12).collect::<Vec<_>>().join("\n") + "\n");
    std::fs::write(dir.join("pairs.jsonl"), lines).unwrap();
    let model = std::path::absolute(repo().join("examples/models/anneal-tiny")).unwrap();
    let manifest = format!(
        r#"apiVersion: anneal.dev/v1alpha1
kind: FineTuneJob
metadata: {{name: cli-dpo, namespace: team-a}}
spec:
  method: dpo
  baseModel: {{name: anneal-tiny, source: "file://{}"}}
  dataset: {{train: "file://pairs.jsonl", validationSplit: 0.25}}
  hyperparameters:
    learningRate: 0.005
    epochs: 1
    batchSize: 3
    maxTokens: 256
    lora: {{rank: 4, alpha: 8, dropout: 0.0}}
"#,
        model.display()
    );
    let path = dir.join("job.yaml");
    std::fs::write(&path, manifest).unwrap();
    path
}

#[test]
fn a_dpo_job_trains_locally_and_reports_its_rewards() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dpo_job_dir(dir.path(), None);
    let out = dir.path().join("out");
    let output = trainer_train(&manifest, &out, &[]).output().unwrap();
    expect(&output, 0);
    let events = events(&output.stdout);
    // 9 training pairs, 3 a step: 3 steps, each with the step's rewards.
    let steps: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Metrics { step, metrics, .. } if *step > 0 => Some(metrics.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(steps.len(), 3);
    assert!(steps.iter().all(|m| m.reward_accuracy.is_some()
        && m.reward_margin.is_some()
        && m.rewards_chosen.is_some()
        && m.rewards_rejected.is_some()));
    let last = steps.last().unwrap();
    assert!(last.valid_reward_accuracy.is_some() && last.valid_loss.is_some());
    // events.jsonl holds what --json printed, and final/ is a PEFT adapter.
    let run = out.join("team-a/cli-dpo/r1");
    let stored = std::fs::read_to_string(run.join("events.jsonl")).unwrap();
    assert!(stored.contains("\"rewardAccuracy\":"), "{stored}");
    assert!(run.join("final/adapter_config.json").exists());
    assert!(run.join("final/adapter_model.safetensors").exists());
}

#[test]
fn an_sft_line_in_a_dpo_job_fails_before_training_and_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let pair = r#"{"messages": [{"role": "user", "content": "Hi"}], "chosen": {"role": "assistant", "content": "Good question! Hello."}, "rejected": {"role": "assistant", "content": "Hello."}}"#;
    let sft = r#"{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]}"#;
    let manifest = dpo_job_dir(dir.path(), Some(format!("{pair}\n{pair}\n{sft}\n")));
    let output = trainer_train(&manifest, &dir.path().join("out"), &[])
        .output()
        .unwrap();
    expect(&output, 2);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("line 3"), "{stderr}");
    assert!(
        !dir.path()
            .join("out/team-a/cli-dpo/r1/checkpoints")
            .exists()
    );
}

/// The memory plan of the job in `manifest` on a CPU with `memory`.
fn plan_inputs(manifest: &Path, memory: ByteSize) -> PlanInputs {
    let job = parse_finetunejob(&std::fs::read_to_string(manifest).unwrap()).unwrap();
    let config = repo().join("examples/models/anneal-tiny/config.json");
    let shape = ModelShape::from_config_json(&std::fs::read_to_string(config).unwrap()).unwrap();
    PlanInputs::for_job(&job.spec, shape, DeviceMemory::cpu(memory))
}

#[test]
fn without_gradient_accumulation_the_plan_picks_the_micro_batch_or_refuses_the_job() {
    let dir = tempfile::tempdir().unwrap();
    // A DPO job with batchSize 3 and no gradientAccumulation, on a CPU that holds 2 pairs.
    let manifest = dpo_job_dir(dir.path(), None);
    let memory = ByteSize(peak_bytes(&plan_inputs(&manifest, ByteSize(0)), 2));
    let planned = plan(&plan_inputs(&manifest, memory)).unwrap();
    assert_eq!(planned.micro_batch, 2);
    let out = dir.path().join("out");
    let cpu_memory = format!("{}B", memory.bytes());
    let output = trainer_train(&manifest, &out, &["--cpu-memory", &cpu_memory])
        .output()
        .unwrap();
    expect(&output, 0);
    let said = events(&output.stdout)
        .into_iter()
        .find_map(|e| match e.body {
            EventBody::Log { message, .. } if message.starts_with("micro-batch") => Some(message),
            _ => None,
        });
    assert_eq!(
        said,
        Some(format!(
            "micro-batch 2 x 2 accumulation (plan: {} of {memory} CPU, memory from --cpu-memory)",
            planned.peak
        ))
    );
    let state = std::fs::read_to_string(
        out.join("team-a/cli-dpo/r1/checkpoints/ckpt-3/trainer_state.json"),
    )
    .unwrap();
    let state = TrainerState::from_json(&state).unwrap();
    assert_eq!(state.data.micro_batch_size as u64, planned.micro_batch);
    assert_eq!(state.data.gradient_accumulation, 2);

    // Not one pair fits (the margin alone is 64 MiB): refused before the model loads,
    // with the plan's figures.
    let too_small = plan_inputs(&manifest, ByteSize(64 << 20));
    let does_not_fit = plan(&too_small).unwrap_err();
    let output = trainer_train(
        &manifest,
        &dir.path().join("refused"),
        &["--cpu-memory", "64MiB"],
    )
    .output()
    .unwrap();
    expect(&output, 2);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.trim_end(),
        format!("trainer train: does not fit: {does_not_fit} (memory from --cpu-memory)")
    );
    assert!(
        stderr.contains("at micro-batch 1 with maxTokens 256")
            && stderr.contains("more than the 64.0 MiB of a CPU"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty(), "no event: training never started");
}

#[test]
fn names_and_run_ids_that_are_not_folder_names_exit_2_before_touching_storage() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = job_dir(dir.path(), None);
    let text = std::fs::read_to_string(&manifest).unwrap();
    let out = dir.path().join("out");
    for (name, namespace, field) in [
        ("../../x", "team-a", "metadata.name"),
        ("a/b", "team-a", "metadata.name"),
        ("cli", "../up", "metadata.namespace"),
    ] {
        let bad = dir.path().join("bad.yaml");
        std::fs::write(
            &bad,
            text.replace(
                "metadata: {name: cli, namespace: team-a}",
                &format!("metadata: {{name: {name:?}, namespace: {namespace:?}}}"),
            ),
        )
        .unwrap();
        let output = trainer_train(&bad, &out, &[]).output().unwrap();
        expect(&output, 2);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(&format!("{field}: ")) && stderr.contains("must be a Kubernetes name"),
            "{stderr}"
        );
    }
    // The run id a pod gets from its environment, with no --run-id to override it.
    let args: Vec<String> = trainer_train(&manifest, &out, &[])
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .filter(|a| a != "--run-id" && a != "r1")
        .collect();
    let output = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(&args)
        .env("ANNEAL_RUN_ID", "../escape")
        .output()
        .unwrap();
    expect(&output, 2);
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("\"../escape\" is not a run id"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!out.exists(), "nothing was written anywhere");
    assert!(!dir.path().join("escape").exists());
}

#[test]
fn an_output_that_cannot_be_written_fails_before_the_model_loads() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = job_dir(dir.path(), None);
    // A file where the output folder should be: nothing can be written below it.
    let out = dir.path().join("out");
    std::fs::write(&out, "not a folder").unwrap();
    let output = trainer_train(&manifest, &out, &[]).output().unwrap();
    expect(&output, 1);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stderr.lines().last().unwrap_or_default();
    assert!(
        line.starts_with(&format!(
            "trainer train: output file://{}/team-a/cli/r1 is not writable: ",
            out.display()
        )),
        "{stderr}"
    );
    assert!(output.stdout.is_empty(), "no event: training never started");
}

#[test]
fn early_stopping_ends_the_run_on_its_best_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = job_dir(dir.path(), None);
    // No evaluation can beat the first by more than 5 nats: the second ends the run,
    // and the better of the two (the lower loss, ckpt-4) is its result.
    let text = std::fs::read_to_string(&manifest).unwrap().replace(
        "checkpoints: {everyEpoch: true, everySteps: 2}",
        "checkpoints: {everyEpoch: true, everySteps: 2, earlyStopping: {patience: 1, minDelta: 5.0}}",
    );
    std::fs::write(&manifest, text).unwrap();
    let out = dir.path().join("out");
    let output = trainer_train(&manifest, &out, &[]).output().unwrap();
    expect(&output, 0);
    let events = events(&output.stdout);
    let result = succeeded_result(&events);
    let run = out.join("team-a/cli/r1");
    assert_eq!(result.model_id, "ft:anneal-tiny:cli:ckpt-4");
    assert_eq!(
        result.uri,
        format!("file://{}", run.join("checkpoints/ckpt-4").display())
    );
    let why = result.stopped_early.expect("the reason it stopped");
    assert!(
        why.starts_with("stopped early at step 4: the validation loss has not improved on ")
            && why.ends_with(
                "(ckpt-2) by more than 5 for 1 evaluations (earlyStopping.patience 1); the best checkpoint is ckpt-4"
            ),
        "{why}"
    );
    // Steps 5 to 10 never ran; the best checkpoint is whole and no final/ was written.
    assert!(
        !events
            .iter()
            .any(|e| matches!(&e.body, EventBody::Progress(p) if p.step > 4))
    );
    assert!(
        run.join("checkpoints/ckpt-4/adapter_model.safetensors")
            .exists()
    );
    assert!(run.join("loss.svg").exists());
    assert!(!run.join("final").exists());
}
