//! `trainer train JOB.yaml`: runs the FineTuneJob a user would `kubectl apply`,
//! here. `file://` sources resolve relative to the manifest; `s3://` ones are
//! fetched with the credentials in the environment (as a pod gets them from its
//! Secret). Output goes to `{output}/{namespace}/{job}/{run id}/`.
//!
//! Exit codes: 0 trained; 1 a failure that may pass on retry (storage, I/O);
//! 2 a failure that will not (manifest, dataset, model, incompatible resume);
//! 143 stopped by SIGTERM or Ctrl-C after a checkpoint (`--resume` continues). A run
//! past its deadline (`--deadline`, `spec.activeDeadlineSeconds`) checkpoints and
//! exits 2 with reason `DeadlineExceeded`.
//!
//! On CUDA it first checks the GPU and points the kernel caches at `--kernel-cache`
//! (`gpu_start`): a GPU that fails exits 1 before the manifest is read (2 when this
//! build has no CUDA).
//!
//! In a pod every event is also posted to the operator (`--report-url`); how that
//! went never changes the exit code.
//!
//! The micro-batch is the job's when it sets `gradientAccumulation`, else the memory
//! plan's for the device (`--gpu-memory`, which a pod gets from the operator, or what
//! the GPU reports; `--cpu-memory` or MemAvailable on the CPU): a job that does not fit
//! fails with exit code 2 before its model is loaded.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, SystemTime};

use anneal_crds::FineTuneJob;
use anneal_crds::finetunejob::{JobResult, TrainingType};
use anneal_crds::manifest::parse_finetunejob;
use anneal_crds::memory_plan::ByteSize;
use burn::tensor::backend::AutodiffBackend;

use crate::device_arg::DeviceArg;
use crate::gpu_start::{GpuStartArgs, GpuStartError, prepare};
use crate::manifest_file::{ManifestFileError, read_manifest_file};
use crate::memory_arg::memory_size;
use crate::next_steps::{Trained, console_command, next_steps, resume_command};
use crate::train_evaluation::{TrainEvaluationError, prepare_checkpoint_evaluation};
use crate::train_image::{ImageTrainJob, prepare_image_run, print_image_result};
use crate::train_progress::{JsonLines, ProgressDisplay};
use anneal_crds::storage::{Storage, StorageError};
use anneal_crds::trainer_failure::TrainerFailureReason;
use anneal_model::backend::BackendError;
use anneal_sources::local_paths::resolve_file_uri;
use anneal_sources::{FolderSource, SourceError, fetch_file, make_local};

use crate::mlflow_tracking::{self, TrackedRun};
use crate::starting_point::{
    self, StartingPoint, StartingPointError, StartsFromArg, starts_from_arg,
};
use anneal_train::TrainError;
use anneal_train::device_memory::GivenMemory;
use anneal_train::event_log::EventSink;
use anneal_train::event_report::{ReportConfig, Reporter};
use anneal_train::run::{
    BaseModel, Deadline, MixFile, RunData, RunIdentity, RunInputs, RunLocation, RunOutcome,
    TrainingSettings, run_training,
};
use anneal_train::train_backend::{TrainBackendJob, run_training_on};

