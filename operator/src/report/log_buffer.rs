//! The recent log lines of one job: a bounded ring (old lines fall off, memory stays
//! flat however long a run is) plus a broadcast channel that followers of
//! `GET .../logs?follow=true` receive new lines from.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::broadcast;

use super::fold_rules::{MESSAGE_BYTES_MAX, cut};

/// Bytes of one buffered line: a whole trainer message plus its prefix.
pub const LINE_BYTES_MAX: usize = MESSAGE_BYTES_MAX + 256;

/// Lines kept per job unless configured otherwise.
pub const DEFAULT_LOG_LINES: usize = 1000;

/// Lines a follower may fall behind before it is told it skipped some.
const FOLLOWER_BACKLOG: usize = 256;

/// What followers receive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogUpdate {
    Line(Arc<str>),
    /// The trainer reported a terminal phase: the run's log is complete.
    Finished,
}

pub struct LogBuffer {
    lines: VecDeque<Arc<str>>,
    capacity: usize,
    finished: bool,
    followers: broadcast::Sender<LogUpdate>,
}

/// A follower's starting point: the buffered lines and the feed of what comes after,
/// taken together so no line is missed or seen twice.
pub struct LogSubscription {
    pub backlog: Vec<Arc<str>>,
    /// `None` when the run's log is already complete.
    pub updates: Option<broadcast::Receiver<LogUpdate>>,
}

impl LogBuffer {
    pub fn new(capacity: usize) -> Self {
        Self {
            lines: VecDeque::with_capacity(capacity.min(64)),
            capacity: capacity.max(1),
            finished: false,
            followers: broadcast::channel(FOLLOWER_BACKLOG).0,
        }
    }

    /// Adds a line, cut to [`LINE_BYTES_MAX`]: a trainer's log message is its own to
    /// choose, and the buffer's memory must not be.
    pub fn push(&mut self, line: String) {
        let line: Arc<str> = cut(&line, LINE_BYTES_MAX).into();
        if self.lines.len() == self.capacity {
            self.lines.pop_front();
        }
        self.lines.push_back(line.clone());
        // No followers is the usual case, not an error.
        let _ = self.followers.send(LogUpdate::Line(line));
    }

    /// Ends every follow; called on a terminal phase event.
    pub fn finish(&mut self) {
        self.finished = true;
        let _ = self.followers.send(LogUpdate::Finished);
    }

    /// A new trainer run of the same job (a retried pod) is writing again.
    pub fn reopen(&mut self) {
        self.finished = false;
    }

    /// The newest `tail` lines (all when `None`).
    pub fn tail(&self, tail: Option<usize>) -> Vec<Arc<str>> {
        let skip = tail.map_or(0, |tail| self.lines.len().saturating_sub(tail));
        self.lines.iter().skip(skip).cloned().collect()
    }

    pub fn subscribe(&self, tail: Option<usize>) -> LogSubscription {
        LogSubscription {
            backlog: self.tail(tail),
            updates: (!self.finished).then(|| self.followers.subscribe()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_newest_lines() {
        let mut buffer = LogBuffer::new(3);
        for i in 0..5 {
            buffer.push(format!("line {i}"));
        }
        let all: Vec<String> = buffer.tail(None).iter().map(|l| l.to_string()).collect();
        assert_eq!(all, ["line 2", "line 3", "line 4"]);
        assert_eq!(&*buffer.tail(Some(1))[0], "line 4");
        assert_eq!(buffer.tail(Some(10)).len(), 3);
    }

    #[test]
    fn followers_get_new_lines_then_the_end() {
        let mut buffer = LogBuffer::new(10);
        buffer.push("before".into());
        let mut subscription = buffer.subscribe(None);
        assert_eq!(subscription.backlog.len(), 1);
        buffer.push("after".into());
        buffer.finish();
        let updates = subscription.updates.as_mut().unwrap();
        assert_eq!(updates.try_recv().unwrap(), LogUpdate::Line("after".into()));
        assert_eq!(updates.try_recv().unwrap(), LogUpdate::Finished);
        assert!(buffer.subscribe(None).updates.is_none());
        buffer.reopen();
        assert!(buffer.subscribe(None).updates.is_some());
    }
}
