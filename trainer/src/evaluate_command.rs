//! `trainer evaluate EVAL.yaml`: runs the ModelEvaluation a user would `kubectl
//! apply`, here: each model (a base model folder, a FineTuneJob's checkpoint from the
//! runs `trainer train` wrote, a ModelDeployment or any OpenAI-compatible endpoint)
//! answers the held-out prompts, every answer is scored by the manifest's metrics
//! (against its reference, or by an LLM judge), and the comparison (each score with
//! its 95% interval and its difference from the baseline) is printed and written as
//! `report.json` and `report.html` (the answers side by side) to
//! `{output}/{namespace}/{evaluation}/{run id}/`.
//!
//! Exit codes: 0 evaluated; 1 a failure that may pass on retry (storage, I/O, a
//! served model out of reach); 2 one that will not (manifest, dataset, a model that
//! cannot be found or loaded).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anneal_crds::manifest::parse_modelevaluation;
use anneal_crds::modelevaluation::{JudgeMetric, MetricSpec, ModelEvaluation};
use anneal_crds::storage::{Storage, StorageError};
use anneal_eval::html::report_html;
use anneal_eval::judge::Rubric;
use anneal_eval::named::{MetricRefused, check_references, named_metrics};
use anneal_eval::report::{ModelAnswers, Scorer, build_report, comparison_table};
use anneal_eval::samples::{EvalSample, SamplesError, read_eval_samples};
use anneal_eval::status::evaluation_results;
use anneal_model::generate::SamplingParams;
use anneal_sources::{SourceError, fetch_file};

use crate::device_arg::DeviceArg;
use crate::evaluate::ask::{AskError, AskSettings, ask};
use crate::evaluate::judging::{judge_requests, read_verdicts};
use crate::evaluate::kept::{Keeper, Progress, fingerprint};
use crate::evaluate::resolve::{Places, ResolveError, Resolved, resolve_judge, resolve_model};
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
    /// Where credentials Secrets are mounted: an endpoint's `credentialsSecret: S`
    /// is read from DIR/S/apiKey.
    #[arg(
        long,
        env = "ANNEAL_SECRETS_DIR",
        default_value = "/var/run/secrets/anneal"
    )]
    pub secrets_dir: PathBuf,
    /// NAME=URL: ask ModelDeployment NAME at URL (ending before /chat/completions)
    /// instead of its in-cluster Service, http://NAME.NAMESPACE.svc:8000/v1.
    /// Repeatable.
    #[arg(long = "deployment", value_name = "NAME=URL", value_parser = parse_deployment_url)]
    pub deployments: Vec<(String, String)>,
    /// NAME=URI: FineTuneJob NAME's checkpoints are in run folder URI (as the
    /// operator knows it) instead of its newest run under --runs. Repeatable.
    #[arg(long = "job-run", value_name = "NAME=URI", value_parser = parse_job_run)]
    pub job_runs: Vec<(String, String)>,
    /// Continue run ID of this evaluation: the answers and verdicts it kept are not
    /// asked again. Default: a new run. (The operator gives each evaluation one.)
    #[arg(long, env = "ANNEAL_RUN_ID")]
    pub run_id: Option<String>,
}

/// The judge's room for its reasons and its verdict line.
const JUDGE_MAX_TOKENS: usize = 512;

fn parse_job_run(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, uri)) if !name.is_empty() && uri.contains("://") => {
            Ok((name.to_owned(), uri.to_owned()))
        }
        _ => Err(format!(
            "{text:?}: give NAME=URI, e.g. support-bot=s3://bucket/runs/team-a/support-bot/RUN"
        )),
    }
}

fn parse_deployment_url(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, url)) if !name.is_empty() && url.starts_with("http") => {
            Ok((name.to_owned(), url.to_owned()))
        }
        _ => Err(format!(
            "{text:?}: give NAME=URL, e.g. support-bot=http://127.0.0.1:8000/v1"
        )),
    }
}