#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// A FineTuneJob manifest (.yaml).
    pub manifest: PathBuf,
    /// Where runs are stored (file:// or s3://). Default: spec.output.uri, else
    /// ./anneal-runs.
    #[arg(long, env = "ANNEAL_OUTPUT")]
    pub output: Option<String>,
    /// The run's id (a pod uses its FineTuneJob's uid). Default: a new one, or with
    /// --resume the newest run of this job.
    #[arg(long, env = "ANNEAL_RUN_ID", value_parser = run_id)]
    pub run_id: Option<String>,
    /// Continue from the run's newest complete checkpoint (from the start when it has
    /// none). Always on in a Kubernetes pod, where a restarted pod must not start over.
    #[arg(long, env = "ANNEAL_RESUME")]
    pub resume: bool,
    /// Train this local model folder instead of spec.baseModel.source.
    #[arg(long)]
    pub base_model: Option<PathBuf>,
    /// The checkpoint spec.baseModel.fineTuneJob resolved to, as JOB/CHECKPOINT=URI
    /// (the operator sets it in a pod, with the base model in the manifest). Default:
    /// found in that job's newest run under the runs folder.
    #[arg(long, env = "ANNEAL_STARTS_FROM", value_parser = starts_from_arg)]
    pub starts_from: Option<StartsFromArg>,
    /// An MLflow tracking server to log the run to when the job sets no
    /// spec.tracking (the operator passes its --mlflow-tracking-uri).
    #[arg(long, env = "ANNEAL_MLFLOW_TRACKING_URI")]
    pub mlflow_tracking_uri: Option<String>,
    /// Print every event as a JSON line instead of the progress bar.
    #[arg(long)]
    pub json: bool,
    /// Where to compute.
    #[arg(long, value_enum, default_value_t)]
    pub device: DeviceArg,
    /// Memory of the GPU (CUDA), as `trainer plan` takes it: the memory plan runs the
    /// largest micro-batch that fits, unless the job sets gradientAccumulation. Default:
    /// what the GPU reports (a trainer pod gets the operator's gpuMemory).
    #[arg(long, env = "ANNEAL_GPU_MEMORY", value_parser = memory_size)]
    pub gpu_memory: Option<ByteSize>,
    /// RAM for the CPU backend, as --gpu-memory is for a GPU. Default: the host's
    /// MemAvailable.
    #[arg(long, env = "ANNEAL_CPU_MEMORY", value_parser = memory_size)]
    pub cpu_memory: Option<ByteSize>,
    /// Local scratch space (fetched model, staging). Default: a temporary folder.
    #[arg(long, env = "ANNEAL_WORK_DIR")]
    pub work_dir: Option<PathBuf>,
    /// Also post every event to this URL: the operator's report endpoint for the
    /// job, set in a pod. Without it nothing is posted.
    #[arg(long, env = "ANNEAL_REPORT_URL")]
    pub report_url: Option<String>,
    /// The file holding the bearer token for --report-url (the mounted Secret).
    #[arg(long, env = "ANNEAL_REPORT_TOKEN_FILE")]
    pub report_token_file: Option<PathBuf>,
    /// At the end, how long to wait for events not yet delivered to --report-url.
    #[arg(long, env = "ANNEAL_REPORT_FLUSH_SECONDS", default_value_t = 10)]
    pub report_flush_seconds: u64,
    /// On failure, also write the error (with its reason, such as `Diverged: ...`) to
    /// this file: a pod's termination message, `/dev/termination-log`, where the
    /// operator reads why its trainer stopped.
    #[arg(long, env = "ANNEAL_TERMINATION_LOG")]
    pub termination_log: Option<PathBuf>,
    /// When the job's time is up (RFC 3339, e.g. `2026-12-05T18:00:00Z`): the operator
    /// sets it from `spec.activeDeadlineSeconds` and the job's start. Default: that
    /// many seconds from now, when the job sets it.
    #[arg(long, env = "ANNEAL_DEADLINE", value_parser = deadline_time)]
    pub deadline: Option<anneal_crds::jiff::Timestamp>,
    #[command(flatten)]
    pub gpu_start: GpuStartArgs,
}

fn deadline_time(text: &str) -> Result<anneal_crds::jiff::Timestamp, String> {
    text.parse()
        .map_err(|e| format!("{text:?} is not an RFC 3339 time such as 2026-12-05T18:00:00Z: {e}"))
}

/// The run's deadline: `--deadline`, else `spec.activeDeadlineSeconds` from now.
fn deadline_of(args: &TrainArgs, job: &FineTuneJob) -> Option<Deadline> {
    let seconds = job.spec.active_deadline_seconds;
    match (args.deadline, seconds) {
        (Some(at), _) => Some(Deadline {
            at: SystemTime::from(at),
            seconds: seconds.unwrap_or_else(|| {
                let left = at
                    .duration_since(anneal_crds::jiff::Timestamp::now())
                    .as_secs();
                u64::try_from(left).unwrap_or(0)
            }),
        }),
        (None, Some(seconds)) => Some(Deadline {
            at: SystemTime::now() + Duration::from_secs(seconds),
            seconds,
        }),
        (None, None) => None,
    }
}

