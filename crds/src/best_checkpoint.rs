//! Which of a run's checkpoints is best, one rule for everything that asks: the
//! trainer (which checkpoint `checkpoints.keep` spares, early stopping, the state's
//! `bestCheckpoint`), the operator (the status it trims, `checkpoint: best` of a
//! ModelDeployment and of `publish`) and `trainer evaluate` (`checkpoint: best`).
//!
//! A job with `checkpoints.evaluation` ranks its checkpoints by the first metric's
//! score: the highest, or for `referenceLoss` the lowest. Without it, by the lowest
//! validation loss. Checkpoints without that number (one written on a stop request is
//! not evaluated) do not compete; of equals, the earliest wins.

use crate::finetunejob::CheckpointStatus;

/// The label `referenceLoss` has in scores, and the perplexity reported after it:
/// the two scores where lower is better.
pub const LOWER_IS_BETTER: [&str; 2] = ["referenceLoss", "perplexity"];

/// What checkpoints are compared by.
#[derive(Clone, Debug, PartialEq)]
pub enum Ranking {
    /// The validation loss: lower is better.
    ValidLoss,
    /// A metric of `checkpoints.evaluation`, by its label in the scores.
    Metric(String),
}

impl Ranking {
    /// How `checkpoints` rank: by the first metric of the first evaluated one, else by
    /// validation loss.
    pub fn of(checkpoints: &[CheckpointStatus]) -> Self {
        checkpoints
            .iter()
            .find_map(|c| c.evaluation.first())
            .map_or(Ranking::ValidLoss, |score| {
                Ranking::Metric(score.metric.clone())
            })
    }

    /// A number for `checkpoint` where lower is better, or `None` when it does not
    /// compete (no such score, or one that is not finite).
    pub fn key(&self, checkpoint: &CheckpointStatus) -> Option<f64> {
        let key = match self {
            Ranking::ValidLoss => checkpoint.valid_loss?,
            Ranking::Metric(metric) => {
                let score = checkpoint.evaluation.first().filter(|s| &s.metric == metric)?;
                if LOWER_IS_BETTER.contains(&metric.as_str()) {
                    score.score
                } else {
                    -score.score
                }
            }
        };
        key.is_finite().then_some(key)
    }

    /// The number as a person reads it (the score itself, not the key).
    pub fn shown(&self, key: f64) -> f64 {
        match self {
            Ranking::Metric(metric) if !LOWER_IS_BETTER.contains(&metric.as_str()) => -key,
            _ => key,
        }
    }

    /// What it compares, for messages: `the validation loss`, `regex /^A/`.
    pub fn describe(&self) -> String {
        match self {
            Ranking::ValidLoss => "the validation loss".to_owned(),
            Ranking::Metric(metric) => format!("the evaluation's {metric}"),
        }
    }
}

/// The best of `checkpoints` by [`Ranking::of`] them.
pub fn best_checkpoint_index(checkpoints: &[CheckpointStatus]) -> Option<usize> {
    let ranking = Ranking::of(checkpoints);
    checkpoints
        .iter()
        .enumerate()
        .filter_map(|(index, c)| ranking.key(c).map(|key| (index, key)))
        .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)))
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
            checkpoint(40, Some(1.3), &[("regex /^Good/", 0.75), ("rougeL", 0.3)]),
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
    fn reference_loss_first_means_lower_is_better() {
        let run = [
            checkpoint(10, Some(1.0), &[("referenceLoss", 2.5), ("perplexity", 12.2)]),
            checkpoint(20, Some(2.0), &[("referenceLoss", 1.5), ("perplexity", 4.5)]),
            checkpoint(30, Some(0.5), &[("referenceLoss", 1.9), ("perplexity", 6.7)]),
        ];
        assert_eq!(best(&run).as_deref(), Some("ckpt-20"));
        let ranking = Ranking::of(&run);
        assert_eq!(ranking.key(&run[1]), Some(1.5));
        assert_eq!(ranking.shown(1.5), 1.5);
    }
}
