//! Folding a whole stored `events.jsonl`: how the controller rebuilds the
//! report-owned status from storage when the posted events were lost (an operator
//! restart while the trainer could not reach it).

use anneal_crds::events::TrainerEvent;

use super::fold::{FoldRules, ReportedStatus, fold_event};

/// A line of `events.jsonl` that is not an event.
#[derive(Debug, thiserror::Error)]
#[error("events.jsonl line {line}: {source}")]
pub struct EventsFileError {
    /// 1-based, as editors count.
    pub line: usize,
    #[source]
    pub source: serde_json::Error,
}

/// Folds every event of `text` into `status` and returns how many were new (not
/// repeats, not refused by `rules`: the file is the trainer's, as untrusted as its
/// posts). Blank lines are skipped. The whole file is parsed before anything is
/// folded, so on error `status` is untouched.
pub fn fold_events_jsonl(
    status: &mut ReportedStatus,
    text: &str,
    rules: &FoldRules,
) -> Result<usize, EventsFileError> {
    let events = text
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            TrainerEvent::from_line(line).map_err(|source| EventsFileError {
                line: index + 1,
                source,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(events
        .iter()
        .filter(|event| fold_event(status, event, rules).is_applied())
        .count())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENTS: &str = r#"{"seq":1,"time":"t","type":"phase","phase":"Running"}
{"seq":2,"time":"t","type":"progress","epoch":0.5,"step":1,"totalSteps":2,"percent":50}

{"seq":3,"time":"t","type":"metrics","step":1,"epoch":0.5,"trainLoss":2.0,"validLoss":2.5}
{"seq":4,"time":"t","type":"checkpoint","name":"ckpt-1","step":1,"epoch":0.5,"uri":"s3://b/ckpt-1"}
{"seq":5,"time":"t","type":"metrics","step":2,"epoch":1.0,"trainLoss":1.5}
{"seq":6,"time":"t","type":"phase","phase":"Succeeded","result":{"modelId":"ft:a:b:ckpt-2","uri":"s3://b/final"}}
"#;

    #[test]
    fn a_whole_file_folds_into_the_final_status() {
        let mut status = ReportedStatus::default();
        assert_eq!(
            fold_events_jsonl(&mut status, EVENTS, &FoldRules::for_run("s3://b")).unwrap(),
            6
        );
        assert_eq!(status.last_event_seq, Some(6));
        let metrics = status.metrics.as_ref().unwrap();
        assert_eq!(
            (metrics.train_loss, metrics.valid_loss),
            (Some(1.5), Some(2.5))
        );
        assert_eq!(status.checkpoints.len(), 1);
        assert_eq!(status.result.as_ref().unwrap().model_id, "ft:a:b:ckpt-2");

        // Folding the file again on top of a status that already holds it is harmless.
        let again = status.clone();
        assert_eq!(
            fold_events_jsonl(&mut status, EVENTS, &FoldRules::for_run("s3://b")).unwrap(),
            0
        );
        assert_eq!(status, again);
    }

    #[test]
    fn a_bad_line_is_named_and_nothing_is_folded() {
        let text = EVENTS.replace(r#""type":"checkpoint""#, r#""type":"bogus""#);
        let mut status = ReportedStatus::default();
        let error =
            fold_events_jsonl(&mut status, &text, &FoldRules::for_run("s3://b")).unwrap_err();
        assert_eq!(error.line, 5);
        assert!(
            error.to_string().starts_with("events.jsonl line 5: "),
            "{error}"
        );
        assert_eq!(status, ReportedStatus::default());
    }
}