/// Why `trainer train` failed; [`Failure::exit_code`] says whether a retry may pass.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    #[error(transparent)]
    Manifest(#[from] ManifestFileError),
    #[error(
        "spec.dataset.configMap: a ConfigMap dataset is mounted by the operator in a cluster; locally, name the file in spec.dataset.train"
    )]
    ConfigMapDataset,
    #[error("output: {0}")]
    Output(#[source] StorageError),
    /// Found before the model is loaded, not at the first checkpoint hours later.
    #[error("output {uri} is not writable: {source}")]
    OutputNotWritable {
        uri: String,
        #[source]
        source: Box<StorageError>,
    },
    #[error("--work-dir {}: {source}", path.display())]
    WorkDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("creating a work folder: {0}")]
    TempWorkDir(#[source] std::io::Error),
    #[error(transparent)]
    GpuStart(#[from] GpuStartError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Train(#[from] TrainError),
    #[error(transparent)]
    CheckpointEvaluation(#[from] TrainEvaluationError),
    #[error(transparent)]
    StartingPoint(#[from] StartingPointError),
    #[error("{source}{}", local_hint(source))]
    Source {
        #[from]
        source: SourceError,
    },
}

/// What to add to a source error: how to try a job whose model cannot be fetched here.
fn local_hint(error: &SourceError) -> &'static str {
    match error {
        SourceError::NotFetchable { .. } => {
            "; to try the job locally on the bundled tiny model, add --base-model examples/models/anneal-tiny"
        }
        SourceError::Hub { source, .. } if source.may_pass_on_retry() => {
            "; to try the job without downloading its model, add --base-model examples/models/anneal-tiny (the bundled tiny model)"
        }
        _ => "",
    }
}

impl Failure {
    /// The reason the FineTuneJob's `Failed` condition gives, when the trainer knows it.
    fn reason(&self) -> Option<TrainerFailureReason> {
        match self {
            Failure::Train(TrainError::Diverged(_)) => Some(TrainerFailureReason::Diverged),
            Failure::Train(TrainError::OutOfMemory(_)) => Some(TrainerFailureReason::OutOfMemory),
            Failure::Train(TrainError::DeadlineExceeded(_)) => {
                Some(TrainerFailureReason::DeadlineExceeded)
            }
            _ => None,
        }
    }

    /// 1 for a failure that may pass on retry (storage, I/O), 2 for one that will not.
    fn exit_code(&self) -> u8 {
        match self {
            // A source with nothing under it is a wrong URI: no retry will find it.
            Failure::Train(TrainError::Storage(StorageError::EmptyFolder { .. })) => 2,
            Failure::Train(
                TrainError::Storage(_) | TrainError::Io { .. } | TrainError::Chart(_),
            ) => 1,
            Failure::Source { source } if source.may_pass_on_retry() => 1,
            Failure::CheckpointEvaluation(TrainEvaluationError::Source(source))
                if source.may_pass_on_retry() =>
            {
                1
            }
            // Storage that refused a write may be a passing outage, or a bucket policy
            // fixed while the pod waits for its retry.
            Failure::OutputNotWritable { .. } => 1,
            Failure::GpuStart(error) if error.may_pass_on_retry() => 1,
            _ => 2,
        }
    }
}

pub fn run(args: TrainArgs) -> ExitCode {
    let termination_log = args.termination_log.clone();
    match train(args) {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("trainer train: {failure}");
            if let Some(path) = termination_log {
                write_termination_log(&path, &failure);
            }
            ExitCode::from(failure.exit_code())
        }
    }
}

/// Kubernetes keeps at most 4,096 bytes of a termination message.
const TERMINATION_MESSAGE_MAX: usize = 4096;

/// Writes `failure` to `path`, prefixed with its reason when it has one the operator
/// knows (`Diverged: ...`). A failure to write is a warning: the exit code and the
/// log line still say what happened.
fn write_termination_log(path: &Path, failure: &Failure) {
    let message = failure.to_string();
    let mut text = match failure.reason() {
        Some(reason) => reason.termination_message(&message),
        None => message,
    };
    if text.len() > TERMINATION_MESSAGE_MAX {
        let mut end = TERMINATION_MESSAGE_MAX;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    if let Err(error) = std::fs::write(path, text) {
        eprintln!(
            "warning: cannot write the termination message to {}: {error}",
            path.display()
        );
    }
}

fn train(args: TrainArgs) -> Result<ExitCode, Failure> {
    prepare("train", args.device.into(), &args.gpu_start)?;
    let (job, manifest_dir) = read_manifest(&args.manifest)?;
    let work = WorkDir::new(args.work_dir.clone())?;
    let (job, starting_point) = resolve_starting_point(&args, &job, &manifest_dir, work.path())?;
    let (mut sinks, reporter) = event_sinks(&args, &job);
    let mut tracking = None;
    let mut track = |run_id: &str, output: &Storage, sinks: &mut Vec<Box<dyn EventSink>>| {
        let default_uri = args.mlflow_tracking_uri.as_deref();
        if let Some(run) = TrackedRun::of(&job, run_id, output.clone(), default_uri) {
            let (sink, finish) = mlflow_tracking::start(run);
            sinks.push(sink);
            tracking = Some(finish);
        }
    };
    let (outcome, base_model_dir) = if job.spec.task.is_image() {
        let inputs = prepare_image_run(&args, &job, &manifest_dir, work.path())?;
        track(&inputs.job.run_id, &inputs.location.output, &mut sinks);
        let base_model_dir = inputs.base_model.dir.clone();
        let run = ImageTrainJob { inputs, sinks };
        (run_training_on(args.device.into(), 1, run), base_model_dir)
    } else {
        let inputs = prepare_run(&args, &job, &manifest_dir, work.path(), starting_point)?;
        track(&inputs.job.run_id, &inputs.location.output, &mut sinks);
        let base_model_dir = inputs.base_model.dir.clone();
        // With CUDA, the GPUs the job asks for (a pod sees exactly those): a model too
        // large for one has its layers placed across them.
        let gpus = job.spec.resources.gpus.max(1);
        let run = TrainJob { inputs, sinks };
        (
            run_training_on(args.device.into(), gpus, run),
            base_model_dir,
        )
    };
    // Whatever the outcome, the operator should hear the last events (the final
    // phase above all) before the pod's exit code speaks.
    if let Some(reporter) = reporter {
        reporter.finish(Duration::from_secs(args.report_flush_seconds));
    }
    if let Some(tracking) = tracking {
        tracking.wait(Duration::from_secs(args.report_flush_seconds));
    }
    match outcome?? {
        RunOutcome::Finished { result, .. } => {
            if args.json {
            } else if job.spec.task.is_image() {
                print_image_result(&job, &base_model_dir, &result);
            } else {
                print_result(&job, &base_model_dir, &result);
            }
            Ok(ExitCode::SUCCESS)
        }
        RunOutcome::Stopped { checkpoint, step } => {
            eprintln!(
                "trainer train: stopped at step {step} ({checkpoint}); to continue: {}",
                resume_command(
                    &args.manifest,
                    args.output.as_deref(),
                    args.base_model.as_ref()
                )
            );
            Ok(ExitCode::from(143))
        }
    }
}

/// The job in the manifest, and the folder its `file://` URIs are relative to.
fn read_manifest(manifest: &Path) -> Result<(FineTuneJob, PathBuf), Failure> {
    Ok(read_manifest_file(manifest, parse_finetunejob)?)
}

/// What every run needs, chat or image: which run it is and where it writes (a new
/// run, or with `--resume` the newest one), the base model made local, and the stop
/// flag.
pub(crate) struct RunBasics {
    pub job: RunIdentity,
    pub base_model: BaseModel,
    pub location: RunLocation,
    pub resume: bool,
    pub stop: Arc<AtomicBool>,
    pub deadline: Option<Deadline>,
}

pub(crate) fn prepare_basics(
    args: &TrainArgs,
    job: &FineTuneJob,
    manifest_dir: &Path,
    work_dir: &Path,
    starting_point: Option<StartingPoint>,
) -> Result<RunBasics, Failure> {
    let job_name = job.metadata.name.clone().unwrap_or_default();
    let namespace = job
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".to_owned());
    let runs = runs_location(args, job, manifest_dir, &namespace, &job_name)?;
    let resume = args.resume || std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
    let run_id = match (&args.run_id, resume) {
        (Some(id), _) => id.clone(),
        (None, true) => newest_run(&runs)?.unwrap_or_else(new_run_id),
        (None, false) => new_run_id(),
    };
    let output = runs.child(&run_id);
    let model_dir = fetch_base_model(args, job, manifest_dir, work_dir)?;
    Ok(RunBasics {
        job: RunIdentity { job_name, run_id },
        base_model: BaseModel {
            // Trained on another model than the manifest names: the adapter and model id must say so.
            name: match &args.base_model {
                Some(dir) => std::path::absolute(dir)
                    .ok()
                    .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
                    .unwrap_or_else(|| dir.display().to_string()),
                None => job.spec.base_model.name.clone(),
            },
            dir: model_dir,
            adapter: starting_point.as_ref().and_then(|p| p.adapter.clone()),
            started_from: starting_point.map(|p| p.started_from),
        },
        location: RunLocation {
            output,
            work_dir: work_dir.to_path_buf(),
        },
        resume,
        stop: stop_on_signals(),
        deadline: deadline_of(args, job),
    })
}

/// A chat run's inputs: the basics and the datasets made local.
pub(crate) fn prepare_run(
    args: &TrainArgs,
    job: &FineTuneJob,
    manifest_dir: &Path,
    work_dir: &Path,
    starting_point: Option<StartingPoint>,
) -> Result<RunInputs, Failure> {
    let basics = prepare_basics(args, job, manifest_dir, work_dir, starting_point)?;
    let dataset = |uri: &Option<String>, what| {
        uri.as_deref()
            .map(|uri| fetch_file(uri, manifest_dir, work_dir, what))
            .transpose()
    };
    let train_data =
        dataset(&job.spec.dataset.train, "spec.dataset.train")?.ok_or(Failure::ConfigMapDataset)?;
    let validation_data = dataset(&job.spec.dataset.validation, "spec.dataset.validation")?;
    let mix = (job.spec.dataset.mix.iter().enumerate())
        .map(|(index, mixed)| {
            // A folder each, so two mixed files of one name do not meet.
            let folder = work_dir.join(format!("mix-{index}"));
            let (name, path) =
                fetch_file(&mixed.uri, manifest_dir, &folder, "spec.dataset.mix[].uri")?;
            Ok(MixFile {
                name,
                path,
                weight: mixed.weight,
            })
        })
        .collect::<Result<Vec<_>, SourceError>>()?;
    let evaluation = (job.spec.checkpoints.evaluation.as_ref())
        .map(|spec| prepare_checkpoint_evaluation(spec, manifest_dir, work_dir))
        .transpose()?;
    // After the sources (a run that cannot start leaves no folder), before the model
    // loads and trains for hours.
    check_writable(&basics.location.output)?;
    record_job(args, job, manifest_dir, &basics.location.output)?;
    Ok(RunInputs {
        job: basics.job,
        base_model: basics.base_model,
        settings: TrainingSettings::of_job(job),
        data: RunData {
            train: train_data,
            validation: validation_data,
            validation_split: job.spec.dataset.resolved_validation_split(),
            mix,
            evaluation,
        },
        location: basics.location,
        memory: GivenMemory {
            gpu: args.gpu_memory,
            cpu: args.cpu_memory,
        },
        resume: basics.resume,
        stop: basics.stop,
        deadline: basics.deadline,
    })
}

/// The run's own copy of the job it trains, `job.yaml`: what `trainer evaluate` and
/// a person reading the run later learn the base model and data from. `file://`
/// sources are made absolute (the manifest's folder is not stored), and a
/// `--base-model` folder replaces the manifest's base model.
pub(crate) const JOB_FILE: &str = "job.yaml";

pub(crate) fn record_job(
    args: &TrainArgs,
    job: &FineTuneJob,
    manifest_dir: &Path,
    output: &Storage,
) -> Result<(), Failure> {
    let mut recorded = job.clone();
    recorded.status = None;
    let absolute = |uri: &String| match resolve_file_uri(uri, manifest_dir) {
        Some(path) => format!(
            "file://{}",
            std::path::absolute(&path).unwrap_or(path).display()
        ),
        None => uri.clone(),
    };
    let spec = &mut recorded.spec;
    spec.base_model.source = match &args.base_model {
        Some(dir) => Some(format!(
            "file://{}",
            std::path::absolute(dir)
                .unwrap_or_else(|_| dir.clone())
                .display()
        )),
        None => spec.base_model.source.as_ref().map(absolute),
    };
    let evaluation = spec
        .checkpoints
        .evaluation
        .as_mut()
        .map(|e| &mut e.dataset.uri);
    for uri in [
        &mut spec.dataset.train,
        &mut spec.dataset.validation,
        &mut spec.dataset.images,
    ]
    .into_iter()
    .chain(evaluation)
    .flatten()
    {
        *uri = absolute(uri);
    }
    for mixed in &mut spec.dataset.mix {
        mixed.uri = absolute(&mixed.uri);
    }
    let yaml = serde_yaml_ng::to_string(&recorded).expect("a FineTuneJob serializes");
    output
        .put(JOB_FILE, yaml.into_bytes())
        .map_err(|source| Failure::OutputNotWritable {
            uri: output.uri().to_owned(),
            source: Box::new(source),
        })
}

/// Writes and removes a probe object in the run's folder, so that a read-only or
/// misconfigured output fails the run now rather than at its first checkpoint.
pub(crate) fn check_writable(output: &Storage) -> Result<(), Failure> {
    const PROBE: &str = ".anneal-write-check";
    let failure = |source| Failure::OutputNotWritable {
        uri: output.uri().to_owned(),
        source: Box::new(source),
    };
    output
        .put(&format!("{PROBE}/probe"), b"anneal".to_vec())
        .map_err(failure)?;
    output.delete_dir(PROBE).map_err(failure)
}

/// A flag SIGINT and SIGTERM set: the run checkpoints and stops when it sees it.
fn stop_on_signals() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal while the checkpoint is being written ends the process at once.
        let _ = signal_hook::flag::register_conditional_shutdown(signal, 130, stop.clone());
        let _ = signal_hook::flag::register(signal, stop.clone());
    }
    stop
}

