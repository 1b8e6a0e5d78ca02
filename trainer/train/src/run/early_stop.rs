//! Early stopping (`checkpoints.earlyStopping`): a run whose checkpoints have not made
//! a new best for `patience` evaluations in a row ends there, and its result is the
//! best checkpoint. Best as everywhere else (`anneal_crds::best_checkpoint`): by the
//! first metric of `checkpoints.evaluation` where the job has one, else by the
//! validation loss; a new best must beat the best so far by more than `minDelta`.
//! Judged from the checkpoints the state records (pruned ones included), so a resumed
//! run counts the evaluations before the resume.

use anneal_crds::best_checkpoint::{Ranking, best_checkpoint_index};
use anneal_crds::finetunejob::{CheckpointStatus, EarlyStoppingSpec};

/// Why the run stops, and the checkpoint it ends on.
#[derive(Clone, Debug, PartialEq)]
pub struct EarlyStop {
    pub reason: String,
    pub best: CheckpointStatus,
}

/// Whether the evaluations so far (`checkpoints`, oldest first) end the run.
pub fn early_stop(checkpoints: &[CheckpointStatus], spec: &EarlyStoppingSpec) -> Option<EarlyStop> {
    let ranking = Ranking::of(checkpoints);
    // Keys are lower-is-better: a score of 0.8 is the key -0.8.
    let mut best: Option<(&CheckpointStatus, f64)> = None;
    let mut without_new_best = 0u32;
    for checkpoint in checkpoints {
        let Some(key) = ranking.key(checkpoint) else {
            continue;
        };
        match best {
            Some((_, best_key)) if key >= best_key - spec.min_delta => without_new_best += 1,
            _ => {
                best = Some((checkpoint, key));
                without_new_best = 0;
            }
        }
    }
    let (first_best, best_key) = best?;
    if without_new_best < spec.patience {
        return None;
    }
    // The result is the best checkpoint by the full rule: among equal first scores,
    // the one the later metrics (or the validation loss) prefer.
    let best = best_checkpoint_index(checkpoints).map_or(first_best, |i| &checkpoints[i]);
    let result = match best.name == first_best.name {
        true => String::new(),
        false => format!("; the best checkpoint is {}", best.name),
    };
    Some(EarlyStop {
        reason: format!(
            "stopped early at step {}: {} has not improved on {:.4} ({}) \
             by more than {} for {without_new_best} evaluations (earlyStopping.patience {}){result}",
            checkpoints.last().map_or(best.step, |c| c.step),
            ranking.describe(),
            ranking.shown(best_key),
            first_best.name,
            spec.min_delta,
            spec.patience
        ),
        best: best.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoints(losses: &[Option<f64>]) -> Vec<CheckpointStatus> {
        losses
            .iter()
            .enumerate()
            .map(|(i, loss)| CheckpointStatus {
                name: format!("ckpt-{}", (i + 1) * 10),
                step: (i as u64 + 1) * 10,
                valid_loss: *loss,
                ..CheckpointStatus::default()
            })
            .collect()
    }

    #[test]
    fn patience_counts_evaluations_without_a_new_best() {
        let spec = EarlyStoppingSpec {
            patience: 2,
            min_delta: 0.0,
        };
        let going_down = checkpoints(&[Some(2.0), Some(1.5), Some(1.2)]);
        assert_eq!(early_stop(&going_down, &spec), None);
        // One evaluation without a new best is within patience 2.
        assert_eq!(
            early_stop(&checkpoints(&[Some(2.0), Some(1.5), Some(1.6)]), &spec),
            None
        );
        let stalled = checkpoints(&[Some(2.0), Some(1.5), Some(1.6), Some(1.5)]);
        let stop = early_stop(&stalled, &spec).unwrap();
        assert_eq!(stop.best.name, "ckpt-20");
        assert_eq!(
            stop.reason,
            "stopped early at step 40: the validation loss has not improved on 1.5000 (ckpt-20) by \
             more than 0 for 2 evaluations (earlyStopping.patience 2)"
        );
        // A checkpoint without an evaluation neither counts nor resets.
        let gaps = checkpoints(&[Some(2.0), Some(1.5), None, Some(1.6), None, Some(1.7)]);
        assert_eq!(early_stop(&gaps, &spec).unwrap().best.name, "ckpt-20");
    }

    #[test]
    fn min_delta_is_what_an_improvement_must_beat() {
        let spec = EarlyStoppingSpec {
            patience: 1,
            min_delta: 0.1,
        };
        // 1.45 is lower than 1.5, but not by more than 0.1: the run stops, and its
        // result is still the better of the two.
        let small = checkpoints(&[Some(1.5), Some(1.45)]);
        let stop = early_stop(&small, &spec).unwrap();
        assert_eq!(stop.best.name, "ckpt-20");
        assert!(
            stop.reason.ends_with(
                "has not improved on 1.5000 (ckpt-10) by more than 0.1 for 1 evaluations \
                 (earlyStopping.patience 1); the best checkpoint is ckpt-20"
            ),
            "{}",
            stop.reason
        );
        let large = checkpoints(&[Some(1.5), Some(1.3)]);
        assert_eq!(early_stop(&large, &spec), None);
        assert_eq!(early_stop(&checkpoints(&[None, None]), &spec), None);
    }

    #[test]
    fn with_a_checkpoint_evaluation_its_first_metric_decides() {
        let spec = EarlyStoppingSpec {
            patience: 2,
            min_delta: 0.05,
        };
        // The loss keeps falling, but the house-style score stalls after ckpt-20:
        // ckpt-40 beats it by 0.04, within minDelta, which stops the run, and is the
        // best checkpoint.
        let scored = |losses: &[f64], scores: &[f64]| {
            let mut run = checkpoints(&losses.iter().copied().map(Some).collect::<Vec<_>>());
            for (checkpoint, score) in run.iter_mut().zip(scores) {
                checkpoint.evaluation = vec![anneal_crds::modelevaluation::MetricScore {
                    metric: "regex /^Good/".into(),
                    score: *score,
                    low: 0.0,
                    high: 1.0,
                    unscored: 0,
                }];
            }
            run
        };
        let stop = early_stop(
            &scored(&[2.0, 1.8, 1.6, 1.4], &[0.5, 0.8, 0.6, 0.84]),
            &spec,
        )
        .unwrap();
        assert_eq!(stop.best.name, "ckpt-40");
        assert_eq!(
            stop.reason,
            "stopped early at step 40: the evaluation's regex /^Good/ has not improved on 0.8000 \
             (ckpt-20) by more than 0.05 for 2 evaluations (earlyStopping.patience 2); the best \
             checkpoint is ckpt-40"
        );
        assert_eq!(
            early_stop(&scored(&[2.0, 1.8, 1.6, 1.4], &[0.5, 0.8, 0.6, 0.9]), &spec),
            None
        );
        // A score that saturates stops the run; of the checkpoints that reach it, the
        // one with the lowest validation loss is the result.
        let saturated = scored(&[2.0, 1.8, 1.6, 1.7], &[0.5, 1.0, 1.0, 1.0]);
        let stop = early_stop(&saturated, &spec).unwrap();
        assert_eq!(stop.best.name, "ckpt-30");
        assert!(
            stop.reason.ends_with(
                "has not improved on 1.0000 (ckpt-20) by more than 0.05 for 2 evaluations \
                 (earlyStopping.patience 2); the best checkpoint is ckpt-30"
            ),
            "{}",
            stop.reason
        );
    }
}