/// Why the evaluation did not run; each message names the field, file or model.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Manifest(#[from] ManifestFileError),
    #[error("{field}: {message}")]
    Refused { field: String, message: String },
    #[error("spec.dataset {uri}: {source}")]
    Dataset { uri: String, source: SamplesError },
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error(transparent)]
    Ask(#[from] AskError),
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
            Failure::Ask(ask) if ask.may_pass_on_retry() => 1,
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
    let metrics = named_metrics("spec.metrics", &spec.metrics).map_err(refused)?;
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
        secrets_dir: &args.secrets_dir,
        deployment_urls: &args.deployments,
        job_runs: &args.job_runs,
    };
    let mut models = Vec::new();
    for (index, model) in spec.models.iter().enumerate() {
        models.extend(resolve_model(index, model, &places)?);
    }
    check_references("spec.metrics", &metrics, &samples).map_err(refused)?;
    check_reference_loss(&spec.metrics, &models)?;
    let baseline = spec
        .baseline
        .clone()
        .unwrap_or_else(|| spec.models[0].name.clone());
    let base = models
        .iter()
        .position(|m| m.name() == baseline)
        .expect("the manifest's rules make the baseline one model");
    let generation = &spec.generation;
    let settings = AskSettings {
        params: SamplingParams {
            max_new_tokens: generation.max_tokens as usize,
            temperature: generation.temperature as f32,
            top_p: 1.0,
            seed: generation.seed,
            stop: Vec::new(),
        },
        device: args.device,
    };
    let reference_loss = metrics
        .iter()
        .any(|m| matches!(m.scorer, Scorer::ReferenceLoss));
    let name = evaluation.metadata.name.clone().unwrap_or_default();
    let run_id = args.run_id.clone().unwrap_or_else(new_run_id);
    let output = storage_root(args.output.as_deref(), spec_output, &manifest_dir)?
        .child(&format!("{namespace}/{name}/{run_id}"));
    eprintln!(
        "run {run_id}: replies are kept in {}; to continue after an interruption: --run-id {run_id}",
        output.uri()
    );
    let judges: Vec<&JudgeMetric> = judge_metrics(&spec.metrics).map(|(_, j)| j).collect();
    let pairwise = judges.iter().filter(|j| j.pairwise).count();
    let progress = Progress::new(models.len(), samples.len(), judges.len(), pairwise);
    let asked = Asked {
        run: &output,
        progress: &progress,
        samples: &samples,
        settings: &settings,
    };
    let mut answers = answer_all(&models, &asked, reference_loss)?;
    for (index, judge) in judge_metrics(&spec.metrics) {
        let judge_model = resolve_judge(index, &judge.model, &models, &places)?;
        judge_all(&judge_model, (index, judge), &asked, &mut answers, base)?;
    }
    let report = build_report(&samples, &answers, &metrics, &baseline, generation.seed)
        .map_err(|e| Failure::Metric(e.to_string()))?;

    let json = serde_json::to_string_pretty(&report).expect("the report serializes");
    output.put("report.json", json.into_bytes())?;
    let page = report_html(&report, &format!("ModelEvaluation {namespace}/{name}"));
    output.put("report.html", page.into_bytes())?;
    let status = serde_json::to_vec_pretty(&evaluation_results(&report)).expect("serializes");
    output.put("status.json", status)?;
    print!("{}", comparison_table(&report));
    println!("best:    {} (by {})", report.best, report.metrics[0]);
    println!("report:  {}/report.json", output.uri());
    println!(
        "page:    {}/report.html (answers side by side)",
        output.uri()
    );
    Ok(())
}

fn refused(refused: MetricRefused) -> Failure {
    Failure::Refused {
        field: refused.field,
        message: refused.message,
    }
}

/// The evaluation in the manifest, and the folder its `file://` URIs are relative to.
fn read_manifest(manifest: &Path) -> Result<(ModelEvaluation, PathBuf), Failure> {
    Ok(read_manifest_file(manifest, parse_modelevaluation)?)
}

/// The judge metrics, with their places in `spec.metrics`, in order.
fn judge_metrics(metrics: &[MetricSpec]) -> impl Iterator<Item = (usize, &JudgeMetric)> {
    metrics
        .iter()
        .enumerate()
        .filter_map(|(index, metric)| Some((index, metric.judge.as_ref()?)))
}

/// `referenceLoss` needs every model's weights: refused by its field before any
/// model answers.
fn check_reference_loss(metrics: &[MetricSpec], models: &[Resolved]) -> Result<(), Failure> {
    let Some(index) = metrics.iter().position(|m| m.reference_loss.is_some()) else {
        return Ok(());
    };
    let field = format!("spec.metrics[{index}].referenceLoss");
    if let Some(served) = models.iter().find(|m| matches!(m, Resolved::Served(_))) {
        return Err(Failure::Refused {
            field,
            message: format!(
                "model {} is served: its loss on the references needs its weights here; drop referenceLoss or evaluate its weights (baseModel, fineTuneJob)",
                served.name()
            ),
        });
    }
    Ok(())
}

