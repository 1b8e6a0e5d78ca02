//! A ModelDeployment's phase, conditions and message, from how its model resolved and
//! what its Deployment reports. Pure, so a table test covers every case and the
//! controller only writes what it returns.

use anneal_crds::modeldeployment::DeploymentPhase;
use k8s_openapi::api::apps::v1::Deployment;

use crate::shared::conditions::{AVAILABLE, Desired, MODEL_RESOLVED};

/// How the model resolved, as the status needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelState<'a> {
    Resolved { summary: &'a str },
    Waiting { reason: &'a str, message: &'a str },
    Failed { reason: &'a str, message: &'a str },
}

/// What the status should say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServingStatus<'a> {
    pub phase: DeploymentPhase,
    pub ready_replicas: u32,
    pub message: String,
    pub conditions: Vec<Desired<'a>>,
}

/// The Deployment's progress condition when it gave up (`ProgressDeadlineExceeded`).
fn stuck(deployment: &Deployment) -> Option<String> {
    deployment
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| {
            c.type_ == "Progressing"
                && c.status == "False"
                && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
        })
        .map(|c| c.message.clone().unwrap_or_default())
}

/// The status of a deployment that wants `replicas` pods; `deployment` is ours, if it exists.
pub fn plan_status<'a>(
    model: ModelState<'a>,
    replicas: u32,
    deployment: Option<&Deployment>,
) -> ServingStatus<'a> {
    let observed = deployment.and_then(|d| d.status.as_ref());
    let ready = observed
        .and_then(|s| s.ready_replicas)
        .map_or(0, |n| u32::try_from(n).unwrap_or(0));
    let updated = observed
        .and_then(|s| s.updated_replicas)
        .map_or(0, |n| u32::try_from(n).unwrap_or(0));
    let stuck = deployment.and_then(stuck);

    let (available, available_reason, available_message) = if ready >= 1 {
        let rollout = if updated < replicas {
            format!(" ({updated} running the current spec; rolling out)")
        } else {
            String::new()
        };
        (
            true,
            "MinimumReplicasAvailable",
            format!("{ready} of {replicas} serving pods ready{rollout}"),
        )
    } else if deployment.is_none() {
        (
            false,
            "NoDeployment",
            "no serving pods: the model is not resolved".to_owned(),
        )
    } else if replicas == 0 {
        (false, "ScaledToZero", "spec.replicas is 0".to_owned())
    } else if let Some(message) = &stuck {
        (
            false,
            "ProgressDeadlineExceeded",
            format!("no serving pod became ready in time: {message}"),
        )
    } else {
        (
            false,
            "Loading",
            format!("0 of {replicas} serving pods ready: fetching and loading the model"),
        )
    };

    let (phase, resolved, message) = match model {
        ModelState::Failed { reason, message } => (
            DeploymentPhase::Failed,
            Desired {
                type_: MODEL_RESOLVED,
                status: false,
                reason,
                message: message.to_owned(),
            },
            message.to_owned(),
        ),
        ModelState::Waiting { reason, message } => (
            DeploymentPhase::Pending,
            Desired {
                type_: MODEL_RESOLVED,
                status: false,
                reason,
                message: message.to_owned(),
            },
            if available {
                // Pods of an earlier spec keep serving what they loaded.
                format!("{message}; {available_message}, serving the model they loaded")
            } else {
                message.to_owned()
            },
        ),
        ModelState::Resolved { summary } => {
            let phase = if available {
                DeploymentPhase::Ready
            } else if replicas == 0 {
                DeploymentPhase::Pending
            } else if stuck.is_some() {
                DeploymentPhase::Failed
            } else {
                DeploymentPhase::Loading
            };
            (
                phase,
                Desired {
                    type_: MODEL_RESOLVED,
                    status: true,
                    reason: "Resolved",
                    message: summary.to_owned(),
                },
                available_message.clone(),
            )
        }
    };
    ServingStatus {
        phase,
        ready_replicas: ready,
        message,
        conditions: vec![
            resolved,
            Desired {
                type_: AVAILABLE,
                status: available,
                reason: available_reason,
                message: available_message,
            },
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentCondition, DeploymentStatus};

    fn deployment(ready: i32, updated: i32, stuck: bool) -> Deployment {
        Deployment {
            status: Some(DeploymentStatus {
                ready_replicas: Some(ready),
                updated_replicas: Some(updated),
                conditions: stuck.then(|| {
                    vec![DeploymentCondition {
                        type_: "Progressing".to_owned(),
                        status: "False".to_owned(),
                        reason: Some("ProgressDeadlineExceeded".to_owned()),
                        message: Some("ReplicaSet \"x\" has timed out progressing.".to_owned()),
                        ..DeploymentCondition::default()
                    }]
                }),
                ..DeploymentStatus::default()
            }),
            ..Deployment::default()
        }
    }

    type Case = (
        ModelState<'static>,
        u32,
        Option<Deployment>,
        DeploymentPhase,
        &'static str,
        u32,
    );

    const RESOLVED: ModelState<'static> = ModelState::Resolved {
        summary: "FineTuneJob a checkpoint final as ft:m:a:ckpt-9",
    };

    #[test]
    fn phases_follow_the_model_and_the_ready_pods() {
        let waiting = ModelState::Waiting {
            reason: "FineTuneJobNotReady",
            message: "waiting for FineTuneJob a to succeed; it is Running",
        };
        let failed = ModelState::Failed {
            reason: "CheckpointNotFound",
            message: "no checkpoint ckpt-7",
        };
        // (model, replicas, Deployment, phase, Available's reason, ready replicas)
        let cases: [Case; 9] = [
            (
                waiting,
                1,
                None,
                DeploymentPhase::Pending,
                "NoDeployment",
                0,
            ),
            (failed, 1, None, DeploymentPhase::Failed, "NoDeployment", 0),
            (
                RESOLVED,
                2,
                Some(deployment(0, 0, false)),
                DeploymentPhase::Loading,
                "Loading",
                0,
            ),
            (
                RESOLVED,
                2,
                Some(Deployment::default()),
                DeploymentPhase::Loading,
                "Loading",
                0,
            ),
            (
                RESOLVED,
                2,
                Some(deployment(1, 2, false)),
                DeploymentPhase::Ready,
                "MinimumReplicasAvailable",
                1,
            ),
            (
                RESOLVED,
                0,
                Some(deployment(0, 0, false)),
                DeploymentPhase::Pending,
                "ScaledToZero",
                0,
            ),
            (
                RESOLVED,
                1,
                Some(deployment(0, 1, true)),
                DeploymentPhase::Failed,
                "ProgressDeadlineExceeded",
                0,
            ),
            // The job went away after its pods loaded the model: they keep serving.
            (
                waiting,
                1,
                Some(deployment(1, 1, false)),
                DeploymentPhase::Pending,
                "MinimumReplicasAvailable",
                1,
            ),
            (
                failed,
                1,
                Some(deployment(1, 1, false)),
                DeploymentPhase::Failed,
                "MinimumReplicasAvailable",
                1,
            ),
        ];
        for (model, replicas, deployment, phase, available_reason, ready) in cases {
            let status = plan_status(model, replicas, deployment.as_ref());
            let label = format!("{model:?} {replicas} {deployment:?}");
            assert_eq!(status.phase, phase, "{label}");
            assert_eq!(status.ready_replicas, ready, "{label}");
            assert_eq!(status.conditions[1].reason, available_reason, "{label}");
            assert_eq!(status.conditions[1].status, ready >= 1, "{label}");
            let resolved = &status.conditions[0];
            assert_eq!(resolved.type_, MODEL_RESOLVED);
            assert_eq!(
                resolved.status,
                matches!(model, ModelState::Resolved { .. }),
                "{label}"
            );
        }
    }

    #[test]
    fn messages_say_what_is_going_on() {
        let status = plan_status(
            ModelState::Waiting {
                reason: "FineTuneJobNotReady",
                message: "waiting for FineTuneJob a to succeed; it is Running",
            },
            1,
            None,
        );
        assert_eq!(
            status.message,
            "waiting for FineTuneJob a to succeed; it is Running"
        );
        assert_eq!(status.conditions[0].reason, "FineTuneJobNotReady");
        let rolling = plan_status(RESOLVED, 2, Some(&deployment(2, 1, false)));
        assert_eq!(
            rolling.message,
            "2 of 2 serving pods ready (1 running the current spec; rolling out)"
        );
        let stuck = plan_status(RESOLVED, 1, Some(&deployment(0, 1, true)));
        assert_eq!(
            stuck.message,
            "no serving pod became ready in time: ReplicaSet \"x\" has timed out progressing."
        );
        assert_eq!(
            stuck.conditions[0].message,
            "FineTuneJob a checkpoint final as ft:m:a:ckpt-9"
        );
    }
}
