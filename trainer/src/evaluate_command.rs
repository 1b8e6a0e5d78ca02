//! `trainer evaluate EVAL.yaml`: runs the ModelEvaluation a user would `kubectl
//! apply`, here: each model (a base model folder, or a FineTuneJob's checkpoint from
//! the runs `trainer train` wrote) answers the held-out prompts, every answer is
//! scored against its reference by the manifest's metrics, and the comparison (each
//! score with its 95% interval and its difference from the baseline) is printed and
//! written as `report.json` and `report.html` (the answers side by side) to
//! `{output}/{namespace}/{evaluation}/{run id}/`.
//!
//! Exit codes: 0 evaluated; 1 a failure that may pass on retry (storage, I/O); 2 one
//! that will not (manifest, dataset, a model that cannot be found or loaded).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anneal_crds::manifest::parse_modelevaluation;
use anneal_crds::modelevaluation::{MetricSpec, ModelEvaluation};
use anneal_crds::storage::{Storage, StorageError};
use anneal_eval::html::report_html;
use anneal_eval::metrics::Metric;
use anneal_eval::report::{NamedMetric, Scorer, build_report, comparison_table};
use anneal_eval::samples::{SamplesError, read_eval_samples};
use anneal_model::backend::{BackendError, run_on};
use anneal_model::generate::SamplingParams;
use anneal_sources::{SourceError, fetch_file};

use crate::device_arg::DeviceArg;
use crate::evaluate::answer::{AnswerError, AnswerJob};
use crate::evaluate::resolve::{Places, ResolveError, resolve_model};
use crate::manifest_file::{ManifestFileError, read_manifest_file};
use crate::train_command::{absolute_uri, new_run_id};

#[derive(clap::Args, Debug)]
pub struct EvaluateArgs {
    /// A ModelEvaluation manifest (.yaml).
    pub manifest: PathBuf,
    /// Where `trainer train` wrote its runs, in which a fineTuneJob model's checkpoints
    /// are found (file:// or s3://). Default: spec.output.uri, else ./anneal-runs.
    #[arg(long)]
    pub runs: Option<String>,
    /// Where the report is written (file:// or s3://). Default: spec.output.uri, else
    /// ./anneal-runs.
    #[arg(long, env = "ANNEAL_OUTPUT")]
    pub output: Option<String>,
    /// Where to compute.
    #[arg(long, value_enum, default_value_t)]
    pub device: DeviceArg,
}

/// Why the evaluation did not run; each message names the field, file or model.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Manifest(#[from] ManifestFileError),
    #[error("{field}: {message}")]
    NotYet { field: String, message: String },
    #[error("spec.dataset {uri}: {source}")]
    Dataset { uri: String, source: SamplesError },
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Answer(#[from] AnswerError),
    #[error("{0}")]
    Metric(String),
    #[error("output: {0}")]
    Output(#[from] StorageError),
    #[error("creating a work folder: {0}")]
    WorkDir(std::io::Error),
}

impl Failure {
    fn exit_code(&self) -> u8 {
        match self {
            Failure::Output(_) | Failure::WorkDir(_) => 1,
            Failure::Source(source) if source.may_pass_on_retry() => 1,
            _ => 2,
        }
    }
}

pub fn run(args: EvaluateArgs) -> ExitCode {
    match evaluate(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("trainer evaluate: {failure}");
            ExitCode::from(failure.exit_code())
        }
    }
}

fn evaluate(args: &EvaluateArgs) -> Result<(), Failure> {
    let (evaluation, manifest_dir) = read_manifest(&args.manifest)?;
    let spec = &evaluation.spec;
    let metrics = named_metrics(&spec.metrics)?;
    let work = tempfile::Builder::new()
        .prefix("anneal-evaluate-")
        .tempdir()
        .map_err(Failure::WorkDir)?;
    let samples = read_dataset(&evaluation, &manifest_dir, work.path())?;
    let namespace = evaluation
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".to_owned());
    let spec_output = spec.output.as_ref().map(|o| o.uri.as_str());
    let runs = storage_root(args.runs.as_deref(), spec_output, &manifest_dir)?;
    let places = Places {
        manifest_dir: &manifest_dir,
        runs: &runs,
        namespace: &namespace,
        work_dir: work.path(),
    };
    let mut models = Vec::new();
    for (index, model) in spec.models.iter().enumerate() {
        models.extend(resolve_model(index, model, &places)?);
    }
    let generation = &spec.generation;
    let params = SamplingParams {
        max_new_tokens: generation.max_tokens as usize,
        temperature: generation.temperature as f32,
        top_p: 1.0,
        seed: generation.seed,
        stop: Vec::new(),
    };
    let job = AnswerJob {
        models,
        samples: samples.clone(),
        params,
        reference_loss: metrics
            .iter()
            .any(|m| matches!(m.scorer, Scorer::ReferenceLoss)),
    };
    let answers = run_on(args.device.into(), job)??;
    let baseline = spec
        .baseline
        .clone()
        .unwrap_or_else(|| spec.models[0].name.clone());
    let report = build_report(&samples, &answers, &metrics, &baseline, generation.seed)
        .map_err(|e| Failure::Metric(e.to_string()))?;

    let name = evaluation.metadata.name.clone().unwrap_or_default();
    let output = storage_root(args.output.as_deref(), spec_output, &manifest_dir)?
        .child(&format!("{namespace}/{name}/{}", new_run_id()));
    let json = serde_json::to_string_pretty(&report).expect("the report serializes");
    output.put("report.json", json.into_bytes())?;
    let page = report_html(&report, &format!("ModelEvaluation {namespace}/{name}"));
    output.put("report.html", page.into_bytes())?;
    print!("{}", comparison_table(&report));
    println!("best:    {} (by {})", report.best, report.metrics[0]);
    println!("report:  {}/report.json", output.uri());
    println!(
        "page:    {}/report.html (answers side by side)",
        output.uri()
    );
    Ok(())
}

