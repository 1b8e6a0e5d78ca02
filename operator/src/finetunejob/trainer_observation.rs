//! What the cluster says about a job's trainer, and the phase and conditions that
//! follows from it: pure functions from the observed `batch/v1 Job` (and its last
//! failed pod) to status, so every branch has a table test.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStateTerminated, Pod};

use anneal_crds::finetunejob::JobPhase;
use anneal_crds::trainer_failure::TrainerFailureReason;

use crate::shared::conditions::{self, Desired};

/// The trainer Job as the reconcile sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrainerState {
    /// No Job yet (or it was removed for a suspend).
    Absent,
    /// The Job is being deleted; a new one waits until it is gone.
    Deleting,
    /// Created suspended, waiting for Kueue to admit it.
    AwaitingAdmission,
    /// Admitted, its pod not running yet (scheduling, pulling the image, or between retries).
    Starting {
        retries: i32,
    },
    /// A trainer pod is running.
    Running {
        retries: i32,
    },
    Succeeded,
    Failed {
        reason: String,
        message: String,
        /// The reason the trainer gave in its termination message, if one it may give.
        trainer_reason: Option<TrainerFailureReason>,
    },
}

/// Reads the Job's status. `last_failure` is the termination message of the newest
/// failed trainer pod, which says why in the trainer's own words.
pub fn observe_trainer_job(job: Option<&Job>, last_failure: Option<&str>) -> TrainerState {
    let Some(job) = job else {
        return TrainerState::Absent;
    };
    if job.metadata.deletion_timestamp.is_some() {
        return TrainerState::Deleting;
    }
    let status = job.status.clone().unwrap_or_default();
    let job_conditions = status.conditions.unwrap_or_default();
    let condition = |type_: &str| {
        job_conditions
            .iter()
            .find(|c| c.type_ == type_ && c.status == "True")
    };
    if condition("Complete").is_some() {
        return TrainerState::Succeeded;
    }
    if let Some(failed) = condition("Failed") {
        let reason = failed.reason.clone().unwrap_or_else(|| "Failed".to_owned());
        let cause = match reason.as_str() {
            "PodFailurePolicy" => "the trainer stopped on an error a retry cannot fix",
            "BackoffLimitExceeded" => "the trainer failed on every retry",
            "DeadlineExceeded" => "the trainer ran past its deadline",
            _ => "the trainer Job failed",
        };
        // `exit code 2: Diverged: training diverged ...`: the reason moves to the
        // condition, the rest stays in the message.
        let (trainer_reason, last_failure) = match last_failure.map(trainer_reason) {
            Some((reason, text)) => (reason, Some(text)),
            None => (None, None),
        };
        // Kubernetes stopped a trainer that ran past the Job's backstop deadline
        // (`spec.activeDeadlineSeconds` and a margin): the job's deadline all the same.
        let trainer_reason = trainer_reason
            .or((reason == "DeadlineExceeded").then_some(TrainerFailureReason::DeadlineExceeded));
        let message = match last_failure {
            Some(detail) => format!("{cause}: {detail}"),
            None => match &failed.message {
                Some(detail) => format!("{cause}: {detail}"),
                None => cause.to_owned(),
            },
        };
        return TrainerState::Failed {
            reason,
            message,
            trainer_reason,
        };
    }
    let suspended = job.spec.as_ref().and_then(|s| s.suspend).unwrap_or(false);
    if suspended {
        return TrainerState::AwaitingAdmission;
    }
    let retries = status.failed.unwrap_or(0);
    if status.ready.unwrap_or(0) > 0 {
        TrainerState::Running { retries }
    } else {
        TrainerState::Starting { retries }
    }
}

/// The trainer's own reason at the start of a failure line (`exit code 2: Diverged:
/// ...`), and the line without it.
fn trainer_reason(line: &str) -> (Option<TrainerFailureReason>, String) {
    if let Some((exit, detail)) = line.split_once(": ")
        && let Some((reason, rest)) = TrainerFailureReason::parse(detail)
    {
        return (Some(reason), format!("{exit}: {rest}"));
    }
    (None, line.to_owned())
}

