//! The rules a trainer's events must keep before they touch a job's status, and the
//! bounds on what the status keeps of them. A trainer pod runs what the job's author
//! chose, so its events are untrusted input: without these, one event with seq
//! `u64::MAX` froze the status for good, a `result.uri` anywhere was served by a
//! ModelDeployment of `final`, and unbounded checkpoint lists grew each status patch
//! to hundreds of megabytes.

use anneal_crds::events::{EventBody, TrainerEvent};

/// How far one event's seq may lie past the last one held. The trainer numbers its
/// events one by one and, when the operator is away, drops at most the progress,
/// metrics and log events its queue cannot hold; ten million is years of that.
pub const SEQ_STEP_MAX: u64 = 10_000_000;
/// Checkpoints the status lists: the newest ones, plus the best if it is older.
pub const STATUS_CHECKPOINTS_MAX: usize = 20;
/// Sample answers a checkpoint shows in the status, and the bytes of each.
pub const SAMPLES_MAX: usize = 8;
pub const SAMPLE_BYTES_MAX: usize = 2048;
/// Bytes of a trainer message (phase messages, log lines, milestones) that are kept.
pub const MESSAGE_BYTES_MAX: usize = 4096;
/// Bytes of a reported model id.
const MODEL_ID_BYTES_MAX: usize = 256;
/// Bytes of a reported checkpoint name (a DNS label's length).
const CHECKPOINT_NAME_BYTES_MAX: usize = 63;

/// What a job's events are checked against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoldRules {
    /// The run's folder, `{output}/{namespace}/{job}/{uid}`, without a trailing `/`:
    /// every URI an event reports must lie inside it.
    run_prefix: String,
}

/// Why an event was refused; `as_str` is the label of the refused-events counter.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("seq {seq} jumps more than {SEQ_STEP_MAX} past the last one held ({last})")]
    SeqJump { seq: u64, last: u64 },
    #[error("{field} {uri:?} is not inside the job's run folder {run_prefix}/")]
    UriOutsideRun {
        field: &'static str,
        uri: String,
        run_prefix: String,
    },
    #[error("{field}: {problem}")]
    BadValue {
        field: &'static str,
        problem: String,
    },
}

impl Refusal {
    pub fn as_str(&self) -> &'static str {
        match self {
            Refusal::SeqJump { .. } => "seq_jump",
            Refusal::UriOutsideRun { .. } => "uri_outside_run",
            Refusal::BadValue { .. } => "bad_value",
        }
    }
}

impl FoldRules {
    pub fn for_run(run_prefix: &str) -> Self {
        Self {
            run_prefix: run_prefix.trim_end_matches('/').to_owned(),
        }
    }

    pub fn run_prefix(&self) -> &str {
        &self.run_prefix
    }

    /// Whether `event` may be folded after the events up to `last_seq`.
    pub fn check(&self, last_seq: Option<u64>, event: &TrainerEvent) -> Result<(), Refusal> {
        let last = last_seq.unwrap_or(0);
        if event.seq.saturating_sub(last) > SEQ_STEP_MAX {
            return Err(Refusal::SeqJump {
                seq: event.seq,
                last,
            });
        }
        match &event.body {
            EventBody::Checkpoint(checkpoint) => {
                check_checkpoint_name(&checkpoint.name)?;
                self.check_uri("checkpoint.uri", &checkpoint.uri)
            }
            EventBody::Phase {
                result: Some(result),
                ..
            } => {
                if result.model_id.len() > MODEL_ID_BYTES_MAX {
                    return Err(Refusal::BadValue {
                        field: "result.modelId",
                        problem: format!("longer than {MODEL_ID_BYTES_MAX} bytes"),
                    });
                }
                self.check_uri("result.uri", &result.uri)
            }
            _ => Ok(()),
        }
    }

    /// A URI inside the run folder: the prefix and `/`, then path segments none of
    /// which climbs out (`..`) or is empty.
    pub fn check_uri(&self, field: &'static str, uri: &str) -> Result<(), Refusal> {
        let inside = uri
            .strip_prefix(self.run_prefix.as_str())
            .and_then(|rest| rest.strip_prefix('/'))
            .is_some_and(|rest| {
                !rest.is_empty()
                    && !rest.contains('\\')
                    && rest
                        .trim_end_matches('/')
                        .split('/')
                        .all(|segment| !matches!(segment, "" | "." | ".."))
            });
        if inside {
            Ok(())
        } else {
            Err(Refusal::UriOutsideRun {
                field,
                uri: cut(uri, 512),
                run_prefix: self.run_prefix.clone(),
            })
        }
    }
}

