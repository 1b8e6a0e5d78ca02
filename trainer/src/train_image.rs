//! `trainer train` for an image job (`task: text-to-image`): the image folder made
//! local (`file://` relative to the manifest, or downloaded from `s3://`), the run on
//! the chosen backend, and the closing lines: the adapter, the contact sheet, and
//! how to draw with the adapter and serve it.

use std::path::Path;

use anneal_crds::FineTuneJob;
use anneal_crds::finetunejob::JobResult;
use anneal_image::pipeline::PipelineDefaults;
use anneal_sources::{FolderSource, make_local};
use anneal_train::checkpoint::SAMPLES_FILE;
use anneal_train::event_log::EventSink;
use anneal_train::image::run::{
    ImageRunInputs, SampleImage, TrainingImages, default_resolution, run_image_training,
};
use anneal_train::run::{RunOutcome, TrainingSettings};
use anneal_train::train_backend::TrainBackendJob;
use burn::tensor::backend::AutodiffBackend;

use crate::next_steps::{command_line, trainer_command};
use crate::train_command::{Failure, TrainArgs, check_writable, prepare_basics, record_job};

/// The image run's inputs: the basics and the image folder made local.
pub(crate) fn prepare_image_run(
    args: &TrainArgs,
    job: &FineTuneJob,
    manifest_dir: &Path,
    work_dir: &Path,
) -> Result<ImageRunInputs, Failure> {
    let basics = prepare_basics(args, job, manifest_dir, work_dir, None)?;
    const WHAT: &str = "spec.dataset.images";
    // Validation refused an image job without dataset.images.
    let uri = job.spec.dataset.images.clone().unwrap_or_default();
    let source = FolderSource::from_manifest(&uri, manifest_dir, WHAT)?;
    let dir = make_local(&source, &work_dir.join("images"), WHAT)?;
    let settings = TrainingSettings::of_job(job);
    let h = &settings.hyperparameters;
    let images = TrainingImages::read(&uri, &dir, h, &basics.base_model.dir)?;
    // After the folder is checked (a run that cannot start leaves no folder), before
    // the model loads.
    check_writable(&basics.location.output)?;
    record_job(args, job, manifest_dir, &basics.location.output)?;
    Ok(ImageRunInputs {
        job: basics.job,
        base_model: basics.base_model,
        settings,
        images,
        location: basics.location,
        resume: basics.resume,
        stop: basics.stop,
        deadline: basics.deadline,
    })
}

pub(crate) struct ImageTrainJob {
    pub inputs: ImageRunInputs,
    pub sinks: Vec<Box<dyn EventSink>>,
}

impl TrainBackendJob for ImageTrainJob {
    type Output = Result<RunOutcome, Failure>;

    fn run<B: AutodiffBackend>(self, devices: Vec<B::Device>) -> Self::Output {
        Ok(run_image_training::<B>(
            self.inputs,
            self.sinks,
            &devices[0],
        )?)
    }
}

/// The closing lines of a finished local image run.
pub(crate) fn print_image_result(job: &FineTuneJob, base_model_dir: &Path, result: &JobResult) {
    println!("adapter:    {}", result.uri);
    println!("model id:   {}", result.model_id);
    let run = result.uri.trim_end_matches("/final");
    println!("loss chart: {run}/loss.svg");
    println!("samples:    {run}/samples.png (the base model's first, then one row per epoch)");
    let Some(adapter) = result.uri.strip_prefix("file://") else {
        return;
    };
    let base = std::fs::canonicalize(base_model_dir)
        .unwrap_or_else(|_| base_model_dir.to_path_buf())
        .display()
        .to_string();
    let trainer = trainer_command();
    let out = format!("{run}/tried").replace("file://", "");
    let mut generate = vec![
        "generate-image".to_owned(),
        "--model".to_owned(),
        base.clone(),
        "--adapter".to_owned(),
        adapter.to_owned(),
    ];
    // The first sample's prompt and settings: the command draws the image the run
    // drew last for it (final/sample-0.png).
    generate.extend(first_sample_args(job, base_model_dir, Path::new(adapter)));
    generate.extend(["--out".to_owned(), out]);
    let try_it = command_line(&trainer, generate.iter().map(String::as_str));
    let named = format!("{}={adapter}", result.model_id);
    let serve_it = command_line(
        &trainer,
        [
            "serve",
            "--model",
            &base,
            "--adapter",
            &named,
            "--port",
            "8000",
        ],
    );
    println!("try it:     {try_it}");
    println!("serve it:   {serve_it}");
}

/// `--prompt`, `--size`, `--seed`, `--steps` and `--guidance` of the first sample the
/// run drew (from `final/samples.json`), or the trigger word at the pipeline's size.
fn first_sample_args(job: &FineTuneJob, base_model_dir: &Path, adapter: &Path) -> Vec<String> {
    let defaults = PipelineDefaults::read(base_model_dir).unwrap_or_default();
    let side = job
        .spec
        .hyperparameters
        .resolution
        .unwrap_or_else(|| default_resolution(&defaults));
    let size = format!("{side}x{side}");
    let first: Option<SampleImage> = std::fs::read_to_string(adapter.join(SAMPLES_FILE))
        .ok()
        .and_then(|text| serde_json::from_str::<Vec<SampleImage>>(&text).ok())
        .and_then(|samples| samples.into_iter().next());
    match first {
        Some(sample) => vec![
            "--prompt".into(),
            sample.prompt,
            "--size".into(),
            size,
            "--seed".into(),
            sample.seed.to_string(),
            "--steps".into(),
            sample.steps.to_string(),
            "--guidance".into(),
            sample.guidance.to_string(),
        ],
        None => {
            let word = job.spec.hyperparameters.trigger_word.as_deref();
            vec![
                "--prompt".into(),
                word.unwrap_or("a photo").to_owned(),
                "--size".into(),
                size,
            ]
        }
    }
}