/// The newest failed trainer pod's termination message, cut to what a status holds.
/// Its logs end with the trainer's error line (`FallbackToLogsOnError`), after the
/// JSON events it printed.
pub fn last_failure_message(pods: &[Pod]) -> Option<String> {
    last_failure_message_of(pods, crate::finetunejob::trainer_job::TRAINER_CONTAINER)
}

/// [`last_failure_message`] of the pods' container `container`.
pub fn last_failure_message_of(pods: &[Pod], container: &str) -> Option<String> {
    let failed = pods
        .iter()
        .filter_map(|pod| {
            let terminated = container_terminated(pod, container)?;
            (terminated.exit_code != 0).then_some(terminated)
        })
        .max_by_key(|terminated| terminated.finished_at.clone().map(|t| t.0))?;
    let text = failed.message.as_deref().unwrap_or_default();
    let line = text
        .lines()
        .rev()
        .map(str::trim)
        .find(|line| !line.is_empty() && !line.starts_with('{'));
    Some(match line {
        Some(line) => format!("exit code {}: {}", failed.exit_code, cut(line, 512)),
        None => format!("exit code {}", failed.exit_code),
    })
}

/// A trainer pod failure that every retry of the same plan would repeat, so the job
/// fails at once instead of using up its retries (each of which downloads the model
/// again): the container killed for going over its memory limit, or the pod evicted
/// for writing more than its scratch disk's size limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepeatingFailure {
    /// The `Failed` condition's reason: `OutOfMemory` or `ScratchFull`.
    pub reason: &'static str,
    pub message: String,
}

/// Condition reason of a trainer killed for its memory limit.
pub const OUT_OF_MEMORY: &str = "OutOfMemory";
/// Condition reason of a trainer pod evicted for its scratch disk's size limit.
pub const SCRATCH_FULL: &str = "ScratchFull";

/// The newest repeating failure among `pods`, if any. `step` is the last optimizer step
/// the trainer reported, `memory_limit` its container's limit and `plan` what the
/// memory plan predicted for it (`", where ..."`), all for the message.
pub fn repeating_failure(
    pods: &[Pod],
    step: Option<u64>,
    memory_limit: Option<&str>,
    plan: Option<&str>,
) -> Option<RepeatingFailure> {
    let at_step = step.map_or_else(
        || " before its first step".to_owned(),
        |step| format!(" after step {step}"),
    );
    pods.iter().find_map(|pod| {
        let status = pod.status.as_ref()?;
        if status.reason.as_deref() == Some("Evicted")
            && let Some(message) = &status.message
            && message.contains("EmptyDir volume")
        {
            return Some(RepeatingFailure {
                reason: SCRATCH_FULL,
                message: format!(
                    "the trainer pod was evicted{at_step}: {}; set spec.resources.scratch larger (the model, datasets and two checkpoints must fit)",
                    cut(message.trim().trim_end_matches('.'), 256)
                ),
            });
        }
        let killed = trainer_terminated(pod)?;
        (killed.reason.as_deref() == Some("OOMKilled")).then(|| RepeatingFailure {
            reason: OUT_OF_MEMORY,
            message: format!(
                "the trainer was killed for going over its memory limit ({}){at_step}{}; set spec.resources.memory larger or lower hyperparameters.batchSize or maxTokens",
                memory_limit.unwrap_or("none set"),
                plan.unwrap_or_default()
            ),
        })
    })
}

/// The memory limit of the trainer Job's container, as written in it.
pub fn trainer_memory_limit(job: &Job) -> Option<String> {
    let pod = job.spec.as_ref()?.template.spec.as_ref()?;
    let container = pod
        .containers
        .iter()
        .find(|c| c.name == crate::finetunejob::trainer_job::TRAINER_CONTAINER)?;
    let limits = container.resources.as_ref()?.limits.as_ref()?;
    limits.get("memory").map(|q| q.0.clone())
}