/// Where events go: the progress display (or JSON lines), and the operator when
/// `--report-url` is given.
fn event_sinks(args: &TrainArgs, job: &FineTuneJob) -> (Vec<Box<dyn EventSink>>, Option<Reporter>) {
    let display: Box<dyn EventSink> = if args.json {
        Box::new(JsonLines)
    } else if job.spec.task.is_image() {
        let prompts = job
            .spec
            .checkpoints
            .sample_prompts
            .iter()
            .filter_map(|p| p.prompt.clone())
            .collect();
        Box::new(ProgressDisplay::for_images(prompts))
    } else {
        let prompts = job
            .spec
            .checkpoints
            .sample_prompts
            .iter()
            .map(|p| {
                p.messages
                    .last()
                    .map(|m| m.content.clone())
                    .unwrap_or_default()
            })
            .collect();
        Box::new(ProgressDisplay::new(prompts))
    };
    let mut sinks = vec![display];
    let reporter = start_reporter(args);
    if let Some(reporter) = &reporter {
        sinks.push(Box::new(reporter.sink()));
    }
    (sinks, reporter)
}

/// The closing lines of a finished local run: where the result is, its model id,
/// the loss chart, and (for local storage) how to try and serve it.
fn print_result(job: &FineTuneJob, base_model_dir: &Path, result: &JobResult) {
    let training = job.spec.training;
    let label = match training {
        TrainingType::Lora => "adapter:",
        TrainingType::Full => "model:",
    };
    println!("{label:<11} {}", result.uri);
    println!("model id:   {}", result.model_id);
    // The result is `{run}/final`, or after an early stop `{run}/checkpoints/ckpt-N`.
    let run = result
        .uri
        .rsplit_once("/checkpoints/")
        .map_or(result.uri.trim_end_matches("/final"), |(run, _)| run);
    println!("loss chart: {run}/loss.svg");
    if let Some(why) = &result.stopped_early {
        println!("stopped:    {why}");
    }
    let Some(path) = result.uri.strip_prefix("file://") else {
        return;
    };
    let path = Path::new(path);
    let trained = match training {
        TrainingType::Lora => Trained::Adapter {
            base: base_model_dir,
            adapter: path,
        },
        TrainingType::Full => Trained::Model { model: path },
    };
    let question = job
        .spec
        .checkpoints
        .sample_prompts
        .first()
        .and_then(|p| p.messages.last())
        .map_or("Hello!", |m| m.content.as_str());
    let steps = next_steps(trained, &result.model_id, question);
    println!("try it:     {}", steps.try_it);
    println!("serve it:   {}", steps.serve_it);
    // `{runs}/{namespace}/{job}/{run}/final` (or `.../checkpoints/ckpt-N`).
    let run_folder = run.strip_prefix("file://").map(Path::new);
    if let Some(runs) = run_folder.and_then(|run| run.ancestors().nth(3)) {
        println!("browse it:  {}", console_command(runs));
    }
}

