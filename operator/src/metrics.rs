//! The operator's Prometheus metrics, served at `/metrics`: how reconciles go, how
//! many jobs and model deployments are in each phase, and each running job's loss and
//! speed as its trainer reports them.

use std::future::Future;
use std::time::{Duration, Instant};

use kube::runtime::controller::Action;
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use tracing::{Instrument, info_span};

use crate::error::Error;

/// Every metric the operator exports, registered in one registry.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// `anneal_reconciles_total{kind}`.
    pub reconciles: IntCounterVec,
    /// `anneal_reconcile_errors_total{kind, reason}`.
    pub reconcile_errors: IntCounterVec,
    /// `anneal_reconcile_duration_seconds{kind}`.
    pub reconcile_duration: HistogramVec,
    /// `anneal_finetunejobs{phase}`: jobs this operator last saw in each phase.
    pub jobs_by_phase: IntGaugeVec,
    /// `anneal_modeldeployments{phase}`: ModelDeployments this operator last saw in each phase.
    pub deployments_by_phase: IntGaugeVec,
    /// `anneal_job_train_loss{namespace, name}`.
    pub job_train_loss: GaugeVec,
    /// `anneal_job_valid_loss{namespace, name}`.
    pub job_valid_loss: GaugeVec,
    /// `anneal_job_valid_reward_accuracy{namespace, name}`: DPO jobs only.
    pub job_valid_reward_accuracy: GaugeVec,
    /// `anneal_job_tokens_per_second{namespace, name}`.
    pub job_tokens_per_second: GaugeVec,
    /// `anneal_job_progress_ratio{namespace, name}`: step / total steps.
    pub job_progress: GaugeVec,
    /// `anneal_report_events_total{type}`: trainer events accepted (repeats excluded).
    pub report_events: IntCounterVec,
    /// `anneal_report_rejected_total{reason}`: posts refused whole (`unauthorized`,
    /// `too_many_refusals`, `rate_limited`, `too_large`, `busy`, `malformed`).
    pub report_rejected: IntCounterVec,
    /// `anneal_report_events_refused_total{reason}`: events of accepted posts that broke
    /// a rule (`seq_jump`, `uri_outside_run`, `bad_value`) and were not folded.
    pub report_events_refused: IntCounterVec,
    /// `anneal_status_patches_total{result}`: coalesced status patches written (`ok`, `error`).
    pub status_patches: IntCounterVec,
    /// `anneal_notifications_total{outcome}`: `spec.notify` deliveries (`delivered`,
    /// `failed` after every retry, `refused` by the host allow-list or a missing
    /// signing key, `dropped` when the queue was full) and `retried` attempts.
    pub notifications: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let job_labels = &["namespace", "name"];
        let metrics = Self {
            reconciles: IntCounterVec::new(
                Opts::new("anneal_reconciles_total", "Reconciles run, by kind"),
                &["kind"],
            )
            .unwrap(),
            reconcile_errors: IntCounterVec::new(
                Opts::new(
                    "anneal_reconcile_errors_total",
                    "Reconciles that failed, by kind and reason",
                ),
                &["kind", "reason"],
            )
            .unwrap(),
            reconcile_duration: HistogramVec::new(
                HistogramOpts::new(
                    "anneal_reconcile_duration_seconds",
                    "Time one reconcile took",
                )
                .buckets(vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0]),
                &["kind"],
            )
            .unwrap(),
            jobs_by_phase: IntGaugeVec::new(
                Opts::new("anneal_finetunejobs", "FineTuneJobs by phase"),
                &["phase"],
            )
            .unwrap(),
            deployments_by_phase: IntGaugeVec::new(
                Opts::new("anneal_modeldeployments", "ModelDeployments by phase"),
                &["phase"],
            )
            .unwrap(),
            job_train_loss: GaugeVec::new(
                Opts::new(
                    "anneal_job_train_loss",
                    "Latest training loss a job's trainer reported",
                ),
                job_labels,
            )
            .unwrap(),
            job_valid_loss: GaugeVec::new(
                Opts::new(
                    "anneal_job_valid_loss",
                    "Latest validation loss a job's trainer reported",
                ),
                job_labels,
            )
            .unwrap(),
            job_valid_reward_accuracy: GaugeVec::new(
                Opts::new(
                    "anneal_job_valid_reward_accuracy",
                    "Latest share of validation pairs a DPO job's model prefers as labelled",
                ),
                job_labels,
            )
            .unwrap(),
            job_tokens_per_second: GaugeVec::new(
                Opts::new(
                    "anneal_job_tokens_per_second",
                    "Training throughput a job's trainer reported",
                ),
                job_labels,
            )
            .unwrap(),
            job_progress: GaugeVec::new(
                Opts::new(
                    "anneal_job_progress_ratio",
                    "Optimizer steps done over total steps",
                ),
                job_labels,
            )
            .unwrap(),
            report_events: IntCounterVec::new(
                Opts::new(
                    "anneal_report_events_total",
                    "Trainer events accepted, by type",
                ),
                &["type"],
            )
            .unwrap(),
            report_rejected: IntCounterVec::new(
                Opts::new(
                    "anneal_report_rejected_total",
                    "Trainer event posts refused, by reason",
                ),
                &["reason"],
            )
            .unwrap(),
            report_events_refused: IntCounterVec::new(
                Opts::new(
                    "anneal_report_events_refused_total",
                    "Trainer events refused by the report rules, by reason",
                ),
                &["reason"],
            )
            .unwrap(),
            status_patches: IntCounterVec::new(
                Opts::new(
                    "anneal_status_patches_total",
                    "Coalesced status patches from trainer events",
                ),
                &["result"],
            )
            .unwrap(),
            notifications: IntCounterVec::new(
                Opts::new(
                    "anneal_notifications_total",
                    "spec.notify deliveries by outcome, and retried attempts",
                ),
                &["outcome"],
            )
            .unwrap(),
            registry,
        };
        for collector in [
            Box::new(metrics.reconciles.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(metrics.reconcile_errors.clone()),
            Box::new(metrics.reconcile_duration.clone()),
            Box::new(metrics.jobs_by_phase.clone()),
            Box::new(metrics.deployments_by_phase.clone()),
            Box::new(metrics.job_train_loss.clone()),
            Box::new(metrics.job_valid_loss.clone()),
            Box::new(metrics.job_valid_reward_accuracy.clone()),
            Box::new(metrics.job_tokens_per_second.clone()),
            Box::new(metrics.job_progress.clone()),
            Box::new(metrics.report_events.clone()),
            Box::new(metrics.report_rejected.clone()),
            Box::new(metrics.report_events_refused.clone()),
            Box::new(metrics.status_patches.clone()),
            Box::new(metrics.notifications.clone()),
        ] {
            metrics
                .registry
                .register(collector)
                .expect("metric names are unique");
        }
        metrics
    }

    /// Drops a job's per-job series (when the job is deleted), so they do not pile up.
    pub fn forget_job(&self, namespace: &str, name: &str) {
        for gauge in [
            &self.job_train_loss,
            &self.job_valid_loss,
            &self.job_valid_reward_accuracy,
            &self.job_tokens_per_second,
            &self.job_progress,
        ] {
            let _ = gauge.remove_label_values(&[namespace, name]);
        }
    }

    /// Runs one reconcile of a `kind` object inside a span naming it, counting and timing it.
    pub async fn observe_reconcile<T>(
        &self,
        kind: &'static str,
        namespace: &str,
        name: &str,
        reconcile: impl Future<Output = T>,
    ) -> T {
        let span = info_span!("reconcile", kind, namespace = %namespace, name = %name);
        let started = Instant::now();
        self.reconciles.with_label_values(&[kind]).inc();
        let result = reconcile.instrument(span).await;
        self.reconcile_duration
            .with_label_values(&[kind])
            .observe(started.elapsed().as_secs_f64());
        result
    }

    /// Counts a failed reconcile of a `kind` object; the controller retries it soon,
    /// since what failed (an API hiccup, storage) may not fail again.
    pub fn reconcile_failed(&self, kind: &'static str, error: &Error) -> Action {
        self.reconcile_errors
            .with_label_values(&[kind, error.metric_label()])
            .inc();
        Action::requeue(Duration::from_secs(15))
    }

    /// Sets a `{phase}` gauge from the phases of the objects in a cache: every phase in
    /// `all` gets its count, zero included, so a phase that empties drops to 0.
    pub fn set_phase_counts(
        gauge: &IntGaugeVec,
        all: &[&str],
        phases: impl IntoIterator<Item = String>,
    ) {
        let mut counts = std::collections::BTreeMap::new();
        for phase in phases {
            *counts.entry(phase).or_insert(0i64) += 1;
        }
        for phase in all {
            gauge
                .with_label_values(&[phase])
                .set(counts.get(*phase).copied().unwrap_or(0));
        }
    }

    /// The Prometheus text format of every metric.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .expect("text encoding of gathered metrics");
        String::from_utf8(buffer).expect("the text format is UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_job_series_render_and_are_forgotten() {
        let metrics = Metrics::new();
        metrics
            .job_train_loss
            .with_label_values(&["ns", "a"])
            .set(1.5);
        metrics.reconciles.with_label_values(&["FineTuneJob"]).inc();
        let text = metrics.render();
        assert!(
            text.contains(r#"anneal_job_train_loss{name="a",namespace="ns"} 1.5"#),
            "{text}"
        );
        assert!(
            text.contains(r#"anneal_reconciles_total{kind="FineTuneJob"} 1"#),
            "{text}"
        );
        metrics.forget_job("ns", "a");
        assert!(!metrics.render().contains("anneal_job_train_loss{"));
    }
}