/// The trainer container's terminated state in `pod`, if it has ended.
fn trainer_terminated(pod: &Pod) -> Option<&ContainerStateTerminated> {
    container_terminated(pod, crate::finetunejob::trainer_job::TRAINER_CONTAINER)
}

/// Container `name`'s terminated state in `pod`, if it has ended.
fn container_terminated<'a>(pod: &'a Pod, name: &str) -> Option<&'a ContainerStateTerminated> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == name)?
        .state
        .as_ref()?
        .terminated
        .as_ref()
}

fn cut(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((index, _)) => &text[..index],
        None => text,
    }
}

/// Phase, message and conditions for a validated job.
#[derive(Clone, Debug, PartialEq)]
pub struct PhasePlan {
    pub phase: JobPhase,
    pub message: String,
    pub conditions: Vec<Desired<'static>>,
}

/// What a validated job's status says given its trainer (and whether the user asked
/// to suspend it).
pub fn plan_phase(suspend: bool, state: &TrainerState) -> PhasePlan {
    use TrainerState::*;
    let admitted = |status, reason, message: &str| Desired {
        type_: conditions::ADMITTED,
        status,
        reason,
        message: message.to_owned(),
    };
    let running = |status, reason, message: &str| Desired {
        type_: conditions::RUNNING,
        status,
        reason,
        message: message.to_owned(),
    };
    let finished = |complete: bool, reason: &'static str, message: &str| {
        vec![
            Desired {
                type_: conditions::COMPLETE,
                status: complete,
                reason,
                message: message.to_owned(),
            },
            Desired {
                type_: conditions::FAILED,
                status: !complete,
                reason,
                message: message.to_owned(),
            },
        ]
    };
    match state {
        Succeeded => {
            let message = "training finished; the adapter is in status.result".to_owned();
            let mut desired = vec![running(false, "Succeeded", &message)];
            desired.extend(finished(true, "Succeeded", &message));
            PhasePlan {
                phase: JobPhase::Succeeded,
                message,
                conditions: desired,
            }
        }
        Failed {
            message,
            trainer_reason,
            ..
        } => {
            let reason = trainer_reason.map_or("TrainerFailed", TrainerFailureReason::as_str);
            let mut desired = vec![running(false, reason, message)];
            desired.extend(finished(false, reason, message));
            PhasePlan {
                phase: JobPhase::Failed,
                message: message.clone(),
                conditions: desired,
            }
        }
        _ if suspend => {
            let message =
                "suspended; training resumes from the last checkpoint when spec.suspend is false"
                    .to_owned();
            PhasePlan {
                phase: JobPhase::Suspended,
                conditions: vec![running(false, "Suspended", &message)],
                message,
            }
        }
        Absent | Deleting => {
            let message = "creating the trainer Job".to_owned();
            PhasePlan {
                phase: JobPhase::Queued,
                conditions: vec![running(false, "Pending", &message)],
                message,
            }
        }
        AwaitingAdmission => {
            let message = "waiting for Kueue to admit the trainer Job".to_owned();
            PhasePlan {
                phase: JobPhase::Queued,
                conditions: vec![
                    admitted(false, "WaitingForQueue", &message),
                    running(false, "Pending", &message),
                ],
                message,
            }
        }
        Starting { retries } => {
            let message = if *retries == 0 {
                "waiting for the trainer pod to start".to_owned()
            } else {
                format!(
                    "restarting the trainer (retry {retries}); it resumes from the last checkpoint"
                )
            };
            PhasePlan {
                phase: JobPhase::Queued,
                conditions: vec![
                    admitted(true, "Admitted", "the trainer Job is admitted"),
                    running(false, "PodStarting", &message),
                ],
                message,
            }
        }
        Running { retries } => {
            let message = if *retries == 0 {
                "training".to_owned()
            } else {
                format!("training (resumed after {retries} failed pod(s))")
            };
            PhasePlan {
                phase: JobPhase::Running,
                conditions: vec![
                    admitted(true, "Admitted", "the trainer Job is admitted"),
                    running(true, "TrainerRunning", &message),
                ],
                message,
            }
        }
    }
}

#[cfg(test)]
mod tests;
