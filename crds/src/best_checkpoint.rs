//! Which of a run's checkpoints is best, one rule for everything that asks: the
//! trainer (which checkpoint `checkpoints.keep` spares, early stopping, the state's
//! `bestCheckpoint`), the operator (the status it trims, `checkpoint: best` of a
//! ModelDeployment and of `publish`) and `trainer evaluate` (`checkpoint: best`).
//!
//! A job with `checkpoints.evaluation` ranks its checkpoints by the first metric's
//! score: the highest, or for `referenceLoss` the lowest. Ties, common for metrics
//! that count answers (every checkpoint past the first few opening all 10 answers
//! right), go to the next metric, and so on, then to the validation loss, then to
//! the earliest. Without an evaluation, the lowest validation loss wins (of equals,
//! the earliest). Checkpoints without the deciding number (one written on a stop
//! request is not evaluated) do not compete.

use std::cmp::Ordering;

use crate::finetunejob::CheckpointStatus;

/// The label `referenceLoss` has in scores, and the perplexity reported after it:
/// the two scores where lower is better.
pub const LOWER_IS_BETTER: [&str; 2] = ["referenceLoss", "perplexity"];

/// What checkpoints are compared by.
#[derive(Clone, Debug, PartialEq)]
pub enum Ranking {
    /// The validation loss: lower is better.
    ValidLoss,
    /// The metrics of `checkpoints.evaluation`, by their labels in the scores, the
    /// first deciding.
    Metrics(Vec<String>),
}

impl Ranking {
    /// How `checkpoints` rank: by the metrics of the first evaluated one, else by
    /// validation loss.
    pub fn of(checkpoints: &[CheckpointStatus]) -> Self {
        checkpoints
            .iter()
            .find(|c| !c.evaluation.is_empty())
            .map_or(Ranking::ValidLoss, |c| {
                Ranking::Metrics(c.evaluation.iter().map(|s| s.metric.clone()).collect())
            })
    }

    /// The deciding number of `checkpoint`, lower better (a score of 0.8 is -0.8), or
    /// `None` when it does not compete.
    pub fn key(&self, checkpoint: &CheckpointStatus) -> Option<f64> {
        let key = match self {
            Ranking::ValidLoss => checkpoint.valid_loss?,
            Ranking::Metrics(metrics) => metric_key(checkpoint, metrics.first()?)?,
        };
        key.is_finite().then_some(key)
    }

    /// How `a` compares with `b` (both competing): `Less` when `a` is better.
    fn compare(&self, a: &CheckpointStatus, b: &CheckpointStatus) -> Ordering {
        let tie_breaks: &[String] = match self {
            Ranking::ValidLoss => &[],
            Ranking::Metrics(metrics) => &metrics[1..],
        };
        let missing_last =
            |key: Option<f64>| key.filter(|k| k.is_finite()).unwrap_or(f64::INFINITY);
        let by_key = missing_last(self.key(a)).total_cmp(&missing_last(self.key(b)));
        tie_breaks
            .iter()
            .fold(by_key, |order, metric| {
                order.then_with(|| {
                    missing_last(metric_key(a, metric))
                        .total_cmp(&missing_last(metric_key(b, metric)))
                })
            })
            .then_with(|| missing_last(a.valid_loss).total_cmp(&missing_last(b.valid_loss)))
    }

    /// The number as a person reads it (the score itself, not the key).
    pub fn shown(&self, key: f64) -> f64 {
        match self {
            Ranking::Metrics(metrics)
                if !metrics
                    .first()
                    .is_some_and(|m| LOWER_IS_BETTER.contains(&m.as_str())) =>
            {
                -key
            }
            _ => key,
        }
    }

    /// What decides, for messages: `the validation loss`, `the evaluation's regex /^A/`.
    pub fn describe(&self) -> String {
        match self {
            Ranking::Metrics(metrics) if !metrics.is_empty() => {
                format!("the evaluation's {}", metrics[0])
            }
            _ => "the validation loss".to_owned(),
        }
    }
}

/// `checkpoint`'s score for `metric`, lower better.
fn metric_key(checkpoint: &CheckpointStatus, metric: &str) -> Option<f64> {
    let score = checkpoint
        .evaluation
        .iter()
        .find(|s| s.metric == metric)?
        .score;
    Some(if LOWER_IS_BETTER.contains(&metric) {
        score
    } else {
        -score
    })
}

/// The best of `checkpoints` by [`Ranking::of`] them.
pub fn best_checkpoint_index(checkpoints: &[CheckpointStatus]) -> Option<usize> {
    let ranking = Ranking::of(checkpoints);
    checkpoints
        .iter()
        .enumerate()
        .filter(|(_, c)| ranking.key(c).is_some())
        .min_by(|(i, a), (j, b)| ranking.compare(a, b).then(i.cmp(j)))
        .map(|(index, _)| index)
}

