//! Early stopping (`checkpoints.earlyStopping`): a run whose validation loss has not
//! made a new best (lower than the best so far by more than `minDelta`) for `patience`
//! evaluations in a row ends there, and its result is the best checkpoint. Judged from
//! the checkpoints the state records (pruned ones included), so a resumed run counts
//! the evaluations before the resume.

use anneal_crds::finetunejob::{CheckpointStatus, EarlyStoppingSpec};

/// Why the run stops, and the checkpoint it ends on.
#[derive(Clone, Debug, PartialEq)]
pub struct EarlyStop {
    pub reason: String,
    pub best: CheckpointStatus,
}

/// Whether the evaluations so far (`checkpoints`, oldest first) end the run.
pub fn early_stop(checkpoints: &[CheckpointStatus], spec: &EarlyStoppingSpec) -> Option<EarlyStop> {
    let mut best: Option<(&CheckpointStatus, f64)> = None;
    let mut without_new_best = 0u32;
    for checkpoint in checkpoints {
        let Some(loss) = checkpoint.valid_loss else {
            continue;
        };
        match best {
            Some((_, best_loss)) if loss >= best_loss - spec.min_delta => without_new_best += 1,
            _ => {
                best = Some((checkpoint, loss));
                without_new_best = 0;
            }
        }
    }
    let (best, best_loss) = best?;
    (without_new_best >= spec.patience).then(|| EarlyStop {
        reason: format!(
            "stopped early at step {}: the validation loss has not improved on {best_loss:.4} ({}) \
             by more than {} for {without_new_best} evaluations (earlyStopping.patience {})",
            checkpoints.last().map_or(best.step, |c| c.step),
            best.name,
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
        // 1.45 is lower than 1.5, but not by more than 0.1.
        let small = checkpoints(&[Some(1.5), Some(1.45)]);
        assert_eq!(early_stop(&small, &spec).unwrap().best.name, "ckpt-10");
        let large = checkpoints(&[Some(1.5), Some(1.3)]);
        assert_eq!(early_stop(&large, &spec), None);
        assert_eq!(early_stop(&checkpoints(&[None, None]), &spec), None);
    }
}
