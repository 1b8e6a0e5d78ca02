//! Image runs through the library, on the bundled tiny FLUX model and the image quick
//! start's pictures: a stopped and resumed run ends bit for bit where an
//! uninterrupted one does (LoRA dropout on, so the random state matters), each
//! checkpoint holds what diffusers, serving and a resume need, and a folder that
//! breaks a rule fails the run before the model loads, naming the file.

use std::path::{Path, PathBuf};

use crate::support::Recorder;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use anneal_crds::FineTuneJob;
use anneal_crds::events::{EventBody, TrainerEvent};
use anneal_crds::manifest::parse_finetunejob;
use anneal_crds::storage::Storage;
use anneal_image::flux::lora::{FluxLora, LORA_FILE};
use anneal_train::TrainError;
use anneal_train::image::run::{ImageRunInputs, SampleImage, TrainingImages, run_image_training};
use anneal_train::run::{BaseModel, RunIdentity, RunLocation, RunOutcome, TrainingSettings};
use anneal_train::state::TrainerState;
use anneal_train::train_backend::CpuTrainBackend;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Five pictures, each twice an epoch in batches of 2: 5 steps an epoch, 10 in all,
/// with LoRA dropout and the MLP layers adapted too.
fn small_image_job() -> FineTuneJob {
    let yaml = r#"
apiVersion: anneal.dev/v1alpha1
kind: FineTuneJob
metadata: {name: ball}
spec:
  task: text-to-image
  baseModel: {name: anneal-flux-tiny, source: "file://model"}
  dataset: {images: "file://sks-ball/"}
  hyperparameters:
    learningRate: 0.002
    epochs: 2
    batchSize: 2
    repeats: 2
    seed: 5
    resolution: 64
    triggerWord: sks
    lora: {rank: 4, alpha: 8, dropout: 0.1, includeMlp: true}
  checkpoints:
    everyEpoch: true
    everySteps: 3
    samplePrompts:
      - {prompt: sks, seed: 1, steps: 4}
"#;
    parse_finetunejob(yaml).unwrap()
}

fn inputs(
    job: &FineTuneJob,
    images: &Path,
    output: &Path,
    work: &Path,
    resume: bool,
) -> Result<ImageRunInputs, TrainError> {
    let settings = TrainingSettings::of_job(job);
    let model = repo().join("examples/models/anneal-flux-tiny");
    let images = TrainingImages::read(
        "file://sks-ball/",
        images,
        &settings.hyperparameters,
        &model,
    )?;
    Ok(ImageRunInputs {
        job: RunIdentity {
            job_name: job.metadata.name.clone().unwrap(),
            run_id: "run-1".into(),
        },
        base_model: BaseModel {
            name: job.spec.base_model.name.clone(),
            dir: model,
            adapter: None,
            started_from: None,
        },
        settings,
        images,
        location: RunLocation {
            output: Storage::open(&format!("file://{}", output.display())).unwrap(),
            work_dir: work.to_path_buf(),
        },
        resume,
        stop: Arc::new(AtomicBool::new(false)),
        deadline: None,
    })
}

fn pictures() -> PathBuf {
    repo().join("examples/quickstart/sks-ball")
}

fn train(
    inputs: ImageRunInputs,
    stop_at: Option<u64>,
) -> (Result<RunOutcome, TrainError>, Vec<TrainerEvent>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let recorder = Recorder {
        events: events.clone(),
        stop: stop_at.map(|at| (at, inputs.stop.clone())),
    };
    let outcome = run_image_training::<CpuTrainBackend>(
        inputs,
        vec![Box::new(recorder)],
        &Default::default(),
    );
    let events = events.lock().unwrap().clone();
    (outcome, events)
}

