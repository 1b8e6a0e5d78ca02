//! The bounded queue of events waiting for the poster: when full it drops what a
//! later event supersedes (progress, metrics, logs) and keeps every phase and
//! checkpoint event.

use std::collections::VecDeque;

use anneal_crds::events::{EventBody, TrainerEvent};

/// Events waiting at most; beyond it progress, metrics and log events are dropped.
pub const QUEUE_CAPACITY: usize = 10_000;

/// Events waiting to be posted, oldest first, with a bound on how many.
///
/// When full, the oldest progress, metrics or log event makes room: those are
/// superseded by later ones anyway. Phase and checkpoint events are never
/// dropped (the status needs every one), even if that takes the queue past its
/// capacity.
#[derive(Debug)]
pub struct ReportQueue {
    events: VecDeque<TrainerEvent>,
    capacity: usize,
    dropped: u64,
}

impl ReportQueue {
    pub fn new(capacity: usize) -> Self {
        Self {
            events: VecDeque::new(),
            capacity,
            dropped: 0,
        }
    }

    /// Queues `event`; false when that cost an event (a queued one or this one).
    pub fn push(&mut self, event: TrainerEvent) -> bool {
        if self.events.len() >= self.capacity {
            if let Some(oldest) = self.events.iter().position(|e| may_drop(&e.body)) {
                self.events.remove(oldest);
                self.events.push_back(event);
                self.dropped += 1;
                return false;
            }
            // Nothing queued may go: this event is the oldest that may, or it must stay.
            if may_drop(&event.body) {
                self.dropped += 1;
                return false;
            }
        }
        self.events.push_back(event);
        true
    }

    /// Moves up to `max` of the oldest events to the end of `batch`.
    pub fn take_into(&mut self, max: usize, batch: &mut Vec<TrainerEvent>) {
        let n = max.min(self.events.len());
        batch.extend(self.events.drain(..n));
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

/// Whether a full queue may drop `body`: a later event of the same kind tells as much.
fn may_drop(body: &EventBody) -> bool {
    matches!(
        body,
        EventBody::Progress(_) | EventBody::Metrics { .. } | EventBody::Log { .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use anneal_crds::events::LogLevel;
    use anneal_crds::finetunejob::{JobPhase, Progress};

    fn event(seq: u64, body: EventBody) -> TrainerEvent {
        TrainerEvent {
            seq,
            time: "2026-11-23T06:00:00Z".into(),
            body,
        }
    }

    fn progress(seq: u64) -> TrainerEvent {
        event(
            seq,
            EventBody::Progress(Progress {
                step: seq,
                total_steps: 100,
                ..Default::default()
            }),
        )
    }

    fn log(seq: u64) -> TrainerEvent {
        event(
            seq,
            EventBody::Log {
                level: LogLevel::Info,
                message: format!("line {seq}"),
            },
        )
    }

    fn phase(seq: u64) -> TrainerEvent {
        event(
            seq,
            EventBody::Phase {
                phase: JobPhase::Running,
                message: None,
                result: None,
            },
        )
    }

    fn seqs(queue: &mut ReportQueue) -> Vec<u64> {
        let mut batch = Vec::new();
        queue.take_into(usize::MAX, &mut batch);
        batch.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn a_full_queue_drops_the_oldest_progress_metrics_or_log_event_first() {
        let mut queue = ReportQueue::new(3);
        assert!(queue.push(phase(1)));
        assert!(queue.push(progress(2)));
        assert!(queue.push(log(3)));
        // Full: the phase event stays, the oldest droppable one (2) goes.
        assert!(!queue.push(progress(4)));
        assert_eq!(queue.dropped(), 1);
        assert!(!queue.push(phase(5)));
        assert_eq!(queue.dropped(), 2);
        assert_eq!(seqs(&mut queue), [1, 4, 5]);
    }

    #[test]
    fn phase_and_checkpoint_events_are_never_dropped_even_past_capacity() {
        let mut queue = ReportQueue::new(2);
        queue.push(phase(1));
        queue.push(phase(2));
        // Nothing queued may go, so the newest progress event is the one dropped...
        assert!(!queue.push(progress(3)));
        // ...and a phase event goes in beyond the capacity.
        assert!(queue.push(phase(4)));
        assert_eq!(queue.dropped(), 1);
        assert_eq!(seqs(&mut queue), [1, 2, 4]);
    }

    #[test]
    fn batches_take_the_oldest_events_in_order() {
        let mut queue = ReportQueue::new(10);
        for seq in 1..=5 {
            queue.push(progress(seq));
        }
        let mut batch = vec![progress(0)];
        queue.take_into(2, &mut batch);
        assert_eq!(batch.iter().map(|e| e.seq).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(queue.len(), 3);
    }
}
