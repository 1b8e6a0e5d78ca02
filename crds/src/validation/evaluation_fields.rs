//! The rules of a ModelEvaluation (and of a FineTuneJob's `checkpoints.evaluation`,
//! which shares its dataset, metrics and generation settings), as the CRD's schema
//! and CEL rules state them,
//! checked without an API server (`trainer evaluate` locally, the operator again),
//! plus what CEL cannot say: a regular expression that does not compile, and a
//! baseline or judge that is a whole job's checkpoints.

use super::{FieldErrors, check_base_model, check_object_names};
use crate::finetunejob::CheckpointEvaluationSpec;
use crate::limits::{NAME_MAX, URI_MAX};
use crate::modelevaluation::{
    ANSWER_TOKENS_MAX, EVALUATED_MODELS_MAX, EndpointModel, EvaluatedModel, EvaluationDataset,
    GenerationSpec, JudgeModel, METRICS_MAX, MetricSpec, ModelEvaluation, ModelEvaluationSpec,
    RUBRIC_MAX,
};

/// Checks a ModelEvaluation: its name and its spec.
pub fn validate_modelevaluation(evaluation: &ModelEvaluation) -> Result<(), super::FieldErrors> {
    let mut errors = FieldErrors::default();
    check_object_names(&mut errors, &evaluation.metadata);
    check_spec(&mut errors, &evaluation.spec);
    errors.into_result()
}

fn check_spec(e: &mut FieldErrors, spec: &ModelEvaluationSpec) {
    if spec.models.is_empty() || spec.models.len() > EVALUATED_MODELS_MAX {
        e.push(
            "spec.models",
            format!(
                "must list 1 to {EVALUATED_MODELS_MAX} models, got {}",
                spec.models.len()
            ),
        );
    }
    for (index, model) in spec.models.iter().enumerate() {
        check_model(e, &format!("spec.models[{index}]"), model);
        if spec.models[..index].iter().any(|m| m.name == model.name) {
            e.push(
                format!("spec.models[{index}].name"),
                format!(
                    "{:?} names an earlier model too; each model needs a name of its own",
                    model.name
                ),
            );
        }
    }
    let baseline = spec
        .baseline
        .as_deref()
        .or(spec.models.first().map(|m| m.name.as_str()));
    if let Some(name) = baseline {
        match spec.models.iter().find(|m| m.name == name) {
            None => e.push(
                "spec.baseline",
                format!("{name:?} is not the name of one of the models"),
            ),
            Some(model) if expands(model) => e.push(
                "spec.baseline",
                format!("{name:?} is every checkpoint of a job (checkpoint: all); the baseline must be one model"),
            ),
            Some(_) => {}
        }
    }
    check_dataset(e, "spec.dataset", &spec.dataset);
    check_metric_count(e, "spec.metrics", &spec.metrics);
    for (index, metric) in spec.metrics.iter().enumerate() {
        check_metric(e, &format!("spec.metrics[{index}]"), metric, &spec.models);
    }
    check_generation(e, "spec.generation", &spec.generation);
}

/// `spec.checkpoints.evaluation` of a FineTuneJob: a ModelEvaluation's dataset,
/// metrics and generation settings, without a judge (it would need a model of its
/// own beside the one training).
pub(super) fn check_checkpoint_evaluation(
    e: &mut FieldErrors,
    path: &str,
    evaluation: &CheckpointEvaluationSpec,
) {
    check_dataset(e, &format!("{path}.dataset"), &evaluation.dataset);
    check_metric_count(e, &format!("{path}.metrics"), &evaluation.metrics);
    for (index, metric) in evaluation.metrics.iter().enumerate() {
        let path = format!("{path}.metrics[{index}]");
        if metric.judge.is_some() {
            e.push(
                format!("{path}.judge"),
                "a judge scores in a ModelEvaluation (fineTuneJob checkpoint: all), not at every checkpoint",
            );
            continue;
        }
        check_metric(e, &path, metric, &[]);
    }
    check_generation(e, &format!("{path}.generation"), &evaluation.generation);
}

fn check_dataset(e: &mut FieldErrors, path: &str, dataset: &EvaluationDataset) {
    match (&dataset.uri, &dataset.config_map) {
        (Some(uri), None) => e.length(&format!("{path}.uri"), uri, URI_MAX),
        (None, Some(config_map)) => {
            e.length(
                &format!("{path}.configMap.name"),
                &config_map.name,
                NAME_MAX,
            );
            e.length(&format!("{path}.configMap.key"), &config_map.key, NAME_MAX);
        }
        _ => e.push(path, "set exactly one of dataset.uri and dataset.configMap"),
    }
    e.range(
        &format!("{path}.maxSamples"),
        dataset.max_samples,
        (1, u32::MAX),
    );
}

fn check_metric_count(e: &mut FieldErrors, path: &str, metrics: &[MetricSpec]) {
    if metrics.is_empty() || metrics.len() > METRICS_MAX {
        e.push(
            path,
            format!(
                "must list 1 to {METRICS_MAX} metrics, got {}",
                metrics.len()
            ),
        );
    }
}

fn check_generation(e: &mut FieldErrors, path: &str, generation: &GenerationSpec) {
    e.range(
        &format!("{path}.temperature"),
        Some(generation.temperature),
        (0.0, 2.0),
    );
    e.range(
        &format!("{path}.maxTokens"),
        Some(generation.max_tokens),
        (1, ANSWER_TOKENS_MAX),
    );
}

