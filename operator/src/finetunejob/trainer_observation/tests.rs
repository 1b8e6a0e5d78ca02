//! Table tests: observed Job status to trainer state to phase.

use super::*;
use k8s_openapi::api::batch::v1::{JobCondition, JobSpec, JobStatus};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateTerminated, ContainerStatus, PodStatus,
};

fn job(suspend: bool, status: JobStatus) -> Job {
    Job {
        spec: Some(JobSpec {
            suspend: Some(suspend),
            ..JobSpec::default()
        }),
        status: Some(status),
        ..Job::default()
    }
}

fn condition(type_: &str, reason: &str) -> JobCondition {
    JobCondition {
        type_: type_.to_owned(),
        status: "True".to_owned(),
        reason: Some(reason.to_owned()),
        message: Some(format!("{reason} from the job controller")),
        ..JobCondition::default()
    }
}

#[test]
fn job_status_maps_to_trainer_states() {
    let cases: Vec<(Option<Job>, TrainerState)> = vec![
        (None, TrainerState::Absent),
        (Some(job(true, JobStatus::default())), TrainerState::AwaitingAdmission),
        (
            Some(job(false, JobStatus { active: Some(1), ..JobStatus::default() })),
            TrainerState::Starting { retries: 0 },
        ),
        (
            Some(job(false, JobStatus { active: Some(1), ready: Some(1), failed: Some(2), ..JobStatus::default() })),
            TrainerState::Running { retries: 2 },
        ),
        (
            Some(job(false, JobStatus { conditions: Some(vec![condition("Complete", "CompletionsReached")]), ..JobStatus::default() })),
            TrainerState::Succeeded,
        ),
        (
            Some(job(false, JobStatus { conditions: Some(vec![condition("Failed", "BackoffLimitExceeded")]), ..JobStatus::default() })),
            TrainerState::Failed {
                reason: "BackoffLimitExceeded".into(),
                message: "the trainer failed on every retry: BackoffLimitExceeded from the job controller".into(),
                trainer_reason: None,
            },
        ),
    ];
    for (job, expected) in cases {
        assert_eq!(observe_trainer_job(job.as_ref(), None), expected, "{job:?}");
    }
}

#[test]
fn a_failure_quotes_the_trainers_last_words() {
    let pod = |exit_code, finished: i64, message: &str| Pod {
        status: Some(PodStatus {
            container_statuses: Some(vec![ContainerStatus {
                name: "trainer".into(),
                state: Some(ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        exit_code,
                        message: Some(message.into()),
                        finished_at: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                            anneal_crds::jiff::Timestamp::from_second(finished).unwrap(),
                        )),
                        ..ContainerStateTerminated::default()
                    }),
                    ..ContainerState::default()
                }),
                ..ContainerStatus::default()
            }]),
            ..PodStatus::default()
        }),
        ..Pod::default()
    };
    let pods = vec![
        pod(1, 10, "trainer train: cannot read s3://x"),
        pod(
            2,
            20,
            "{\"seq\":1}\ntrainer train: s3://d/train.jsonl: line 3: messages is empty\n{\"seq\":2}\n",
        ),
        pod(0, 30, "done"),
    ];
    let last = last_failure_message(&pods).unwrap();
    assert_eq!(
        last,
        "exit code 2: trainer train: s3://d/train.jsonl: line 3: messages is empty"
    );
    let failed = job(
        false,
        JobStatus {
            conditions: Some(vec![condition("Failed", "PodFailurePolicy")]),
            ..JobStatus::default()
        },
    );
    let state = observe_trainer_job(Some(&failed), Some(&last));
    let plan = plan_phase(false, &state);
    assert_eq!(plan.phase, JobPhase::Failed);
    assert_eq!(
        plan.message,
        "the trainer stopped on an error a retry cannot fix: exit code 2: trainer train: s3://d/train.jsonl: line 3: messages is empty"
    );
    assert!(
        plan.conditions
            .iter()
            .any(|c| c.type_ == "Failed" && c.status)
    );
    assert!(
        plan.conditions
            .iter()
            .any(|c| c.type_ == "Complete" && !c.status)
    );
}

#[test]
fn phases_follow_the_trainer_and_the_suspend_flag() {
    let cases = [
        (false, TrainerState::Absent, JobPhase::Queued),
        (false, TrainerState::AwaitingAdmission, JobPhase::Queued),
        (
            false,
            TrainerState::Starting { retries: 1 },
            JobPhase::Queued,
        ),
        (
            false,
            TrainerState::Running { retries: 0 },
            JobPhase::Running,
        ),
        (
            true,
            TrainerState::Running { retries: 0 },
            JobPhase::Suspended,
        ),
        (true, TrainerState::Deleting, JobPhase::Suspended),
        (true, TrainerState::Succeeded, JobPhase::Succeeded),
        (false, TrainerState::Succeeded, JobPhase::Succeeded),
    ];
    for (suspend, state, phase) in cases {
        assert_eq!(
            plan_phase(suspend, &state).phase,
            phase,
            "{suspend} {state:?}"
        );
    }
    let running = plan_phase(false, &TrainerState::Running { retries: 1 });
    assert_eq!(running.message, "training (resumed after 1 failed pod(s))");
    assert!(
        running
            .conditions
            .iter()
            .any(|c| c.type_ == "Running" && c.status)
    );
}

