//! `trainer validate`: check a JSONL dataset, an image job's folder of captioned
//! images, or a FineTuneJob manifest together with the local datasets it names, and
//! say in plain words what is wrong.
//!
//! Exit codes: 0 valid, 1 invalid, 2 the input could not be read at all.

use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anneal_crds::dataset::{DatasetKind, DatasetLimits, DatasetReport, validate_dataset};
use anneal_crds::image_dataset::{
    CaptionFallback, ImageFolderLimits, list_local_folder, validate_image_folder,
};
use anneal_crds::manifest::parse_finetunejob;
use anneal_crds::{FineTuneJob, FineTuneJobSpec};

use anneal_sources::local_paths::resolve_file_uri;

#[derive(clap::Args, Debug)]
pub struct ValidateArgs {
    /// A dataset (.jsonl), an image job's folder of images and .txt captions, or a
    /// FineTuneJob manifest (.yaml / .yml).
    pub file: PathBuf,
    /// Line shape to expect in a dataset; a manifest brings its own method.
    #[arg(long, value_enum, default_value_t = MethodArg::Sft)]
    pub method: MethodArg,
    /// Stop listing problems after this many (all are still counted).
    #[arg(long, default_value_t = 20)]
    pub max_errors: usize,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MethodArg {
    Sft,
    Dpo,
}

impl From<MethodArg> for DatasetKind {
    fn from(method: MethodArg) -> Self {
        match method {
            MethodArg::Sft => DatasetKind::Sft,
            MethodArg::Dpo => DatasetKind::Dpo,
        }
    }
}

/// Runs the command, printing its report; the exit code says valid (0) or not (1).
pub fn run(args: &ValidateArgs) -> ExitCode {
    let limits = DatasetLimits {
        max_errors: args.max_errors,
        ..DatasetLimits::default()
    };
    let is_manifest = matches!(
        args.file.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    );
    let outcome = if is_manifest {
        check_manifest(&args.file, &limits)
    } else if args.file.is_dir() {
        check_image_folder(&args.file, &CaptionFallback::Unknown)
    } else {
        check_dataset(&args.file, args.method.into(), &limits)
    };
    match outcome {
        Ok(Verdict { report, valid }) => {
            print!("{report}");
            if valid {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(error) => {
            eprintln!("trainer validate: {error}");
            ExitCode::from(2)
        }
    }
}

/// What to print, and whether the input passed.
pub struct Verdict {
    pub report: String,
    pub valid: bool,
}

/// Why a file could not be checked at all (as opposed to being found invalid).
#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    #[error("cannot open {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A dataset the manifest names (`spec.dataset.train` or `.validation`).
    #[error("spec.dataset.{field}: {source}")]
    Dataset {
        field: &'static str,
        source: Box<ValidateError>,
    },
}

/// Checks one dataset file.
pub fn check_dataset(
    path: &Path,
    kind: DatasetKind,
    limits: &DatasetLimits,
) -> Result<Verdict, ValidateError> {
    let open_error = |source| ValidateError::Open {
        path: path.to_path_buf(),
        source,
    };
    // Before opening: opening a FIFO waits for a writer, and a device such as /dev/zero
    // is an endless line.
    let metadata = std::fs::metadata(path).map_err(open_error)?;
    if !metadata.is_file() {
        return Err(open_error(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file (a FIFO or a device cannot be a dataset)",
        )));
    }
    let file = File::open(path).map_err(open_error)?;
    let report = validate_dataset(file, kind, limits).map_err(|source| ValidateError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(Verdict {
        valid: report.is_valid(),
        report: render_dataset_report(&path.display().to_string(), kind, &report),
    })
}

/// Checks a FineTuneJob manifest and every `file://` dataset it names.
pub fn check_manifest(path: &Path, limits: &DatasetLimits) -> Result<Verdict, ValidateError> {
    let text = std::fs::read_to_string(path).map_err(|source| ValidateError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let job = match parse_finetunejob(&text) {
        Ok(job) => job,
        Err(err) => {
            return Ok(Verdict {
                report: format!(
                    "{}: invalid FineTuneJob\n{}\n",
                    path.display(),
                    indent(&err.to_string())
                ),
                valid: false,
            });
        }
    };
    let mut report = render_job(path, &job);
    let mut valid = true;
    let manifest_dir = path.parent().unwrap_or(Path::new("."));
    let kind = DatasetKind::from(job.spec.method);
    let fallback = match &job.spec.hyperparameters.trigger_word {
        Some(word) => CaptionFallback::TriggerWord(word.clone()),
        None => CaptionFallback::None,
    };
    for (field, uri) in dataset_uris(&job.spec) {
        let Some(local) = resolve_file_uri(uri, manifest_dir) else {
            let _ = writeln!(
                report,
                "{uri}: not read here (only file:// datasets are checked locally; the operator checks the rest before training)"
            );
            continue;
        };
        let verdict = match field {
            "images" => check_image_folder(&local, &fallback),
            _ => check_dataset(&local, kind, limits),
        }
        .map_err(|source| ValidateError::Dataset {
            field,
            source: Box::new(source),
        })?;
        valid &= verdict.valid;
        report.push_str(&verdict.report);
    }
    Ok(Verdict { report, valid })
}

/// Checks an image job's folder: its listing, then every caption and image.
pub fn check_image_folder(
    folder: &Path,
    fallback: &CaptionFallback,
) -> Result<Verdict, ValidateError> {
    let listing =
        list_local_folder(folder).map_err(|(path, source)| ValidateError::Open { path, source })?;
    let report = validate_image_folder(
        &listing,
        fallback,
        &ImageFolderLimits::default(),
        &mut |name| std::fs::read(folder.join(name)).map_err(|e| format!("cannot be read: {e}")),
    );
    let mut text = format!("{}: ", folder.display());
    if report.is_valid() {
        text.push_str("valid image folder, ");
    } else {
        text.push_str("invalid image folder, ");
    }
    let _ = write!(text, "{report}");
    Ok(Verdict {
        valid: report.is_valid(),
        report: text,
    })
}

/// The local data a manifest names: JSONL files, or an image job's folder.
fn dataset_uris(spec: &FineTuneJobSpec) -> Vec<(&'static str, &str)> {
    let mut uris = Vec::new();
    if let Some(images) = &spec.dataset.images {
        uris.push(("images", images.as_str()));
    }
    if let Some(train) = &spec.dataset.train {
        uris.push(("train", train.as_str()));
    }
    if let Some(validation) = &spec.dataset.validation {
        uris.push(("validation", validation.as_str()));
    }
    for mixed in &spec.dataset.mix {
        uris.push(("mix", mixed.uri.as_str()));
    }
    uris
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

fn render_job(path: &Path, job: &FineTuneJob) -> String {
    let h = job.resolved_hyperparameters();
    let name = job.metadata.name.as_deref().unwrap_or("(unnamed)");
    if job.spec.task.is_image() {
        let resolution = h
            .resolution
            .map_or_else(|| "the model's".to_owned(), |r| r.to_string());
        return format!(
            "{}: valid FineTuneJob {name}\n  model             {}\n  task              text-to-image, LoRA with the flow-matching loss\n  hyperparameters   lr {}, epochs {}, batch {}, repeats {}, resolution {resolution}, trigger word {}\n  lora              rank {}, alpha {}, dropout {}, modules attention{}\n",
            path.display(),
            job.spec.base_model.name,
            h.learning_rate,
            h.epochs,
            h.batch_size,
            h.repeats,
            h.trigger_word
                .as_deref()
                .map_or_else(|| "(none)".to_owned(), |w| format!("{w:?}")),
            h.lora_rank,
            h.lora_alpha,
            h.lora_dropout,
            if h.lora_include_mlp { " and MLP" } else { "" },
        );
    }
    let modules: Vec<&str> = h.target_modules.iter().map(|m| m.hf_name()).collect();
    format!(
        "{}: valid FineTuneJob {name}\n  model             {}\n  method            {}, training {}\n  hyperparameters   lr {}, epochs {}, batch {} ({}), max tokens {}\n  lora              rank {}, alpha {}, dropout {}, modules {}\n",
        path.display(),
        job.spec.base_model.name,
        serde_json::to_value(job.spec.method)
            .unwrap_or_default()
            .as_str()
            .unwrap_or_default(),
        serde_json::to_value(job.spec.training)
            .unwrap_or_default()
            .as_str()
            .unwrap_or_default(),
        h.learning_rate,
        h.epochs,
        h.batch_size,
        micro_batch_text(job),
        h.max_tokens,
        h.lora_rank,
        h.lora_alpha,
        h.lora_dropout,
        modules.join(","),
    )
}

/// How the job's micro-batch is chosen: its own with `gradientAccumulation`, else
/// the memory plan's on the device `trainer train` runs on.
fn micro_batch_text(job: &FineTuneJob) -> String {
    match job.spec.hyperparameters.set_micro_batch() {
        Some(micro) => format!("micro-batch {micro}, set by gradientAccumulation"),
        None => "micro-batch: the largest the device holds, see trainer plan".to_owned(),
    }
}

/// The one-screen report for a dataset: the summary when it is valid, every
/// problem (up to the limit) when it is not.
pub fn render_dataset_report(name: &str, kind: DatasetKind, report: &DatasetReport) -> String {
    let kind_name = match kind {
        DatasetKind::Sft => "SFT",
        DatasetKind::Dpo => "DPO",
        DatasetKind::Evaluation => "evaluation",
    };
    let s = &report.summary;
    let mut out = String::new();
    if report.is_valid() {
        let _ = writeln!(out, "{name}: valid {kind_name} dataset");
    } else {
        let _ = writeln!(out, "{name}: invalid {kind_name} dataset");
        for problem in &report.problems {
            let _ = writeln!(out, "  {problem}");
        }
        let shown = report.problems.len() as u64;
        if report.problems_total > shown {
            let _ = writeln!(
                out,
                "  ... and {} more ({} problems in all; raise --max-errors to see them)",
                report.problems_total - shown,
                report.problems_total
            );
        }
    }
    let _ = writeln!(
        out,
        "  samples           {} valid of {} lines",
        s.samples, s.lines
    );
    let _ = writeln!(
        out,
        "  turns             {} (system {}, user {}, assistant {})",
        s.turns, s.system_messages, s.user_messages, s.assistant_messages
    );
    let mean = s.characters.checked_div(s.samples).unwrap_or(0);
    let _ = writeln!(
        out,
        "  characters        {} (mean {mean} per sample)",
        s.characters
    );
    if let Some((line, chars)) = s.longest_sample {
        let _ = writeln!(out, "  longest sample    line {line}, {chars} characters");
    }
    for note in &s.notes {
        let _ = writeln!(out, "  note: {note}");
    }
    out
}