/// The reporter for `--report-url`, if one is given and usable: a reporting
/// problem is a warning, never a reason not to train.
fn start_reporter(args: &TrainArgs) -> Option<Reporter> {
    let url = args.report_url.as_deref().filter(|url| !url.is_empty())?;
    let config = ReportConfig {
        url: url.to_owned(),
        token_file: args.report_token_file.clone(),
    };
    match Reporter::start(config) {
        Ok(reporter) => Some(reporter),
        Err(error) => {
            eprintln!("warning: not reporting events: {error}");
            None
        }
    }
}

pub(crate) struct TrainJob {
    pub(crate) inputs: RunInputs,
    pub(crate) sinks: Vec<Box<dyn EventSink>>,
}

impl TrainBackendJob for TrainJob {
    type Output = Result<RunOutcome, Failure>;

    fn run<B: AutodiffBackend>(self, devices: Vec<B::Device>) -> Self::Output {
        Ok(run_training::<B>(self.inputs, self.sinks, &devices)?)
    }
}

/// `{output}/{namespace}/{job}`.
fn runs_location(
    args: &TrainArgs,
    job: &FineTuneJob,
    manifest_dir: &Path,
    namespace: &str,
    job_name: &str,
) -> Result<Storage, Failure> {
    Ok(namespace_runs(args, job, manifest_dir, namespace)?.child(job_name))
}