/// Checkpoint names are what `spec.model.fineTuneJob.checkpoint` names: short, plain.
fn check_checkpoint_name(name: &str) -> Result<(), Refusal> {
    let plain = !name.is_empty()
        && name.len() <= CHECKPOINT_NAME_BYTES_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if plain {
        Ok(())
    } else {
        Err(Refusal::BadValue {
            field: "checkpoint.name",
            problem: format!(
                "must be 1 to {CHECKPOINT_NAME_BYTES_MAX} characters of a-z, 0-9, '-' and '.'"
            ),
        })
    }
}

/// `text` cut to at most `max` bytes at a character boundary, marked with `…` when cut.
pub fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    const MARK: &str = "…";
    let mut end = max.saturating_sub(MARK.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{MARK}", &text[..end])
}

#[cfg(test)]
mod tests {
    use anneal_crds::finetunejob::{CheckpointStatus, JobPhase, JobResult};

    use super::*;

    fn checkpoint(name: &str, uri: &str) -> TrainerEvent {
        TrainerEvent {
            seq: 1,
            time: "t".into(),
            body: EventBody::Checkpoint(CheckpointStatus {
                name: name.into(),
                uri: uri.into(),
                ..CheckpointStatus::default()
            }),
        }
    }

    fn succeeded(uri: &str) -> TrainerEvent {
        TrainerEvent {
            seq: 1,
            time: "t".into(),
            body: EventBody::Phase {
                phase: JobPhase::Succeeded,
                message: None,
                result: Some(JobResult {
                    model_id: "ft:m:j:ckpt-1".into(),
                    uri: uri.into(),
                    stopped_early: None,
                }),
            },
        }
    }

    #[test]
    fn uris_must_lie_inside_the_run_folder() {
        let rules = FoldRules::for_run("s3://bucket/out/ns/job/uid-1/");
        let inside = "s3://bucket/out/ns/job/uid-1/checkpoints/ckpt-3";
        assert_eq!(rules.check(None, &checkpoint("ckpt-3", inside)), Ok(()));
        assert_eq!(
            rules.check(None, &succeeded("s3://bucket/out/ns/job/uid-1/final/")),
            Ok(())
        );
        for outside in [
            "s3://bucket/out/ns/job/uid-2/checkpoints/ckpt-3",
            "s3://bucket/out/ns/job/uid-1",
            "s3://bucket/out/ns/job/uid-1/",
            "s3://bucket/out/ns/job/uid-10/final",
            "s3://bucket/out/ns/job/uid-1/../uid-2/final",
            "s3://bucket/out/ns/job/uid-1//final",
            "s3://other/out/ns/job/uid-1/final",
            "pvc://claim/out/ns/job/uid-1/final",
        ] {
            let refusal = rules.check(None, &succeeded(outside)).unwrap_err();
            assert_eq!(refusal.as_str(), "uri_outside_run", "{outside}");
            assert!(refusal.to_string().contains("result.uri"), "{refusal}");
            assert_eq!(
                rules
                    .check(None, &checkpoint("ckpt-3", outside))
                    .unwrap_err()
                    .as_str(),
                "uri_outside_run"
            );
        }
    }

    #[test]
    fn seqs_move_forward_by_a_bounded_step() {
        let rules = FoldRules::for_run("s3://b");
        let mut event = checkpoint("ckpt-1", "s3://b/c");
        event.seq = u64::MAX;
        assert_eq!(
            rules.check(Some(7), &event),
            Err(Refusal::SeqJump {
                seq: u64::MAX,
                last: 7
            })
        );
        event.seq = 7 + SEQ_STEP_MAX;
        assert_eq!(rules.check(Some(7), &event), Ok(()));
        event.seq = SEQ_STEP_MAX + 1;
        assert!(rules.check(None, &event).is_err());
    }

    #[test]
    fn checkpoint_names_and_model_ids_are_plain_and_short() {
        let rules = FoldRules::for_run("s3://b");
        for bad in ["", "../x", "Ckpt-1", "a b", &"c".repeat(64)] {
            assert_eq!(
                rules
                    .check(None, &checkpoint(bad, "s3://b/c"))
                    .unwrap_err()
                    .as_str(),
                "bad_value",
                "{bad:?}"
            );
        }
        let mut long_id = succeeded("s3://b/final");
        if let EventBody::Phase {
            result: Some(result),
            ..
        } = &mut long_id.body
        {
            result.model_id = "m".repeat(257);
        }
        assert!(rules.check(None, &long_id).is_err());
    }

    #[test]
    fn cut_keeps_whole_characters_and_marks_the_cut() {
        assert_eq!(cut("short", 10), "short");
        let cut_text = cut(&"é".repeat(100), 11);
        assert!(
            cut_text.len() <= 11 && cut_text.ends_with('…'),
            "{cut_text}"
        );
        assert_eq!(cut_text.trim_end_matches('…'), "éééé");
    }
}
