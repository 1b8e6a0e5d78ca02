//! A ModelEvaluation's status from what is there (pure): where its FineTuneJobs are,
//! its evaluation Job's state, and on success the `status.json` the pod wrote beside
//! the report (each model's scores, the pairwise rates, the best model).

use anneal_crds::FineTuneJob;
use anneal_crds::finetunejob::JobPhase;
use anneal_crds::modelevaluation::{
    BestModel, EvaluationPhase, EvaluationProgress, ModelEvaluationStatus, ModelResult,
};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::Deserialize;

use crate::shared::conditions::{COMPLETE, Desired, FAILED, set_condition};

/// The `status.json` `trainer evaluate` writes beside `report.json`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WrittenResults {
    #[serde(default)]
    pub results: Vec<ModelResult>,
    #[serde(default)]
    pub best: Option<BestModel>,
}

/// Where an evaluation stands.
#[derive(Clone, Debug, PartialEq)]
pub enum Stage {
    /// Not started: a FineTuneJob it compares is not done yet.
    Waiting {
        reason: &'static str,
        message: String,
    },
    /// It cannot run as written (a field names why), or a job it needs failed.
    Refused {
        reason: &'static str,
        message: String,
    },
    /// The pod runs; `progress` as it last wrote it.
    Running {
        progress: Option<EvaluationProgress>,
    },
    Succeeded {
        results: WrittenResults,
        report_uri: String,
        progress: Option<EvaluationProgress>,
    },
    Failed {
        message: String,
    },
}

/// What a FineTuneJob the evaluation names means for it: `None` when it is done.
pub fn fine_tune_job_stage(name: &str, job: Option<&FineTuneJob>) -> Option<Stage> {
    let Some(job) = job else {
        return Some(Stage::Waiting {
            reason: "FineTuneJobMissing",
            message: format!("waiting for FineTuneJob {name}, which does not exist"),
        });
    };
    let phase = job.status.as_ref().and_then(|s| s.phase);
    match phase {
        Some(JobPhase::Succeeded) => None,
        Some(phase @ (JobPhase::Failed | JobPhase::Cancelled)) => Some(Stage::Refused {
            reason: "FineTuneJobFailed",
            message: format!(
                "FineTuneJob {name} ended {phase:?}: it has no final checkpoint to evaluate"
            ),
        }),
        phase => Some(Stage::Waiting {
            reason: "FineTuneJobRunning",
            message: format!(
                "waiting for FineTuneJob {name} to finish (phase {})",
                phase.map_or("Pending".to_owned(), |p| format!("{p:?}"))
            ),
        }),
    }
}

/// The state of the evaluation Job, as running, complete (`true`) or failed (with
/// the Job's words).
pub fn job_outcome(job: &Job) -> Option<Result<(), String>> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    let holds = |type_: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == type_ && c.status == "True")
    };
    if holds("Complete").is_some() {
        return Some(Ok(()));
    }
    holds("Failed").map(|c| {
        Err(match (&c.reason, &c.message) {
            (Some(reason), Some(message)) => format!("{reason}: {message}"),
            (Some(reason), None) => reason.clone(),
            (None, message) => message
                .clone()
                .unwrap_or_else(|| "the Job failed".to_owned()),
        })
    })
}