/// Where the runs of `namespace`'s jobs go: `{output}/{namespace}`.
fn namespace_runs(
    args: &TrainArgs,
    job: &FineTuneJob,
    manifest_dir: &Path,
    namespace: &str,
) -> Result<Storage, Failure> {
    let base = match (&args.output, job.spec.output.as_ref()) {
        (Some(uri), _) => absolute_uri(uri, &std::env::current_dir().unwrap_or_default()),
        (None, Some(output)) => absolute_uri(&output.uri, manifest_dir),
        (None, None) => {
            let cwd = std::env::current_dir().unwrap_or_default();
            format!("file://{}", cwd.join("anneal-runs").display())
        }
    };
    let storage = Storage::open(&base).map_err(Failure::Output)?;
    Ok(storage.child(namespace))
}

/// `job` with the checkpoint it starts from (`spec.baseModel.fineTuneJob`, or the
/// operator's `--starts-from`) made concrete ([`starting_point::resolve`]).
fn resolve_starting_point(
    args: &TrainArgs,
    job: &FineTuneJob,
    manifest_dir: &Path,
    work_dir: &Path,
) -> Result<(FineTuneJob, Option<StartingPoint>), Failure> {
    if args.starts_from.is_none() && job.spec.base_model.fine_tune_job.is_none() {
        return Ok((job.clone(), None));
    }
    let refuse = |message: &str| {
        Failure::StartingPoint(StartingPointError::Field {
            field: "spec.baseModel.fineTuneJob".to_owned(),
            message: message.to_owned(),
        })
    };
    if job.spec.task.is_image() {
        return Err(refuse(
            "an image job starts from a pipeline folder; starting from another job's checkpoint is for chat jobs",
        ));
    }
    if args.base_model.is_some() {
        return Err(refuse(
            "--base-model replaces the base model, which this job takes from the job it starts from: leave one out",
        ));
    }
    let namespace = (job.metadata.namespace.clone()).unwrap_or_else(|| "default".to_owned());
    let runs = namespace_runs(args, job, manifest_dir, &namespace)?;
    Ok(starting_point::resolve(
        job,
        args.starts_from.as_ref(),
        &runs,
        work_dir,
    )?)
}

