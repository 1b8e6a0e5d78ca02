//! Why a trainer stopped, in the cases the trainer itself can tell: the reason of the
//! FineTuneJob's `Failed` condition. The trainer writes `{reason}: {message}` as its
//! container's termination message (`ANNEAL_TERMINATION_LOG`); the operator reads the
//! reason back from the failed pod. A closed set: a pod can put no other word into a
//! condition reason.

/// The reason of a failure the trainer recognised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrainerFailureReason {
    /// A loss or gradient norm that is not a finite number; the last good checkpoint is kept.
    Diverged,
    /// A step ran out of device memory, also when tried again at half the micro-batch.
    OutOfMemory,
    /// The job ran past `spec.activeDeadlineSeconds`; its checkpoints are kept.
    DeadlineExceeded,
}

impl TrainerFailureReason {
    const ALL: [TrainerFailureReason; 3] = [
        TrainerFailureReason::Diverged,
        TrainerFailureReason::OutOfMemory,
        TrainerFailureReason::DeadlineExceeded,
    ];

    /// The condition reason, CamelCase as Kubernetes reasons are.
    pub fn as_str(self) -> &'static str {
        match self {
            TrainerFailureReason::Diverged => "Diverged",
            TrainerFailureReason::OutOfMemory => "OutOfMemory",
            TrainerFailureReason::DeadlineExceeded => "DeadlineExceeded",
        }
    }

    /// The termination message that carries this reason and `message`.
    pub fn termination_message(self, message: &str) -> String {
        format!("{}: {message}", self.as_str())
    }

    /// The reason a termination message starts with, and the message after it.
    pub fn parse(text: &str) -> Option<(Self, &str)> {
        Self::ALL.into_iter().find_map(|reason| {
            text.strip_prefix(reason.as_str())
                .and_then(|rest| rest.strip_prefix(": "))
                .map(|rest| (reason, rest))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_termination_message_carries_its_reason_both_ways() {
        let text =
            TrainerFailureReason::Diverged.termination_message("training diverged at step 3");
        assert_eq!(text, "Diverged: training diverged at step 3");
        assert_eq!(
            TrainerFailureReason::parse(&text),
            Some((
                TrainerFailureReason::Diverged,
                "training diverged at step 3"
            ))
        );
        for other in [
            "training diverged",
            "Diverged training",
            "OutOfSpace: disk",
            "",
        ] {
            assert_eq!(TrainerFailureReason::parse(other), None, "{other}");
        }
    }
}
