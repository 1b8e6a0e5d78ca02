//! `ModelEvaluation`: compare models (a FineTuneJob's checkpoints, base models,
//! ModelDeployments, OpenAI-compatible endpoints) on a held-out set of chats, with
//! reference metrics and an LLM judge, and report which one answers best.
//! A FineTuneJob's `checkpoints.evaluation` takes the same dataset, metrics and
//! generation settings to score every checkpoint while it trains.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::common::{BaseModelSpec, ResourcesSpec};
use crate::finetunejob::{ConfigMapDataset, OutputSpec};
use crate::limits::{NAME_MAX, URI_MAX};

/// Models one evaluation compares.
pub const EVALUATED_MODELS_MAX: usize = 8;
/// Metrics one evaluation computes.
pub const METRICS_MAX: usize = 16;
/// Characters of a judge's rubric, a `contains` text or a regular expression.
pub const RUBRIC_MAX: usize = 8192;
/// Tokens an evaluated model may answer with.
pub const ANSWER_TOKENS_MAX: u32 = 8192;

/// Compare models on a held-out set.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "anneal.dev",
    version = "v1alpha1",
    kind = "ModelEvaluation",
    namespaced,
    shortname = "meval",
    category = "anneal",
    status = "ModelEvaluationStatus",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Best","type":"string","jsonPath":".status.best.model"}"#,
    printcolumn = r#"{"name":"Metric","type":"string","jsonPath":".status.best.metric"}"#,
    printcolumn = r#"{"name":"Score","type":"number","jsonPath":".status.best.score"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(
    validation = Rule::new("self.models.all(m, self.models.exists_one(n, n.name == m.name))").message("models[].name: each model needs a name of its own").field_path(".models"),
    validation = Rule::new("!has(self.baseline) || self.models.exists(m, m.name == self.baseline)").message("baseline must be the name of one of the models").field_path(".baseline"),
    validation = Rule::new("!has(self.baseline) || !self.models.exists(m, m.name == self.baseline && has(m.fineTuneJob) && m.fineTuneJob.checkpoint == 'all')").message("baseline must be one model, not every checkpoint of a job (checkpoint: all)").field_path(".baseline"),
    validation = Rule::new("self.metrics.all(m, !has(m.judge) || !has(m.judge.model.evaluatedModel) || self.models.exists(n, n.name == m.judge.model.evaluatedModel && !(has(n.fineTuneJob) && n.fineTuneJob.checkpoint == 'all')))").message("a judge's evaluatedModel must be the name of one of the models, and one model (not checkpoint: all)").field_path(".metrics"),
)]
#[serde(rename_all = "camelCase")]
pub struct ModelEvaluationSpec {
    /// What to compare, each under a name of its own.
    #[schemars(length(min = 1, max = EVALUATED_MODELS_MAX))]
    pub models: Vec<EvaluatedModel>,
    /// The held-out chats: the last assistant turn of each is the reference answer
    /// (a chat ending on a user turn has none, for metrics that need none).
    pub dataset: EvaluationDataset,
    #[schemars(length(min = 1, max = METRICS_MAX))]
    pub metrics: Vec<MetricSpec>,
    /// The model the others are compared with, pairwise by the judge and by each
    /// metric's paired difference; default the first in `models`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = NAME_MAX))]
    pub baseline: Option<String>,
    #[serde(default)]
    pub generation: GenerationSpec,
    /// Where the report goes; default the install's output location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<OutputSpec>,
    /// The evaluation pod: a GPU when it generates with weights it loads, none when
    /// every model is an endpoint.
    #[serde(default)]
    pub resources: ResourcesSpec,
}