/// `file://relative` made absolute against `dir`; bare paths taken as files too.
pub(crate) fn absolute_uri(uri: &str, dir: &Path) -> String {
    if let Some(path) = resolve_file_uri(uri, dir) {
        return format!("file://{}", path.display());
    }
    if uri.contains("://") {
        return uri.to_owned();
    }
    format!("file://{}", dir.join(uri).display())
}

/// The newest run of the job (run ids sort by time), if any.
fn newest_run(runs: &Storage) -> Result<Option<String>, Failure> {
    let mut ids = runs.list_children("").map_err(TrainError::from)?;
    ids.sort();
    Ok(ids.pop())
}

/// A run id as `--run-id` takes it: one folder name of letters, digits, `.`, `_` and
/// `-` (a pod's is its FineTuneJob's uid), never `..` or a path.
fn run_id(value: &str) -> Result<String, String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if (1..=128).contains(&value.len()) && value.chars().all(allowed) && !value.starts_with('.') {
        Ok(value.to_owned())
    } else {
        Err(format!(
            "{value:?} is not a run id: 1 to 128 letters, digits, '.', '_' and '-', not starting with '.'"
        ))
    }
}

/// `20261123-071502-3f9a`: sorts by start time, unique enough for one job.
pub(crate) fn new_run_id() -> String {
    let now = anneal_crds::jiff::Zoned::now().with_time_zone(anneal_crds::jiff::tz::TimeZone::UTC);
    let suffix: u16 = rand::random();
    format!("{}-{suffix:04x}", now.strftime("%Y%m%d-%H%M%S"))
}

