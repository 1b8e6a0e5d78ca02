//! What the poster says on stderr about reporting trouble: one line when a kind
//! of trouble starts and one when posts get through again, not one per retry.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ProblemKind {
    Unavailable,
    Refused,
    Rejected,
}

/// Says on stderr when reporting runs into trouble and when it recovers: one
/// line per kind of trouble, not one per retry.
pub(super) struct ProblemLog {
    url: String,
    failures_in_row: u32,
    told: Option<ProblemKind>,
}

impl ProblemLog {
    pub(super) fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            failures_in_row: 0,
            told: None,
        }
    }

    pub(super) fn note(&mut self, kind: ProblemKind, why: &str) {
        self.failures_in_row += 1;
        // One unavailable post is not worth a warning: a kept-alive connection the
        // operator just closed fails once and the retry half a second later works.
        if self.told == Some(kind) || (kind == ProblemKind::Unavailable && self.failures_in_row < 2)
        {
            return;
        }
        self.told = Some(kind);
        let then = match kind {
            ProblemKind::Unavailable => "retrying with backoff",
            ProblemKind::Refused => "trying again every 30s",
            ProblemKind::Rejected => "skipping those events",
        };
        eprintln!(
            "warning: reporting to {}: {why}; {then} (training goes on, events.jsonl keeps every event)",
            self.url
        );
    }

    pub(super) fn cleared(&mut self) {
        if self.told.take().is_some() {
            eprintln!("reporting to {}: delivering again", self.url);
        }
        self.failures_in_row = 0;
    }
}