/// One model to evaluate: exactly one of its sources.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(
    validation = Rule::new("[has(self.fineTuneJob), has(self.baseModel), has(self.modelDeployment), has(self.endpoint)].filter(x, x).size() == 1").message("set exactly one of fineTuneJob, baseModel, modelDeployment and endpoint"),
)]
#[serde(rename_all = "camelCase")]
pub struct EvaluatedModel {
    /// How reports and status call it (a letter or digit first, then also `-`, `_`, `.`).
    #[schemars(length(min = 1, max = NAME_MAX), pattern(r"^[A-Za-z0-9][A-Za-z0-9._-]*$"))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fine_tune_job: Option<EvaluatedCheckpoints>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_model: Option<BaseModelSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_deployment: Option<DeploymentModel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<EndpointModel>,
}

/// Checkpoints of a FineTuneJob in the evaluation's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct EvaluatedCheckpoints {
    #[schemars(length(min = 1, max = NAME_MAX))]
    pub name: String,
    /// `final`, `best`, a checkpoint's name, or `all` (each checkpoint a model of
    /// its own, named `{name}/{checkpoint}`).
    #[serde(default = "default_checkpoint")]
    #[schemars(length(min = 1, max = NAME_MAX))]
    pub checkpoint: String,
}

fn default_checkpoint() -> String {
    "final".to_owned()
}

/// A model a ModelDeployment in the evaluation's namespace serves, asked through
/// its endpoint.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentModel {
    #[schemars(length(min = 1, max = NAME_MAX))]
    pub name: String,
    /// The served model to ask for; default the deployment's model id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = NAME_MAX))]
    pub model: Option<String>,
}

/// Any OpenAI-compatible `/v1/chat/completions` server.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointModel {
    /// The API's base URL, ending before `/chat/completions` (e.g.
    /// `https://api.example.com/v1`).
    #[schemars(length(min = 1, max = URI_MAX), pattern(r"^https?://[^\s]+$"))]
    pub url: String,
    /// The `model` the requests name.
    #[schemars(length(min = 1, max = NAME_MAX))]
    pub model: String,
    /// A Secret in the evaluation's namespace whose key `apiKey` is sent as the bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = NAME_MAX))]
    pub credentials_secret: Option<String>,
}

/// The held-out chats: a JSONL file or a ConfigMap key.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(
    validation = Rule::new("has(self.uri) != has(self.configMap)").message("set exactly one of dataset.uri and dataset.configMap"),
)]
#[serde(rename_all = "camelCase")]
pub struct EvaluationDataset {
    /// Chat JSONL in object storage, on a claim, or (locally) a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = URI_MAX))]
    pub uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapDataset>,
    /// Evaluate the first N chats only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_samples: Option<u32>,
}

/// One metric: exactly one of its kinds.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[x_kube(
    validation = Rule::new("[has(self.exactMatch), has(self.contains), has(self.regex), has(self.rougeL), has(self.chrf), has(self.referenceLoss), has(self.judge)].filter(x, x).size() == 1").message("set exactly one of exactMatch, contains, regex, rougeL, chrf, referenceLoss and judge"),
)]
#[serde(rename_all = "camelCase")]
pub struct MetricSpec {
    /// 1 when the answer equals the reference (trimmed, whitespace runs as one space).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact_match: Option<NoSettings>,
    /// 1 when the answer contains `text`, or the reference without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contains: Option<ContainsMetric>,
    /// 1 when the regular expression matches somewhere in the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<RegexMetric>,
    /// ROUGE-L F-measure against the reference (as Google's rouge-score, no stemming).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rouge_l: Option<NoSettings>,
    /// chrF against the reference (as sacreBLEU, in [0, 1]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chrf: Option<NoSettings>,
    /// The model's loss on the reference answer's tokens, and its perplexity: for
    /// models whose weights the evaluation loads (checkpoints and base models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_loss: Option<NoSettings>,
    /// An LLM judge's score.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<JudgeMetric>,
}

/// A metric without settings (`exactMatch: {}`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
pub struct NoSettings {}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContainsMetric {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = RUBRIC_MAX))]
    pub text: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegexMetric {
    /// Rust `regex` syntax (no look-around or backreferences; matching is linear).
    #[schemars(length(min = 1, max = RUBRIC_MAX))]
    pub pattern: String,
}