/// Whether the model stands for several (a job's every checkpoint).
fn expands(model: &EvaluatedModel) -> bool {
    model
        .fine_tune_job
        .as_ref()
        .is_some_and(|job| job.checkpoint == "all")
}

fn check_model(e: &mut FieldErrors, path: &str, model: &EvaluatedModel) {
    e.length(&format!("{path}.name"), &model.name, NAME_MAX);
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    let well_formed = model.name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && model.name.chars().all(allowed);
    if !model.name.is_empty() && !well_formed {
        e.push(
            format!("{path}.name"),
            format!(
                "{:?}: letters, digits, '.', '_' and '-', starting with a letter or digit",
                model.name
            ),
        );
    }
    let sources = [
        model.fine_tune_job.is_some(),
        model.base_model.is_some(),
        model.model_deployment.is_some(),
        model.endpoint.is_some(),
    ];
    if sources.iter().filter(|set| **set).count() != 1 {
        e.push(
            path,
            "set exactly one of fineTuneJob, baseModel, modelDeployment and endpoint",
        );
    }
    if let Some(job) = &model.fine_tune_job {
        e.length(&format!("{path}.fineTuneJob.name"), &job.name, NAME_MAX);
        e.length(
            &format!("{path}.fineTuneJob.checkpoint"),
            &job.checkpoint,
            NAME_MAX,
        );
    }
    if let Some(base) = &model.base_model {
        check_base_model(e, &format!("{path}.baseModel"), base);
    }
    if let Some(deployment) = &model.model_deployment {
        e.length(
            &format!("{path}.modelDeployment.name"),
            &deployment.name,
            NAME_MAX,
        );
    }
    if let Some(endpoint) = &model.endpoint {
        check_endpoint(e, &format!("{path}.endpoint"), endpoint);
    }
}

fn check_endpoint(e: &mut FieldErrors, path: &str, endpoint: &EndpointModel) {
    e.length(&format!("{path}.url"), &endpoint.url, URI_MAX);
    let web = endpoint.url.starts_with("https://") || endpoint.url.starts_with("http://");
    if !web || endpoint.url.contains(char::is_whitespace) {
        e.push(
            format!("{path}.url"),
            format!("must be an http:// or https:// URL, got {:?}", endpoint.url),
        );
    }
    e.length(&format!("{path}.model"), &endpoint.model, NAME_MAX);
}

/// One metric; a judge that names an evaluated model must name one of `models`.
fn check_metric(e: &mut FieldErrors, path: &str, metric: &MetricSpec, models: &[EvaluatedModel]) {
    let kinds = [
        metric.exact_match.is_some(),
        metric.contains.is_some(),
        metric.regex.is_some(),
        metric.rouge_l.is_some(),
        metric.chrf.is_some(),
        metric.reference_loss.is_some(),
        metric.judge.is_some(),
    ];
    if kinds.iter().filter(|set| **set).count() != 1 {
        e.push(
            path,
            "set exactly one of exactMatch, contains, regex, rougeL, chrf, referenceLoss and judge",
        );
        return;
    }
    if let Some(text) = metric.contains.as_ref().and_then(|c| c.text.as_deref()) {
        e.length(&format!("{path}.contains.text"), text, RUBRIC_MAX);
    }
    if let Some(regex) = &metric.regex {
        let field = format!("{path}.regex.pattern");
        e.length(&field, &regex.pattern, RUBRIC_MAX);
        if let Err(error) = regex::Regex::new(&regex.pattern) {
            // The parser's message spans lines; its last line says what is wrong.
            let why = error.to_string();
            let why = why.lines().last().unwrap_or_default().trim();
            let why = why.strip_prefix("error: ").unwrap_or(why).to_owned();
            e.push(field, format!("is not a regular expression: {why}"));
        }
    }
    if let Some(judge) = &metric.judge {
        e.length(&format!("{path}.judge.rubric"), &judge.rubric, RUBRIC_MAX);
        e.range(&format!("{path}.judge.scale"), Some(judge.scale), (2, 100));
        check_judge_model(e, &format!("{path}.judge.model"), &judge.model, models);
    }
}

fn check_judge_model(
    e: &mut FieldErrors,
    path: &str,
    judge: &JudgeModel,
    models: &[EvaluatedModel],
) {
    let sources = [
        judge.evaluated_model.is_some(),
        judge.base_model.is_some(),
        judge.model_deployment.is_some(),
        judge.endpoint.is_some(),
    ];
    if sources.iter().filter(|set| **set).count() != 1 {
        e.push(
            path,
            "set exactly one of evaluatedModel, baseModel, modelDeployment and endpoint",
        );
    }
    if let Some(name) = &judge.evaluated_model {
        match models.iter().find(|m| &m.name == name) {
            None => e.push(
                format!("{path}.evaluatedModel"),
                format!("{name:?} is not the name of one of the models"),
            ),
            Some(model) if expands(model) => e.push(
                format!("{path}.evaluatedModel"),
                format!("{name:?} is every checkpoint of a job (checkpoint: all); the judge must be one model"),
            ),
            Some(_) => {}
        }
    }
    if let Some(base) = &judge.base_model {
        check_base_model(e, &format!("{path}.baseModel"), base);
    }
    if let Some(deployment) = &judge.model_deployment {
        e.length(
            &format!("{path}.modelDeployment.name"),
            &deployment.name,
            NAME_MAX,
        );
    }
    if let Some(endpoint) = &judge.endpoint {
        check_endpoint(e, &format!("{path}.endpoint"), endpoint);
    }
}
