//! `spec.activeDeadlineSeconds` for a trainer about to be created: counted from the
//! job's `status.startTime`. A job that has run before gets the absolute deadline
//! (`ANNEAL_DEADLINE`), so a resumed or rescheduled trainer does not start the clock
//! again; a job's first trainer counts the seconds from its own start (before it runs,
//! the job may wait in a queue for hours). The Job's own `activeDeadlineSeconds`, a
//! margin later, stops a trainer that cannot reach a step boundary; Kubernetes resets
//! it when Kueue unsuspends the Job.

use anneal_crds::FineTuneJob;
use anneal_crds::jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::EnvVar;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::trainer_job::TRAINER_CONTAINER;

/// How long after its deadline Kubernetes stops a trainer that has not stopped
/// itself: one long step and a checkpoint's upload.
pub const BACKSTOP_SECONDS: i64 = 900;

/// What a new trainer is told of the deadline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrainerDeadline {
    /// The job sets none.
    Unset,
    /// Already past: no trainer is started, the job fails with this message.
    Passed(String),
    /// `ANNEAL_DEADLINE` (none for a job's first trainer) and the Job's own
    /// `activeDeadlineSeconds`.
    Set {
        deadline: Option<Timestamp>,
        active_deadline_seconds: i64,
    },
}

/// The deadline of `job`'s next trainer, created at `now`.
pub fn trainer_deadline(job: &FineTuneJob, now: &Time) -> TrainerDeadline {
    let Some(seconds) = job.spec.active_deadline_seconds else {
        return TrainerDeadline::Unset;
    };
    let seconds = i64::try_from(seconds).unwrap_or(i64::MAX);
    let started = job.status.as_ref().and_then(|s| s.start_time.as_ref());
    let Some(started) = started else {
        return TrainerDeadline::Set {
            deadline: None,
            active_deadline_seconds: seconds.saturating_add(BACKSTOP_SECONDS),
        };
    };
    let deadline = started
        .0
        .saturating_add(SignedDuration::from_secs(seconds))
        .unwrap_or(Timestamp::MAX);
    let left = deadline.duration_since(now.0).as_secs();
    if left <= 0 {
        return TrainerDeadline::Passed(format!(
            "ran past spec.activeDeadlineSeconds ({seconds} s, from {}) before another trainer could start; the checkpoints are kept",
            started.0
        ));
    }
    TrainerDeadline::Set {
        deadline: Some(deadline),
        active_deadline_seconds: left.saturating_add(BACKSTOP_SECONDS),
    }
}

/// Puts `deadline` into the planned trainer Job.
pub fn apply_deadline(planned: &mut Job, deadline: &TrainerDeadline) {
    let TrainerDeadline::Set {
        deadline,
        active_deadline_seconds,
    } = deadline
    else {
        return;
    };
    let Some(spec) = planned.spec.as_mut() else {
        return;
    };
    spec.active_deadline_seconds = Some(*active_deadline_seconds);
    let Some(deadline) = deadline else {
        return;
    };
    let containers = spec
        .template
        .spec
        .iter_mut()
        .flat_map(|pod| pod.containers.iter_mut());
    for container in containers.filter(|c| c.name == TRAINER_CONTAINER) {
        container.env.get_or_insert_default().push(EnvVar {
            name: "ANNEAL_DEADLINE".to_owned(),
            value: Some(deadline.to_string()),
            value_from: None,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finetunejob::trainer_job::plan_trainer_job;
    use anneal_crds::manifest::parse_finetunejob;

    fn job(deadline: Option<u64>, started: Option<i64>) -> FineTuneJob {
        let mut job = parse_finetunejob(
            "apiVersion: anneal.dev/v1alpha1\nkind: FineTuneJob\nmetadata: {name: j, namespace: team-a}\nspec:\n  baseModel: {name: anneal-tiny, source: \"s3://models/tiny\"}\n  dataset: {train: \"s3://data/train.jsonl\"}\n",
        )
        .unwrap();
        job.metadata.uid = Some("uid-1".to_owned());
        job.spec.active_deadline_seconds = deadline;
        job.status = Some(anneal_crds::FineTuneJobStatus {
            start_time: started.map(|s| Time(Timestamp::from_second(s).unwrap())),
            ..Default::default()
        });
        job
    }

    const NOW: i64 = 1_800_000_000;

    fn now() -> Time {
        Time(Timestamp::from_second(NOW).unwrap())
    }

    #[test]
    fn a_first_trainer_counts_from_its_start_and_a_later_one_gets_what_is_left() {
        assert_eq!(
            trainer_deadline(&job(None, Some(NOW)), &now()),
            TrainerDeadline::Unset
        );
        assert_eq!(
            trainer_deadline(&job(Some(3600), None), &now()),
            TrainerDeadline::Set {
                deadline: None,
                active_deadline_seconds: 3600 + BACKSTOP_SECONDS
            }
        );
        // Started 1000 s ago: 2600 s left.
        let later = trainer_deadline(&job(Some(3600), Some(NOW - 1000)), &now());
        assert_eq!(
            later,
            TrainerDeadline::Set {
                deadline: Some(Timestamp::from_second(NOW + 2600).unwrap()),
                active_deadline_seconds: 2600 + BACKSTOP_SECONDS
            }
        );
        let TrainerDeadline::Passed(message) =
            trainer_deadline(&job(Some(3600), Some(NOW - 3600)), &now())
        else {
            panic!("the deadline has passed")
        };
        assert_eq!(
            message,
            "ran past spec.activeDeadlineSeconds (3600 s, from 2027-01-15T07:00:00Z) before another trainer could start; the checkpoints are kept"
        );
    }

    #[test]
    fn the_planned_job_carries_the_deadline_and_its_backstop() {
        let job = job(Some(3600), Some(NOW - 1000));
        let config = crate::config::OperatorConfig {
            default_output_uri: Some("s3://runs".to_owned()),
            ..Default::default()
        };
        let mut planned = plan_trainer_job(&job, &config, None).unwrap();
        apply_deadline(&mut planned, &trainer_deadline(&job, &now()));
        let spec = planned.spec.as_ref().unwrap();
        assert_eq!(spec.active_deadline_seconds, Some(2600 + BACKSTOP_SECONDS));
        let env = spec.template.spec.as_ref().unwrap().containers[0]
            .env
            .as_ref()
            .unwrap();
        let deadline = env.iter().find(|e| e.name == "ANNEAL_DEADLINE").unwrap();
        assert_eq!(deadline.value.as_deref(), Some("2027-01-15T08:43:20Z"));
    }
}
