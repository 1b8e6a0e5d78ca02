//! Every model's answers scored into one comparison: per model and metric the mean
//! with its bootstrap interval and, against the baseline, the interval of the paired
//! difference; per sample the prompt, the reference and each model's answer with its
//! scores and the judge's replies (the report's JSON); and the comparison as a table
//! for a terminal.
//!
//! A score may be missing: a judge's reply that could not be read leaves its sample
//! unscored for that model. Means and intervals are over the scored samples, paired
//! differences over the samples both models have, and the count of unscored samples
//! is reported beside them.

use anneal_crds::dataset::ChatMessage;
use serde::Serialize;

use crate::bootstrap::{Interval, RESAMPLES, bootstrap_difference, bootstrap_mean};
use crate::judge::{Outcome, PairwiseSummary, pairwise_summary};
use crate::metrics::{Metric, MissingReference};
use crate::samples::EvalSample;

/// The confidence of every interval.
pub const CONFIDENCE: f64 = 0.95;

/// One model's answers, one per sample, in the samples' order.
pub struct ModelAnswers {
    pub model: String,
    pub answers: Vec<String>,
    /// Its mean loss per token of each sample's reference answer, where it was
    /// computed (a model whose weights were loaded).
    pub reference_losses: Option<Vec<f64>>,
    /// What each judge metric made of its answers, in the order of the judge metrics.
    pub judged: Vec<Judged>,
}

/// One judge's verdicts on one model's answers, one per sample.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Judged {
    /// The score read from each reply (1 to the scale), `None` where unreadable.
    pub scores: Vec<Option<f64>>,
    pub replies: Vec<String>,
    /// Against the baseline, both orders asked (none for the baseline itself, or
    /// without `pairwise`): the outcome and the two replies, the model's answer first
    /// then second.
    pub pairwise: Option<Vec<(Option<Outcome>, [String; 2])>>,
}

/// How a metric scores a sample: the answer's text against the reference, the
/// model's loss on the reference (lower is better), or a judge's score
/// (`ModelAnswers::judged[judged]`).
pub enum Scorer {
    Text(Metric),
    ReferenceLoss,
    Judge { judged: usize },
}

/// A metric as the report names it (`contains "In short:"`) and computes it.
pub struct NamedMetric {
    pub label: String,
    pub scorer: Scorer,
}