/// The evaluation in the manifest, and the folder its `file://` URIs are relative to.
fn read_manifest(manifest: &Path) -> Result<(ModelEvaluation, PathBuf), Failure> {
    Ok(read_manifest_file(manifest, parse_modelevaluation)?)
}

/// The manifest's metrics as the scorer computes them; the ones this version does
/// not compute yet are refused by name.
fn named_metrics(metrics: &[MetricSpec]) -> Result<Vec<NamedMetric>, Failure> {
    metrics
        .iter()
        .enumerate()
        .map(|(index, spec)| {
            let not_yet = |kind: &str| Failure::NotYet {
                field: format!("spec.metrics[{index}].{kind}"),
                message: "not computed by this version of trainer evaluate yet; exactMatch, contains, regex, rougeL, chrf and referenceLoss are".to_owned(),
            };
            let (label, metric) = if spec.exact_match.is_some() {
                ("exactMatch".to_owned(), Metric::ExactMatch)
            } else if let Some(contains) = &spec.contains {
                let label = match &contains.text {
                    Some(text) => format!("contains {text:?}"),
                    None => "contains reference".to_owned(),
                };
                (label, Metric::Contains(contains.text.clone()))
            } else if let Some(regex) = &spec.regex {
                // The manifest's validation compiled it already.
                let compiled = regex::Regex::new(&regex.pattern)
                    .map_err(|e| Failure::Metric(format!("spec.metrics[{index}].regex.pattern: {e}")))?;
                (format!("regex /{}/", regex.pattern), Metric::Regex(compiled))
            } else if spec.rouge_l.is_some() {
                ("rougeL".to_owned(), Metric::RougeL)
            } else if spec.chrf.is_some() {
                ("chrf".to_owned(), Metric::Chrf)
            } else if spec.reference_loss.is_some() {
                return Ok(NamedMetric {
                    label: "referenceLoss".to_owned(),
                    scorer: Scorer::ReferenceLoss,
                });
            } else {
                return Err(not_yet("judge"));
            };
            Ok(NamedMetric {
                label,
                scorer: Scorer::Text(metric),
            })
        })
        .collect()
}

/// The held-out chats, made local and read.
fn read_dataset(
    evaluation: &ModelEvaluation,
    manifest_dir: &Path,
    work_dir: &Path,
) -> Result<Vec<anneal_eval::samples::EvalSample>, Failure> {
    let dataset = &evaluation.spec.dataset;
    let Some(uri) = &dataset.uri else {
        return Err(Failure::NotYet {
            field: "spec.dataset.configMap".to_owned(),
            message: "a ConfigMap is read in a cluster; locally, name the file in spec.dataset.uri"
                .to_owned(),
        });
    };
    let (_, path) = fetch_file(uri, manifest_dir, work_dir, "spec.dataset.uri")?;
    let file = std::fs::File::open(&path).map_err(|e| Failure::Dataset {
        uri: uri.clone(),
        source: SamplesError::Io(e),
    })?;
    read_eval_samples(file, dataset.max_samples.map(|n| n as usize)).map_err(|source| {
        Failure::Dataset {
            uri: uri.clone(),
            source,
        }
    })
}

/// A storage root from a flag (relative to the working folder), else the manifest's
/// `spec.output.uri` (relative to the manifest's folder), else `./anneal-runs`: where
/// `trainer train` puts its runs.
fn storage_root(
    flag: Option<&str>,
    manifest: Option<&str>,
    manifest_dir: &Path,
) -> Result<Storage, Failure> {
    let cwd = std::env::current_dir().unwrap_or_default();
    let uri = match (flag, manifest) {
        (Some(uri), _) => absolute_uri(uri, &cwd),
        (None, Some(uri)) => absolute_uri(uri, manifest_dir),
        (None, None) => format!("file://{}", cwd.join("anneal-runs").display()),
    };
    Ok(Storage::open(&uri)?)
}
