//! The per-job Prometheus gauges (loss, DPO's validation reward accuracy, speed,
//! progress) set from the folded status, so a dashboard shows the same numbers as
//! `kubectl get ftj`.

use anneal_crds::finetunejob::{Metrics as TrainingMetrics, Progress};

use crate::metrics::Metrics;

pub fn update_job_gauges(
    metrics: &Metrics,
    namespace: &str,
    name: &str,
    training: Option<&TrainingMetrics>,
    progress: Option<&Progress>,
) {
    let labels = [namespace, name];
    if let Some(training) = training {
        let gauges = [
            (&metrics.job_train_loss, training.train_loss),
            (&metrics.job_valid_loss, training.valid_loss),
            (
                &metrics.job_valid_reward_accuracy,
                training.valid_reward_accuracy,
            ),
            (&metrics.job_tokens_per_second, training.tokens_per_second),
        ];
        for (gauge, value) in gauges {
            if let Some(value) = value {
                gauge.with_label_values(&labels).set(value);
            }
        }
    }
    if let Some(progress) = progress.filter(|p| p.total_steps > 0) {
        let ratio = progress.step as f64 / progress.total_steps as f64;
        metrics.job_progress.with_label_values(&labels).set(ratio);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauges_show_what_is_known() {
        let metrics = Metrics::new();
        let training = TrainingMetrics {
            train_loss: Some(1.5),
            ..TrainingMetrics::default()
        };
        let progress = Progress {
            step: 1,
            total_steps: 4,
            ..Progress::default()
        };
        update_job_gauges(&metrics, "ns", "a", Some(&training), Some(&progress));
        let text = metrics.render();
        assert!(text.contains(r#"anneal_job_train_loss{name="a",namespace="ns"} 1.5"#));
        assert!(text.contains(r#"anneal_job_progress_ratio{name="a",namespace="ns"} 0.25"#));
        assert!(!text.contains("anneal_job_valid_loss{"), "{text}");
        assert!(
            !text.contains("anneal_job_valid_reward_accuracy{"),
            "{text}"
        );

        let dpo = TrainingMetrics {
            valid_reward_accuracy: Some(0.75),
            ..TrainingMetrics::default()
        };
        update_job_gauges(&metrics, "ns", "b", Some(&dpo), None);
        let text = metrics.render();
        assert!(
            text.contains(r#"anneal_job_valid_reward_accuracy{name="b",namespace="ns"} 0.75"#),
            "{text}"
        );
    }
}