#[test]
fn a_diverged_trainer_fails_the_job_with_reason_diverged() {
    let failed = job(
        false,
        JobStatus {
            conditions: Some(vec![condition("Failed", "PodFailurePolicy")]),
            ..JobStatus::default()
        },
    );
    let line = "exit code 2: Diverged: training diverged at step 3: the training loss is NaN; \
                the last good checkpoint is ckpt-2 (kept)";
    let state = observe_trainer_job(Some(&failed), Some(line));
    let plan = plan_phase(false, &state);
    assert_eq!(plan.phase, JobPhase::Failed);
    assert_eq!(
        plan.message,
        "the trainer stopped on an error a retry cannot fix: exit code 2: training diverged at \
         step 3: the training loss is NaN; the last good checkpoint is ckpt-2 (kept)"
    );
    for type_ in ["Failed", "Running", "Complete"] {
        let condition = plan.conditions.iter().find(|c| c.type_ == type_).unwrap();
        assert_eq!(condition.reason, "Diverged", "{type_}");
    }
    // Any other word at the start is the trainer's message, not a reason.
    let state = observe_trainer_job(Some(&failed), Some("exit code 2: Exploded: boom"));
    let plan = plan_phase(false, &state);
    assert!(plan.conditions.iter().all(|c| c.reason == "TrainerFailed"));
    assert!(plan.message.ends_with("exit code 2: Exploded: boom"));
}

#[test]
fn a_job_past_its_deadline_fails_with_reason_deadline_exceeded_either_way() {
    // The trainer saw the deadline at a step boundary and said so.
    let stopped_itself = job(
        false,
        JobStatus {
            conditions: Some(vec![condition("Failed", "PodFailurePolicy")]),
            ..JobStatus::default()
        },
    );
    let line = "exit code 2: DeadlineExceeded: ran past spec.activeDeadlineSeconds (3600 s) at \
                step 40/81; the checkpoints are kept, the last is ckpt-40";
    let plan = plan_phase(
        false,
        &observe_trainer_job(Some(&stopped_itself), Some(line)),
    );
    assert_eq!(plan.phase, JobPhase::Failed);
    assert!(
        plan.message.ends_with("the last is ckpt-40"),
        "{}",
        plan.message
    );
    // Kubernetes stopped a trainer stuck past the Job's backstop deadline.
    let stopped = job(
        false,
        JobStatus {
            conditions: Some(vec![condition("Failed", "DeadlineExceeded")]),
            ..JobStatus::default()
        },
    );
    let backstop = plan_phase(false, &observe_trainer_job(Some(&stopped), None));
    assert_eq!(
        backstop.message,
        "the trainer ran past its deadline: DeadlineExceeded from the job controller"
    );
    for plan in [plan, backstop] {
        let failed = plan
            .conditions
            .iter()
            .find(|c| c.type_ == "Failed")
            .unwrap();
        assert_eq!(failed.reason, "DeadlineExceeded");
    }
}

#[test]
fn an_oom_kill_or_a_full_scratch_disk_is_a_failure_every_retry_would_repeat() {
    let pod = |reason: Option<&str>, message: Option<&str>, container_reason: &str| Pod {
        status: Some(PodStatus {
            reason: reason.map(Into::into),
            message: message.map(Into::into),
            container_statuses: Some(vec![ContainerStatus {
                name: "trainer".into(),
                state: Some(ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        exit_code: 137,
                        reason: Some(container_reason.into()),
                        ..ContainerStateTerminated::default()
                    }),
                    ..ContainerState::default()
                }),
                ..ContainerStatus::default()
            }]),
            ..PodStatus::default()
        }),
        ..Pod::default()
    };
    // Killed for another reason (a deleted pod past its grace period): retried as usual.
    assert_eq!(
        repeating_failure(&[pod(None, None, "Error")], Some(3), Some("8Gi"), None),
        None
    );
    // Evicted for node pressure: not the job's doing, retried.
    let pressure = "The node was low on resource: memory. Threshold quantity: 100Mi.";
    assert_eq!(
        repeating_failure(
            &[pod(Some("Evicted"), Some(pressure), "Error")],
            None,
            None,
            None
        ),
        None
    );
    assert_eq!(
        repeating_failure(
            &[pod(None, None, "OOMKilled")],
            Some(12),
            Some("8Gi"),
            Some(", where the memory plan predicted 5.1 GiB at micro-batch 2")
        ),
        Some(RepeatingFailure {
            reason: "OutOfMemory",
            message: "the trainer was killed for going over its memory limit (8Gi) after step 12, where the memory plan predicted 5.1 GiB at micro-batch 2; set spec.resources.memory larger or lower hyperparameters.batchSize or maxTokens".into(),
        })
    );
    let full = "Usage of EmptyDir volume \"work\" exceeds the limit \"36Gi\". ";
    assert_eq!(
        repeating_failure(&[pod(Some("Evicted"), Some(full), "Error")], None, None, None),
        Some(RepeatingFailure {
            reason: "ScratchFull",
            message: "the trainer pod was evicted before its first step: Usage of EmptyDir volume \"work\" exceeds the limit \"36Gi\"; set spec.resources.scratch larger (the model, datasets and two checkpoints must fit)".into(),
        })
    );
}