/// The base model as a local folder: `--base-model`, or spec.baseModel.source (an
/// `s3://` one downloaded into the work folder, a hub one fetched into the model
/// cache), refused when incomplete.
fn fetch_base_model(
    args: &TrainArgs,
    job: &FineTuneJob,
    manifest_dir: &Path,
    work_dir: &Path,
) -> Result<PathBuf, Failure> {
    let (source, what) = match &args.base_model {
        Some(dir) => (FolderSource::Local(dir.clone()), "--base-model"),
        None => {
            let what = "spec.baseModel.source";
            // Validation refused a job with neither a source nor a hub name.
            let uri = job.spec.base_model.source_uri().unwrap_or_default();
            (FolderSource::from_manifest(&uri, manifest_dir, what)?, what)
        }
    };
    Ok(make_local(&source, &work_dir.join("base-model"), what)?)
}

/// The scratch folder: the one given, or a temporary one removed at the end.
struct WorkDir {
    path: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl WorkDir {
    fn new(given: Option<PathBuf>) -> Result<Self, Failure> {
        match given {
            Some(path) => {
                if let Err(source) = std::fs::create_dir_all(&path) {
                    return Err(Failure::WorkDir { path, source });
                }
                Ok(Self { path, _temp: None })
            }
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("anneal-train-")
                    .tempdir()
                    .map_err(Failure::TempWorkDir)?;
                Ok(Self {
                    path: temp.path().to_path_buf(),
                    _temp: Some(temp),
                })
            }
        }
    }

    fn path(&self) -> &Path {
        &self.path
    }
}