fn read(path: PathBuf) -> Vec<u8> {
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn a_stopped_and_resumed_image_run_ends_with_the_same_adapter_bit_for_bit() {
    // burn's CPU generator is one per process: dropout must not share it with another test.
    let _generator = crate::support::generator_turn();
    let dir = tempfile::tempdir().unwrap();
    let job = small_image_job();
    let a = dir.path().join("a");
    let (straight, events) = train(
        inputs(&job, &pictures(), &a, &dir.path().join("wa"), false).unwrap(),
        None,
    );
    let RunOutcome::Finished { result, state } = straight.unwrap() else {
        panic!("the run did not finish")
    };
    assert_eq!(state.step, 10);
    assert_eq!(result.model_id, "ft:anneal-flux-tiny:ball:ckpt-10");
    let names: Vec<&str> = state.checkpoints.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["ckpt-3", "ckpt-5", "ckpt-6", "ckpt-9", "ckpt-10"]);
    let losses: Vec<f64> = state.log_history.iter().map(|e| e.train_loss).collect();
    assert!(
        losses.iter().all(|l| l.is_finite() && *l > 0.0),
        "{losses:?}"
    );
    let metrics = events
        .iter()
        .filter(|e| matches!(e.body, EventBody::Metrics { .. }))
        .count();
    assert_eq!(metrics, 10, "one metrics event a step");

    let b = dir.path().join("b");
    let (stopped, _) = train(
        inputs(&job, &pictures(), &b, &dir.path().join("wb"), false).unwrap(),
        Some(4),
    );
    assert_eq!(
        stopped.unwrap(),
        RunOutcome::Stopped {
            checkpoint: "ckpt-4".into(),
            step: 4
        }
    );
    let (resumed, resumed_events) = train(
        inputs(&job, &pictures(), &b, &dir.path().join("wc"), true).unwrap(),
        None,
    );
    let RunOutcome::Finished {
        state: resumed_state,
        ..
    } = resumed.unwrap()
    else {
        panic!("the resumed run did not finish")
    };
    assert!(resumed_events.iter().any(|e| matches!(
        &e.body,
        EventBody::Phase { message: Some(m), .. } if m.starts_with("resumed from ckpt-4 at step 4/10")
    )));
    let resumed_losses: Vec<f64> = resumed_state
        .log_history
        .iter()
        .map(|e| e.train_loss)
        .collect();
    assert_eq!(resumed_losses, losses);
    for file in [LORA_FILE, "optimizer.safetensors", "sample-0.png"] {
        assert!(
            read(a.join("final").join(file)) == read(b.join("final").join(file)),
            "final/{file} differs between the straight and the resumed run"
        );
    }
}

#[test]
fn an_image_checkpoint_holds_the_adapter_samples_and_state_a_resume_needs() {
    let _generator = crate::support::generator_turn();
    let dir = tempfile::tempdir().unwrap();
    let mut job = small_image_job();
    job.spec.hyperparameters.epochs = Some(1);
    let out = dir.path().join("out");
    let (outcome, _) = train(
        inputs(&job, &pictures(), &out, &dir.path().join("w"), false).unwrap(),
        None,
    );
    let RunOutcome::Finished { state, .. } = outcome.unwrap() else {
        panic!("the run did not finish")
    };
    let run = out;
    let last = state.checkpoints.last().unwrap();
    assert_eq!(last.name, "ckpt-5");
    let folder = run.join("checkpoints/ckpt-5");
    assert_eq!(
        last.samples,
        [format!("file://{}", folder.join("sample-0.png").display())]
    );
    let sample = image::open(folder.join("sample-0.png")).unwrap();
    assert_eq!((sample.width(), sample.height()), (64, 64));
    let listed: Vec<SampleImage> =
        serde_json::from_slice(&read(folder.join("samples.json"))).unwrap();
    assert_eq!(
        listed,
        [SampleImage {
            prompt: "sks".into(),
            seed: 1,
            steps: 4,
            guidance: 3.5,
            file: "sample-0.png".into(),
        }]
    );
    // The adapter as diffusers and serving read it: every attention and MLP layer of
    // the 2 double and 4 single blocks, at the job's scale.
    let lora = FluxLora::read(&folder).unwrap();
    assert_eq!(lora.modules().count(), 2 * 12 + 4 * 5);
    let saved = TrainerState::from_json(
        &String::from_utf8(read(folder.join("trainer_state.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!((saved.step, saved.data.steps_per_epoch), (5, 5));
    assert!(folder.join("COMPLETE").is_file());
    assert!(run.join("samples/base/sample-0.png").is_file());
    assert!(run.join("samples.png").is_file() && run.join("loss.svg").is_file());
}

#[test]
fn a_folder_that_breaks_a_rule_fails_the_run_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir_all(&images).unwrap();
    for entry in std::fs::read_dir(pictures()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, images.join(path.file_name().unwrap())).unwrap();
    }
    std::fs::write(images.join("ball-6.png"), b"not a picture").unwrap();
    let job = small_image_job();
    let out = dir.path().join("out");
    let error = inputs(&job, &images, &out, &dir.path().join("w"), false)
        .err()
        .expect("refused")
        .to_string();
    assert_eq!(
        error,
        "dataset.images: ball-6.png: is not a JPEG, PNG or WebP image"
    );
    assert!(!out.exists(), "nothing was written");
}
