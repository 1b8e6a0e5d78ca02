//! Status conditions the Kubernetes way: one entry per type, `lastTransitionTime`
//! moves only when the status flips, `observedGeneration` says which spec was judged.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Condition types of a FineTuneJob (docs/design.md).
pub const VALIDATED: &str = "Validated";
pub const ADMITTED: &str = "Admitted";
pub const RUNNING: &str = "Running";
pub const COMPLETE: &str = "Complete";
pub const FAILED: &str = "Failed";

/// Condition types of a ModelDeployment: the model it names resolved to something
/// servable, and at least one serving pod is ready.
pub const MODEL_RESOLVED: &str = "ModelResolved";
pub const AVAILABLE: &str = "Available";
/// Every ready serving pod serves exactly the spec's adapters (runtime `builtin`).
pub const ADAPTERS_LOADED: &str = "AdaptersLoaded";

/// What a condition should say now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired<'a> {
    pub type_: &'a str,
    pub status: bool,
    pub reason: &'a str,
    pub message: String,
}

/// Sets a condition in `conditions`, keeping its transition time when its status does
/// not change (a reconcile that only repeats itself must not look like news).
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    desired: Desired<'_>,
    generation: Option<i64>,
    now: &Time,
) {
    let status = if desired.status { "True" } else { "False" }.to_owned();
    let previous = conditions.iter().position(|c| c.type_ == desired.type_);
    let last_transition_time = match previous {
        Some(index) if conditions[index].status == status => {
            conditions[index].last_transition_time.clone()
        }
        _ => now.clone(),
    };
    let condition = Condition {
        type_: desired.type_.to_owned(),
        status,
        reason: desired.reason.to_owned(),
        message: desired.message,
        observed_generation: generation,
        last_transition_time,
    };
    match previous {
        Some(index) => conditions[index] = condition,
        None => conditions.push(condition),
    }
}

/// The condition of a type, if set.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether a condition of this type is `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;
    use anneal_crds::jiff::Timestamp;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).unwrap())
    }

    fn desired(status: bool, reason: &'static str) -> Desired<'static> {
        Desired {
            type_: RUNNING,
            status,
            reason,
            message: format!("{reason} message"),
        }
    }

    #[test]
    fn transition_time_moves_only_when_the_status_flips() {
        let mut conditions = Vec::new();
        set_condition(&mut conditions, desired(false, "Queued"), Some(1), &at(10));
        set_condition(&mut conditions, desired(false, "Pending"), Some(2), &at(20));
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].last_transition_time, at(10));
        assert_eq!(conditions[0].reason, "Pending");
        assert_eq!(conditions[0].observed_generation, Some(2));
        set_condition(
            &mut conditions,
            desired(true, "TrainerRunning"),
            Some(2),
            &at(30),
        );
        assert_eq!(conditions[0].last_transition_time, at(30));
        assert_eq!(conditions[0].status, "True");
        assert!(is_true(&conditions, RUNNING));
        assert!(!is_true(&conditions, COMPLETE));
    }
}