/// Why the answers could not be scored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    #[error("dataset line {line}: {source}")]
    MissingReference {
        line: u64,
        #[source]
        source: MissingReference,
    },
    #[error(
        "referenceLoss: model {model} has no loss on the references (its weights were not loaded)"
    )]
    NoReferenceLoss { model: String },
}

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub baseline: String,
    pub metrics: Vec<String>,
    pub models: Vec<ModelSummary>,
    /// The model with the best score for the first metric (the highest, or for
    /// `referenceLoss` the lowest).
    pub best: String,
    pub samples: Vec<SampleRecord>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ModelSummary {
    pub model: String,
    pub scores: Vec<MetricSummary>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MetricSummary {
    pub metric: String,
    /// Over the scored samples; NaN (`null` in JSON) when none was.
    pub score: Interval,
    /// Samples left unscored (a judge's reply that could not be read).
    #[serde(skip_serializing_if = "is_zero")]
    pub unscored: u64,
    /// For `referenceLoss`: `exp` of the score and its bounds, the per-token perplexity
    /// of the references.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub perplexity: Option<Interval>,
    /// This model's score minus the baseline's, paired by sample; none for the baseline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vs_baseline: Option<Interval>,
    /// For a pairwise judge: wins, ties and losses against the baseline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pairwise: Option<PairwiseSummary>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SampleRecord {
    pub line: u64,
    pub prompt: Vec<ChatMessage>,
    pub reference: Option<String>,
    pub answers: Vec<AnswerRecord>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AnswerRecord {
    pub model: String,
    pub answer: String,
    /// One per metric, in the report's order; `null` where unscored.
    pub scores: Vec<Option<f64>>,
    /// Each judge metric's replies about this answer.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub judge: Vec<JudgeRecord>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JudgeRecord {
    pub metric: String,
    pub reply: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pairwise: Option<PairwiseRecord>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PairwiseRecord {
    /// `None` when either reply could not be read.
    pub outcome: Option<Outcome>,
    /// The judge's reply with this model's answer as A, then as B.
    pub replies: [String; 2],
}

/// One metric's scores of one model's answers, one per sample.
fn score_column(
    samples: &[EvalSample],
    model: &ModelAnswers,
    scorer: &Scorer,
) -> Result<Vec<Option<f64>>, ReportError> {
    match scorer {
        Scorer::Text(metric) => samples
            .iter()
            .zip(&model.answers)
            .map(|(sample, answer)| {
                metric
                    .score(answer, sample.reference.as_deref())
                    .map(Some)
                    .map_err(|source| ReportError::MissingReference {
                        line: sample.line,
                        source,
                    })
            })
            .collect(),
        Scorer::ReferenceLoss => model
            .reference_losses
            .as_ref()
            .map(|losses| losses.iter().copied().map(Some).collect())
            .ok_or_else(|| ReportError::NoReferenceLoss {
                model: model.model.clone(),
            }),
        Scorer::Judge { judged } => Ok(model.judged[*judged].scores.clone()),
    }
}

/// The mean and interval of the scored entries of `column`, and how many were not.
fn summarize(column: &[Option<f64>], seed: u64) -> (Interval, u64) {
    let scored: Vec<f64> = column.iter().flatten().copied().collect();
    let unscored = (column.len() - scored.len()) as u64;
    let score = bootstrap_mean(&scored, RESAMPLES, CONFIDENCE, seed).unwrap_or(Interval {
        mean: f64::NAN,
        low: f64::NAN,
        high: f64::NAN,
    });
    (score, unscored)
}

/// `a - b` over the samples both scored.
fn paired_difference(a: &[Option<f64>], b: &[Option<f64>], seed: u64) -> Option<Interval> {
    let (a, b): (Vec<f64>, Vec<f64>) = a
        .iter()
        .zip(b)
        .filter_map(|(a, b)| Some(((*a)?, (*b)?)))
        .unzip();
    bootstrap_difference(&a, &b, RESAMPLES, CONFIDENCE, seed)
}

/// Scores every model's answers to `samples` with `metrics`; intervals are drawn
/// with `seed`. `baseline` must be one of the models.
pub fn build_report(
    samples: &[EvalSample],
    answers: &[ModelAnswers],
    metrics: &[NamedMetric],
    baseline: &str,
    seed: u64,
) -> Result<Report, ReportError> {
    // scores[model][metric][sample]
    let mut scores: Vec<Vec<Vec<Option<f64>>>> = Vec::with_capacity(answers.len());
    for model in answers {
        assert_eq!(
            model.answers.len(),
            samples.len(),
            "{}: one answer a sample",
            model.model
        );
        let columns = metrics
            .iter()
            .map(|named| score_column(samples, model, &named.scorer))
            .collect::<Result<Vec<_>, _>>()?;
        scores.push(columns);
    }
    let base = answers
        .iter()
        .position(|m| m.model == baseline)
        .expect("the baseline is one of the models");
    let models: Vec<ModelSummary> = answers
        .iter()
        .enumerate()
        .map(|(m, model)| ModelSummary {
            model: model.model.clone(),
            scores: metrics
                .iter()
                .enumerate()
                .map(|(k, named)| {
                    let (score, unscored) = summarize(&scores[m][k], seed);
                    let pairwise = match named.scorer {
                        Scorer::Judge { judged } => {
                            model.judged[judged].pairwise.as_ref().map(|pairs| {
                                let outcomes: Vec<_> = pairs.iter().map(|(o, _)| *o).collect();
                                pairwise_summary(&outcomes)
                            })
                        }
                        _ => None,
                    };
                    MetricSummary {
                        metric: named.label.clone(),
                        perplexity: matches!(named.scorer, Scorer::ReferenceLoss).then(|| {
                            Interval {
                                mean: score.mean.exp(),
                                low: score.low.exp(),
                                high: score.high.exp(),
                            }
                        }),
                        score,
                        unscored,
                        vs_baseline: (m != base)
                            .then(|| paired_difference(&scores[m][k], &scores[base][k], seed))
                            .flatten(),
                        pairwise,
                    }
                })
                .collect(),
        })
        .collect();
    let lower_is_better = matches!(metrics[0].scorer, Scorer::ReferenceLoss);
    let best = models
        .iter()
        .filter(|m| !m.scores[0].score.mean.is_nan())
        .max_by(|a, b| {
            let order = a.scores[0].score.mean.total_cmp(&b.scores[0].score.mean);
            if lower_is_better {
                order.reverse()
            } else {
                order
            }
        })
        .map(|m| m.model.clone())
        .unwrap_or_default();
    let records = samples
        .iter()
        .enumerate()
        .map(|(i, sample)| SampleRecord {
            line: sample.line,
            prompt: sample.prompt.clone(),
            reference: sample.reference.clone(),
            answers: answers
                .iter()
                .enumerate()
                .map(|(m, model)| AnswerRecord {
                    model: model.model.clone(),
                    answer: model.answers[i].clone(),
                    scores: (0..metrics.len()).map(|k| scores[m][k][i]).collect(),
                    judge: judge_records(metrics, model, i),
                })
                .collect(),
        })
        .collect();
    Ok(Report {
        baseline: baseline.to_owned(),
        metrics: metrics.iter().map(|m| m.label.clone()).collect(),
        models,
        best,
        samples: records,
    })
}

/// Every judge metric's replies about `model`'s answer to sample `i`.
fn judge_records(metrics: &[NamedMetric], model: &ModelAnswers, i: usize) -> Vec<JudgeRecord> {
    metrics
        .iter()
        .filter_map(|named| match named.scorer {
            Scorer::Judge { judged } => Some((named, &model.judged[judged])),
            _ => None,
        })
        .map(|(named, judged)| JudgeRecord {
            metric: named.label.clone(),
            reply: judged.replies[i].clone(),
            pairwise: judged.pairwise.as_ref().map(|pairs| PairwiseRecord {
                outcome: pairs[i].0,
                replies: pairs[i].1.clone(),
            }),
        })
        .collect()
}

/// The comparison as a plain-text table: a row per model, a column per metric, each
/// cell the score and its 95% interval, and for the other models the difference
/// from the baseline.
pub fn comparison_table(report: &Report) -> String {
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut header = vec!["model".to_owned()];
    header.extend(report.metrics.iter().cloned());
    rows.push(header);
    for model in &report.models {
        let mut row = vec![if model.model == report.baseline {
            format!("{} (baseline)", model.model)
        } else {
            model.model.clone()
        }];
        for score in &model.scores {
            let s = score.score;
            let mut cell = format!("{:.3} [{:.3}, {:.3}]", s.mean, s.low, s.high);
            if let Some(d) = score.vs_baseline {
                cell.push_str(&format!(" {:+.3} [{:+.3}, {:+.3}]", d.mean, d.low, d.high));
            }
            if let Some(p) = score.pairwise {
                cell.push_str(&format!(
                    " win/tie/loss {:.2}/{:.2}/{:.2}",
                    p.wins, p.ties, p.losses
                ));
            }
            if score.unscored > 0 {
                cell.push_str(&format!(" ({} unscored)", score.unscored));
            }
            row.push(cell);
        }
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use anneal_crds::dataset::Role;

    fn sample(line: u64, reference: &str) -> EvalSample {
        EvalSample {
            line,
            prompt: vec![ChatMessage {
                role: Role::User,
                content: format!("question {line}"),
            }],
            reference: Some(reference.to_owned()),
        }
    }

    #[test]
    fn each_model_is_scored_against_the_baseline_on_the_same_samples() {
        let samples: Vec<EvalSample> = (1..=4).map(|i| sample(i, &format!("answer {i}"))).collect();
        let answers = vec![
            ModelAnswers {
                model: "base".into(),
                answers: vec!["answer 1".into(), "no".into(), "no".into(), "no".into()],
                reference_losses: None,
                judged: Vec::new(),
            },
            ModelAnswers {
                model: "tuned".into(),
                answers: vec![
                    "answer 1".into(),
                    "answer 2".into(),
                    "answer 3".into(),
                    "no".into(),
                ],
                reference_losses: None,
                judged: Vec::new(),
            },
        ];
        let metrics = vec![NamedMetric {
            label: "exactMatch".into(),
            scorer: Scorer::Text(Metric::ExactMatch),
        }];
        let report = build_report(&samples, &answers, &metrics, "base", 1).unwrap();
        assert_eq!(report.best, "tuned");
        assert_eq!(report.models[0].scores[0].score.mean, 0.25);
        assert_eq!(report.models[0].scores[0].vs_baseline, None);
        let tuned = &report.models[1].scores[0];
        assert_eq!(tuned.score.mean, 0.75);
        assert_eq!(tuned.vs_baseline.unwrap().mean, 0.5);
        assert_eq!(report.samples[1].answers[1].scores, vec![Some(1.0)]);
        assert_eq!(report.samples[1].answers[0].scores, vec![Some(0.0)]);

        let table = comparison_table(&report);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert!(
            lines[0].starts_with("model") && lines[0].ends_with("exactMatch"),
            "{table}"
        );
        assert!(lines[1].starts_with("base (baseline)  0.250 ["), "{table}");
        assert!(
            lines[2].starts_with("tuned")
                && lines[2].contains("0.750 [")
                && lines[2].contains(" +0.500 ["),
            "{table}"
        );
        // The JSON names every field in camelCase.
        let json = serde_json::to_value(&report).unwrap();
        assert!(json["models"][1]["scores"][0]["vsBaseline"]["mean"].is_number());
    }

    #[test]
    fn reference_loss_is_better_lower_and_gives_a_perplexity() {
        let samples: Vec<EvalSample> = (1..=3).map(|i| sample(i, "x")).collect();
        let model = |name: &str, loss: Option<f64>| ModelAnswers {
            model: name.into(),
            answers: vec!["x".into(); 3],
            reference_losses: loss.map(|l| vec![l; 3]),
            judged: Vec::new(),
        };
        let metrics = vec![NamedMetric {
            label: "referenceLoss".into(),
            scorer: Scorer::ReferenceLoss,
        }];
        let answers = [model("base", Some(2.0)), model("tuned", Some(0.5))];
        let report = build_report(&samples, &answers, &metrics, "base", 1).unwrap();
        assert_eq!(report.best, "tuned");
        let tuned = &report.models[1].scores[0];
        assert_eq!(tuned.score.mean, 0.5);
        assert_eq!(tuned.perplexity.unwrap().mean, 0.5f64.exp());
        assert_eq!(tuned.vs_baseline.unwrap().mean, -1.5);
        let served = [model("base", Some(2.0)), model("hosted", None)];
        assert_eq!(
            build_report(&samples, &served, &metrics, "base", 1).unwrap_err(),
            ReportError::NoReferenceLoss {
                model: "hosted".into()
            }
        );
    }

    #[test]
    fn unscored_samples_leave_the_mean_and_the_paired_difference() {
        let samples: Vec<EvalSample> = (1..=4).map(|i| sample(i, "x")).collect();
        let judged = |scores: [Option<f64>; 4]| ModelAnswers {
            model: String::new(),
            answers: vec!["x".into(); 4],
            reference_losses: None,
            judged: vec![Judged {
                scores: scores.to_vec(),
                replies: vec![String::new(); 4],
                pairwise: None,
            }],
        };
        let mut base = judged([Some(2.0), Some(4.0), None, Some(2.0)]);
        base.model = "base".into();
        let mut tuned = judged([Some(8.0), None, Some(9.0), Some(6.0)]);
        tuned.model = "tuned".into();
        let metrics = [NamedMetric {
            label: "judge 1-10".into(),
            scorer: Scorer::Judge { judged: 0 },
        }];
        let report = build_report(&samples, &[base, tuned], &metrics, "base", 1).unwrap();
        let (base, tuned) = (&report.models[0].scores[0], &report.models[1].scores[0]);
        assert_eq!((base.score.mean, base.unscored), (8.0 / 3.0, 1));
        assert_eq!((tuned.score.mean, tuned.unscored), (23.0 / 3.0, 1));
        // Paired on samples 1 and 4 only, the two both have: (6 + 4) / 2.
        assert_eq!(tuned.vs_baseline.unwrap().mean, 5.0);
        assert_eq!(report.samples[2].answers[0].scores, vec![None]);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["models"][0]["scores"][0]["unscored"], 1);
        assert!(json["samples"][1]["answers"][1]["scores"][0].is_null());
    }
}