/// A judge model scoring each answer by a rubric, and comparing it with the
/// baseline's answer to the same prompt, positions swapped to cancel order bias.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct JudgeMetric {
    /// The judge: one of the evaluation's models (by name) or one of its own.
    pub model: JudgeModel,
    /// What a good answer is, in the judge's words.
    #[schemars(length(min = 1, max = RUBRIC_MAX))]
    pub rubric: String,
    /// Scores run from 1 to `scale`.
    #[serde(default = "default_scale")]
    #[schemars(range(min = 2, max = 100))]
    pub scale: u32,
    /// Also ask which of two answers is better (each model against the baseline).
    #[serde(default = "default_true")]
    pub pairwise: bool,
}

fn default_scale() -> u32 {
    10
}

fn default_true() -> bool {
    true
}

/// Where the judge is: one of the models evaluated, or a model of its own.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(
    validation = Rule::new("[has(self.evaluatedModel), has(self.baseModel), has(self.modelDeployment), has(self.endpoint)].filter(x, x).size() == 1").message("set exactly one of evaluatedModel, baseModel, modelDeployment and endpoint"),
)]
#[serde(rename_all = "camelCase")]
pub struct JudgeModel {
    /// The name of one of `models`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = NAME_MAX))]
    pub evaluated_model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_model: Option<BaseModelSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_deployment: Option<DeploymentModel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<EndpointModel>,
}

/// How every evaluated model answers.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct GenerationSpec {
    /// 0 is greedy.
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 2.0))]
    pub temperature: f64,
    #[serde(default = "default_max_tokens")]
    #[schemars(range(min = 1, max = ANSWER_TOKENS_MAX))]
    pub max_tokens: u32,
    #[serde(default = "default_seed")]
    pub seed: u64,
}

fn default_max_tokens() -> u32 {
    256
}

fn default_seed() -> u64 {
    42
}

impl Default for GenerationSpec {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            max_tokens: default_max_tokens(),
            seed: default_seed(),
        }
    }
}

/// Where an evaluation is in its life.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum EvaluationPhase {
    Pending,
    Running,
    Succeeded,
    Failed,
}

/// `status` of a ModelEvaluation, written by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelEvaluationStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<EvaluationPhase>,
    /// Answers scored so far, over every model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<EvaluationProgress>,
    /// Each model's score for each metric.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub results: Vec<ModelResult>,
    /// The model with the best score for the first metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best: Option<BestModel>,
    /// The report folder: `report.json` and `report.html`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `Resolved` (every model found), `Complete`, `Failed`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct EvaluationProgress {
    pub answered: u64,
    pub total: u64,
}

/// One model's scores.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelResult {
    /// Its name in `models` (`{name}/{checkpoint}` for `checkpoint: all`).
    pub model: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<MetricScore>,
    /// Pairwise against the baseline, when the judge compares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge_pairwise: Option<PairwiseRates>,
}

/// A metric's mean over the samples with its 95% bootstrap interval.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricScore {
    /// The metric as the report names it (`regex /^Good question!/`, `rougeL`,
    /// `referenceLoss`, `judge 1-10`), and `perplexity` after `referenceLoss`.
    pub metric: String,
    pub score: f64,
    pub low: f64,
    pub high: f64,
    /// Samples the metric could not score (a judge that answered no score).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unscored: u64,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// Shares of prompts where the judge preferred the model, the baseline, or neither
/// (both orders counted).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PairwiseRates {
    pub wins: f64,
    pub ties: f64,
    pub losses: f64,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BestModel {
    pub model: String,
    pub metric: String,
    pub score: f64,
}

impl MetricSpec {
    /// The metric's name, as status and reports give it.
    pub fn name(&self) -> &'static str {
        match self {
            m if m.exact_match.is_some() => "exactMatch",
            m if m.contains.is_some() => "contains",
            m if m.regex.is_some() => "regex",
            m if m.rouge_l.is_some() => "rougeL",
            m if m.chrf.is_some() => "chrf",
            m if m.reference_loss.is_some() => "referenceLoss",
            _ => "judge",
        }
    }
}