/// What every model is asked, and the run folder its replies are kept in.
struct Asked<'a> {
    run: &'a Storage,
    progress: &'a Progress,
    samples: &'a [EvalSample],
    settings: &'a AskSettings,
}

/// Every model's replies to every sample, one model at a time, each continuing from
/// the answers kept for it.
fn answer_all(
    models: &[Resolved],
    asked: &Asked<'_>,
    reference_loss: bool,
) -> Result<Vec<ModelAnswers>, Failure> {
    let held_out: Vec<String> = asked
        .samples
        .iter()
        .map(|s| serde_json::json!([s.prompt, s.reference]).to_string())
        .collect();
    let params = format!("{:?}", asked.settings.params);
    models
        .iter()
        .map(|model| {
            let mut parts = vec![model.name().to_owned(), model.origin(), params.clone()];
            parts.push(reference_loss.to_string());
            parts.extend(held_out.iter().cloned());
            let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
            let keeper = Keeper::open(
                asked.run,
                asked.progress,
                format!("answers/{}.json", model.name().replace('/', "_")),
                fingerprint(&parts),
                reference_loss,
            )?;
            let replies = ask(model, asked.samples, asked.settings, reference_loss, keeper)?;
            Ok(ModelAnswers {
                model: model.name().to_owned(),
                answers: replies.answers,
                reference_losses: replies.reference_losses,
                judged: Vec::new(),
            })
        })
        .collect()
}

/// The judge of `spec.metrics[index]`'s verdicts on every model's answers, added to
/// each model's `judged`. The judge answers greedily, with room for its reasons.
fn judge_all(
    judge_model: &Resolved,
    (index, judge): (usize, &JudgeMetric),
    asked: &Asked<'_>,
    answers: &mut [ModelAnswers],
    baseline: usize,
) -> Result<(), Failure> {
    let rubric = Rubric {
        rubric: judge.rubric.clone(),
        scale: judge.scale,
    };
    let texts: Vec<Vec<String>> = answers.iter().map(|m| m.answers.clone()).collect();
    let requests = judge_requests(&rubric, judge.pairwise, asked.samples, &texts, baseline);
    let judge_settings = AskSettings {
        params: SamplingParams {
            max_new_tokens: JUDGE_MAX_TOKENS,
            temperature: 0.0,
            top_p: 1.0,
            seed: asked.settings.params.seed,
            stop: Vec::new(),
        },
        device: asked.settings.device,
    };
    let mut parts = vec![judge_model.origin(), format!("{:?}", judge_settings.params)];
    parts.extend(requests.iter().map(|r| serde_json::json!(r).to_string()));
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    let keeper = Keeper::open(
        asked.run,
        asked.progress,
        format!("judged/metric-{index}.json"),
        fingerprint(&parts),
        false,
    )?;
    let requests: Vec<EvalSample> = requests
        .into_iter()
        .zip(1..)
        .map(|(prompt, line)| EvalSample {
            line,
            prompt,
            reference: None,
        })
        .collect();
    let replies = ask(judge_model, &requests, &judge_settings, false, keeper)?.answers;
    let verdicts = read_verdicts(
        &rubric,
        judge.pairwise,
        asked.samples.len(),
        answers.len(),
        baseline,
        replies,
    );
    for (model, judged) in answers.iter_mut().zip(verdicts) {
        let unread = judged.scores.iter().filter(|s| s.is_none()).count();
        if unread > 0 {
            eprintln!(
                "judge ({}): {unread} of {} replies about {} had no score line; those samples are unscored",
                judge_model.name(),
                asked.samples.len(),
                model.model
            );
        }
        model.judged.push(judged);
    }
    Ok(())
}

/// The held-out chats, made local and read.
fn read_dataset(
    evaluation: &ModelEvaluation,
    manifest_dir: &Path,
    work_dir: &Path,
) -> Result<Vec<anneal_eval::samples::EvalSample>, Failure> {
    let dataset = &evaluation.spec.dataset;
    let Some(uri) = &dataset.uri else {
        return Err(Failure::Refused {
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