/// The next status from `previous` for `stage`.
pub fn plan_evaluation_status(
    previous: &ModelEvaluationStatus,
    stage: Stage,
    generation: Option<i64>,
    now: &Time,
) -> ModelEvaluationStatus {
    let mut next = ModelEvaluationStatus {
        conditions: previous.conditions.clone(),
        observed_generation: generation,
        ..ModelEvaluationStatus::default()
    };
    let mut condition = |type_, status, reason, message: &str| {
        set_condition(
            &mut next.conditions,
            Desired {
                type_,
                status,
                reason,
                message: message.to_owned(),
            },
            generation,
            now,
        );
    };
    match stage {
        Stage::Waiting { reason, message } => {
            condition(COMPLETE, false, reason, &message);
            next.phase = Some(EvaluationPhase::Pending);
            next.message = Some(message);
        }
        Stage::Refused { reason, message } => {
            condition(FAILED, true, reason, &message);
            next.phase = Some(EvaluationPhase::Failed);
            next.message = Some(message);
        }
        Stage::Running { progress } => {
            condition(
                COMPLETE,
                false,
                "Evaluating",
                "the evaluation pod is running",
            );
            next.phase = Some(EvaluationPhase::Running);
            next.message = Some(match &progress {
                Some(p) => format!("evaluating: {} of {} replies", p.answered, p.total),
                None => "evaluating".to_owned(),
            });
            // A read that failed keeps what the last one saw.
            next.progress = progress.or_else(|| previous.progress.clone());
        }
        Stage::Succeeded {
            results,
            report_uri,
            progress,
        } => {
            let message = match &results.best {
                Some(best) => format!(
                    "best: {} ({} {:.3}); report {report_uri}/report.html",
                    best.model, best.metric, best.score
                ),
                None => format!("report {report_uri}/report.html"),
            };
            condition(COMPLETE, true, "Evaluated", &message);
            next.phase = Some(EvaluationPhase::Succeeded);
            next.results = results.results;
            next.best = results.best;
            next.progress = progress.or_else(|| previous.progress.clone());
            next.report_uri = Some(report_uri);
            next.message = Some(message);
        }
        Stage::Failed { message } => {
            condition(FAILED, true, "EvaluationFailed", &message);
            next.phase = Some(EvaluationPhase::Failed);
            next.message = Some(message);
        }
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;
    use anneal_crds::finetunejob::FineTuneJobStatus;
    use anneal_crds::modelevaluation::MetricScore;
    use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};

    fn now() -> Time {
        Time(anneal_crds::jiff::Timestamp::from_second(1_800_000_000).unwrap())
    }

    fn job_with(type_: &str, reason: Option<&str>, message: Option<&str>) -> Job {
        Job {
            status: Some(JobStatus {
                conditions: Some(vec![JobCondition {
                    type_: type_.to_owned(),
                    status: "True".to_owned(),
                    reason: reason.map(str::to_owned),
                    message: message.map(str::to_owned),
                    ..JobCondition::default()
                }]),
                ..JobStatus::default()
            }),
            ..Job::default()
        }
    }

    #[test]
    fn the_job_says_whether_the_evaluation_ran() {
        assert_eq!(job_outcome(&Job::default()), None);
        assert_eq!(job_outcome(&job_with("Complete", None, None)), Some(Ok(())));
        assert_eq!(
            job_outcome(&job_with(
                "Failed",
                Some("PodFailurePolicy"),
                Some("exit code 2")
            )),
            Some(Err("PodFailurePolicy: exit code 2".to_owned()))
        );
    }

    #[test]
    fn a_fine_tune_job_that_is_not_done_holds_the_evaluation() {
        let stage = fine_tune_job_stage("support-bot", None).unwrap();
        assert!(matches!(
            stage,
            Stage::Waiting {
                reason: "FineTuneJobMissing",
                ..
            }
        ));
        let mut job = FineTuneJob::new(
            "support-bot",
            serde_json::from_value(serde_json::json!({
                "baseModel": {"name": "anneal-tiny", "source": "s3://m/t"},
                "dataset": {"train": "s3://d/t.jsonl"}
            }))
            .unwrap(),
        );
        let with_phase = |job: &mut FineTuneJob, phase| {
            job.status = Some(FineTuneJobStatus {
                phase: Some(phase),
                ..FineTuneJobStatus::default()
            });
        };
        with_phase(&mut job, JobPhase::Running);
        let Some(Stage::Waiting { message, .. }) = fine_tune_job_stage("support-bot", Some(&job))
        else {
            panic!("a running job holds the evaluation");
        };
        assert_eq!(
            message,
            "waiting for FineTuneJob support-bot to finish (phase Running)"
        );
        with_phase(&mut job, JobPhase::Failed);
        assert!(matches!(
            fine_tune_job_stage("support-bot", Some(&job)),
            Some(Stage::Refused {
                reason: "FineTuneJobFailed",
                ..
            })
        ));
        with_phase(&mut job, JobPhase::Succeeded);
        assert_eq!(fine_tune_job_stage("support-bot", Some(&job)), None);
    }

    #[test]
    fn success_carries_the_scores_the_best_model_and_the_report() {
        let results = WrittenResults {
            results: vec![ModelResult {
                model: "tuned".into(),
                metrics: vec![MetricScore {
                    metric: "judge 1-10".into(),
                    score: 8.5,
                    low: 8.0,
                    high: 9.0,
                    unscored: 0,
                }],
                judge_pairwise: None,
            }],
            best: Some(BestModel {
                model: "tuned".into(),
                metric: "judge 1-10".into(),
                score: 8.5,
            }),
        };
        let progress = |answered| EvaluationProgress {
            answered,
            total: 40,
        };
        let running = plan_evaluation_status(
            &ModelEvaluationStatus::default(),
            Stage::Running {
                progress: Some(progress(12)),
            },
            Some(1),
            &now(),
        );
        assert_eq!(running.phase, Some(EvaluationPhase::Running));
        assert_eq!(
            running.message.as_deref(),
            Some("evaluating: 12 of 40 replies")
        );
        // A progress file that could not be read this time keeps the last count.
        let still =
            plan_evaluation_status(&running, Stage::Running { progress: None }, Some(1), &now());
        assert_eq!(still.progress, Some(progress(12)));
        let done = plan_evaluation_status(
            &running,
            Stage::Succeeded {
                results: results.clone(),
                report_uri: "s3://runs/team-a/house-style/uid".into(),
                progress: Some(progress(40)),
            },
            Some(1),
            &now(),
        );
        assert_eq!(done.phase, Some(EvaluationPhase::Succeeded));
        assert_eq!(done.results, results.results);
        assert_eq!(done.best, results.best);
        assert_eq!(done.progress, Some(progress(40)));
        assert_eq!(
            done.message.as_deref(),
            Some(
                "best: tuned (judge 1-10 8.500); report s3://runs/team-a/house-style/uid/report.html"
            )
        );
        let complete = done
            .conditions
            .iter()
            .find(|c| c.type_ == COMPLETE)
            .unwrap();
        assert_eq!(
            (complete.status.as_str(), complete.reason.as_str()),
            ("True", "Evaluated")
        );

        let failed = plan_evaluation_status(
            &running,
            Stage::Failed {
                message: "PodFailurePolicy: exit code 2".into(),
            },
            Some(1),
            &now(),
        );
        assert_eq!(failed.phase, Some(EvaluationPhase::Failed));
        assert!(failed.results.is_empty());
        let written: WrittenResults = serde_json::from_str(
            r#"{"results": [{"model": "base", "metrics": [{"metric": "rougeL", "score": 0.5, "low": 0.4, "high": 0.6}]}], "best": {"model": "base", "metric": "rougeL", "score": 0.5}}"#,
        )
        .unwrap();
        assert_eq!(written.results[0].metrics[0].score, 0.5);
    }
}
