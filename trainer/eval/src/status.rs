//! The comparison as a ModelEvaluation's status carries it: each model's score per
//! metric with its interval, its pairwise rates against the baseline, and the best
//! model. `trainer evaluate` writes it as `status.json` beside the report, a few
//! hundred bytes the operator copies into the status without reading every answer.

use anneal_crds::modelevaluation::{BestModel, MetricScore, ModelResult, PairwiseRates};
use serde::Serialize;

use crate::report::Report;

/// `results` and `best` of the status.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EvaluationResults {
    pub results: Vec<ModelResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub best: Option<BestModel>,
}

/// The report's comparison as status fields. A metric no sample of a model could be
/// scored on (every judge reply unreadable) has no mean and is left out for that
/// model; the report says why.
pub fn evaluation_results(report: &Report) -> EvaluationResults {
    let results = report
        .models
        .iter()
        .map(|model| ModelResult {
            model: model.model.clone(),
            metrics: model
                .scores
                .iter()
                .filter(|s| s.score.mean.is_finite())
                .flat_map(|s| {
                    let score = MetricScore {
                        metric: s.metric.clone(),
                        score: s.score.mean,
                        low: s.score.low,
                        high: s.score.high,
                        unscored: s.unscored,
                    };
                    let perplexity = s.perplexity.map(|p| MetricScore {
                        metric: "perplexity".to_owned(),
                        score: p.mean,
                        low: p.low,
                        high: p.high,
                        unscored: s.unscored,
                    });
                    std::iter::once(score).chain(perplexity)
                })
                .collect(),
            judge_pairwise: model
                .scores
                .iter()
                .find_map(|s| s.pairwise)
                .filter(|p| p.wins.is_finite())
                .map(|p| PairwiseRates {
                    wins: p.wins,
                    ties: p.ties,
                    losses: p.losses,
                }),
        })
        .collect();
    let best = report
        .models
        .iter()
        .find(|m| m.model == report.best)
        .map(|m| BestModel {
            model: m.model.clone(),
            metric: m.scores[0].metric.clone(),
            score: m.scores[0].score.mean,
        });
    EvaluationResults { results, best }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootstrap::Interval;
    use crate::judge::PairwiseSummary;
    use crate::report::{MetricSummary, ModelSummary};

    fn summary(metric: &str, mean: f64) -> MetricSummary {
        MetricSummary {
            metric: metric.into(),
            score: Interval {
                mean,
                low: mean - 1.0,
                high: mean + 1.0,
            },
            unscored: 0,
            perplexity: None,
            vs_baseline: None,
            pairwise: None,
        }
    }

    #[test]
    fn the_status_carries_each_score_the_pairwise_rates_and_the_best() {
        let mut judge = summary("judge 1-10", 8.0);
        judge.unscored = 2;
        judge.pairwise = Some(PairwiseSummary {
            wins: 0.5,
            ties: 0.25,
            losses: 0.25,
            unscored: 2,
        });
        let mut loss = summary("referenceLoss", 1.0);
        loss.perplexity = Some(Interval {
            mean: 1f64.exp(),
            low: 1.0,
            high: 2f64.exp(),
        });
        let report = Report {
            baseline: "base".into(),
            metrics: vec!["judge 1-10".into(), "referenceLoss".into()],
            models: vec![
                ModelSummary {
                    model: "base".into(),
                    scores: vec![
                        summary("judge 1-10", f64::NAN),
                        summary("referenceLoss", 2.0),
                    ],
                },
                ModelSummary {
                    model: "tuned".into(),
                    scores: vec![judge, loss],
                },
            ],
            best: "tuned".into(),
            samples: Vec::new(),
        };
        let status = evaluation_results(&report);
        // The base model's judge mean is NaN (nothing scored): left out.
        assert_eq!(status.results[0].metrics.len(), 1);
        assert_eq!(status.results[0].judge_pairwise, None);
        let tuned = &status.results[1];
        let names: Vec<&str> = tuned.metrics.iter().map(|m| m.metric.as_str()).collect();
        assert_eq!(names, ["judge 1-10", "referenceLoss", "perplexity"]);
        assert_eq!(
            (tuned.metrics[0].score, tuned.metrics[0].unscored),
            (8.0, 2)
        );
        assert_eq!(tuned.metrics[2].score, 1f64.exp());
        assert_eq!(
            tuned.judge_pairwise,
            Some(PairwiseRates {
                wins: 0.5,
                ties: 0.25,
                losses: 0.25
            })
        );
        assert_eq!(
            status.best,
            Some(BestModel {
                model: "tuned".into(),
                metric: "judge 1-10".into(),
                score: 8.0
            })
        );
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["results"][1]["judgePairwise"]["wins"], 0.5);
    }
}