/// The name of the best of `checkpoints`.
pub fn best_checkpoint_name(checkpoints: &[CheckpointStatus]) -> Option<String> {
    best_checkpoint_index(checkpoints).map(|index| checkpoints[index].name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modelevaluation::MetricScore;

    fn checkpoint(step: u64, valid_loss: Option<f64>, scores: &[(&str, f64)]) -> CheckpointStatus {
        CheckpointStatus {
            name: format!("ckpt-{step}"),
            step,
            valid_loss,
            evaluation: scores
                .iter()
                .map(|(metric, score)| MetricScore {
                    metric: (*metric).to_owned(),
                    score: *score,
                    low: *score,
                    high: *score,
                    unscored: 0,
                })
                .collect(),
            ..CheckpointStatus::default()
        }
    }

    fn best(checkpoints: &[CheckpointStatus]) -> Option<String> {
        best_checkpoint_name(checkpoints)
    }

    #[test]
    fn without_an_evaluation_the_lowest_validation_loss_wins() {
        let run = [
            checkpoint(10, Some(2.0), &[]),
            checkpoint(20, Some(1.5), &[]),
            checkpoint(30, Some(1.5), &[]),
            checkpoint(40, None, &[]),
            checkpoint(50, Some(f64::NAN), &[]),
        ];
        assert_eq!(best(&run).as_deref(), Some("ckpt-20"));
        assert_eq!(best(&run[3..]), None);
        assert_eq!(Ranking::of(&run).describe(), "the validation loss");
    }

    #[test]
    fn an_evaluation_ranks_by_its_first_metric_whatever_the_loss() {
        // ckpt-20 has the lowest loss, ckpt-30 the best house-style score.
        let run = [
            checkpoint(10, Some(2.0), &[("regex /^Good/", 0.25), ("rougeL", 0.9)]),
            checkpoint(20, Some(1.2), &[("regex /^Good/", 0.5), ("rougeL", 0.1)]),
            checkpoint(30, Some(1.4), &[("regex /^Good/", 0.75), ("rougeL", 0.2)]),
            checkpoint(40, Some(1.3), &[("regex /^Good/", 0.7), ("rougeL", 0.3)]),
            // Written on a stop request: not evaluated, does not compete.
            checkpoint(45, Some(0.1), &[]),
        ];
        assert_eq!(best(&run).as_deref(), Some("ckpt-30"));
        let ranking = Ranking::of(&run);
        assert_eq!(ranking.describe(), "the evaluation's regex /^Good/");
        assert_eq!(ranking.key(&run[2]), Some(-0.75));
        assert_eq!(ranking.shown(-0.75), 0.75);
        assert_eq!(ranking.key(&run[4]), None);
    }

    #[test]
    fn ties_go_to_the_next_metric_then_the_validation_loss_then_the_earliest() {
        let run = [
            checkpoint(
                10,
                Some(2.0),
                &[("regex /^Good/", 0.0), ("referenceLoss", 0.9)],
            ),
            checkpoint(
                20,
                Some(1.2),
                &[("regex /^Good/", 1.0), ("referenceLoss", 0.6)],
            ),
            checkpoint(
                30,
                Some(1.1),
                &[("regex /^Good/", 1.0), ("referenceLoss", 0.4)],
            ),
            checkpoint(
                40,
                Some(1.0),
                &[("regex /^Good/", 1.0), ("referenceLoss", 0.5)],
            ),
        ];
        assert_eq!(best(&run).as_deref(), Some("ckpt-30"));
        let even = [
            checkpoint(20, Some(1.2), &[("contains", 1.0)]),
            checkpoint(30, Some(1.1), &[("contains", 1.0)]),
            checkpoint(40, Some(1.1), &[("contains", 1.0)]),
            checkpoint(50, None, &[("contains", 1.0)]),
        ];
        assert_eq!(best(&even).as_deref(), Some("ckpt-30"));
    }

    #[test]
    fn reference_loss_first_means_lower_is_better() {
        let run = [
            checkpoint(
                10,
                Some(1.0),
                &[("referenceLoss", 2.5), ("perplexity", 12.2)],
            ),
            checkpoint(
                20,
                Some(2.0),
                &[("referenceLoss", 1.5), ("perplexity", 4.5)],
            ),
            checkpoint(
                30,
                Some(0.5),
                &[("referenceLoss", 1.9), ("perplexity", 6.7)],
            ),
        ];
        assert_eq!(best(&run).as_deref(), Some("ckpt-20"));
        let ranking = Ranking::of(&run);
        assert_eq!(ranking.key(&run[1]), Some(1.5));
        assert_eq!(ranking.shown(1.5), 1.5);
    }
}
