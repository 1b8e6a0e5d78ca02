//! A training run's `checkpoints.evaluation`, made ready before the model loads: its
//! held-out chats fetched and read (a bad line is named now, not at the first
//! checkpoint an hour in), its metrics compiled and checked against the chats, and
//! its generation settings.

use std::path::Path;

use anneal_crds::finetunejob::CheckpointEvaluationSpec;
use anneal_eval::named::{MetricRefused, check_references, named_metrics};
use anneal_eval::samples::{SamplesError, read_eval_samples};
use anneal_model::generate::SamplingParams;
use anneal_sources::{SourceError, fetch_file};
use anneal_train::checkpoint_evaluation::CheckpointEvaluation;

const FIELD: &str = "spec.checkpoints.evaluation";

/// Why the evaluation cannot run, by its field.
#[derive(Debug, thiserror::Error)]
pub enum TrainEvaluationError {
    #[error(
        "{FIELD}.dataset.configMap: a ConfigMap is mounted by the operator in a cluster; locally, name the file in {FIELD}.dataset.uri"
    )]
    ConfigMap,
    #[error("{FIELD}.dataset.uri {uri}: {source}")]
    Dataset { uri: String, source: SamplesError },
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Metric(#[from] MetricRefused),
}

/// The evaluation `spec` asks for, its `file://` URIs relative to `manifest_dir`.
pub fn prepare_checkpoint_evaluation(
    spec: &CheckpointEvaluationSpec,
    manifest_dir: &Path,
    work_dir: &Path,
) -> Result<CheckpointEvaluation, TrainEvaluationError> {
    let metrics = named_metrics(&format!("{FIELD}.metrics"), &spec.metrics)?;
    let uri = spec
        .dataset
        .uri
        .as_ref()
        .ok_or(TrainEvaluationError::ConfigMap)?;
    let field = "spec.checkpoints.evaluation.dataset.uri";
    let (name, path) = fetch_file(uri, manifest_dir, work_dir, field)?;
    let dataset_error = |source| TrainEvaluationError::Dataset {
        uri: uri.clone(),
        source,
    };
    let file = std::fs::File::open(&path).map_err(|e| dataset_error(SamplesError::Io(e)))?;
    let max_samples = spec.dataset.max_samples.map(|n| n as usize);
    let samples = read_eval_samples(file, max_samples).map_err(dataset_error)?;
    check_references(&format!("{FIELD}.metrics"), &metrics, &samples)?;
    let generation = &spec.generation;
    Ok(CheckpointEvaluation {
        dataset: name,
        samples,
        metrics,
        params: SamplingParams {
            max_new_tokens: generation.max_tokens as usize,
            temperature: generation.temperature as f32,
            top_p: 1.0,
            seed: generation.seed,
            stop: Vec::new(),
        },
    })
}
