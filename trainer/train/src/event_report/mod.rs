//! Posting the run's events to the operator (`POST {ANNEAL_REPORT_URL}`, a JSON
//! array of events, bearer token from a mounted Secret), in the background so the
//! training loop never waits on the network.
//!
//! [`ReportSink`] puts each event in a bounded [`ReportQueue`]; a thread of its own
//! (a current-thread tokio runtime driving a reqwest client) takes up to
//! [`MAX_BATCH`] events at a time and posts them, retrying with [`Backoff`] while the
//! operator is unreachable. The operator drops repeats by `seq`, so re-sending a
//! batch whose reply was lost is harmless. Reporting never fails training:
//! `events.jsonl` in storage stays the complete record, and at the end
//! [`Reporter::finish`] waits a bounded time for the queue to drain and then lets
//! the trainer exit with its own exit code.

mod backoff;
mod error;
mod problem_log;
mod queue;
mod sender;

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anneal_crds::events::TrainerEvent;

pub use backoff::Backoff;
pub use error::ReportError;
pub use queue::{QUEUE_CAPACITY, ReportQueue};
pub use sender::MAX_BATCH;
use sender::{Poster, post_until_closed};

use crate::event_log::EventSink;

/// Where to report, as `trainer train` was told.
#[derive(Clone, Debug)]
pub struct ReportConfig {
    /// The operator's endpoint for this job, e.g.
    /// `http://anneal-operator.anneal-system.svc:8080/v1/jobs/NS/NAME/events`.
    pub url: String,
    /// The file holding the bearer token; read at every post so a token that
    /// appears or rotates after the pod started is picked up.
    pub token_file: Option<PathBuf>,
}

/// What the sink, the poster thread and `finish` share.
struct Shared {
    state: Mutex<State>,
    /// Wakes the poster: events queued, or the run is ending.
    work: Condvar,
    /// Wakes `finish`: a batch was delivered or given up, or the poster ended.
    progress: Condvar,
}

struct State {
    queue: ReportQueue,
    /// Events taken from the queue whose post has not succeeded yet.
    in_flight: usize,
    /// The run has ended: post what is left, then stop.
    closing: bool,
    poster_done: bool,
    /// Events the operator answered with a 4xx other than an auth refusal:
    /// sending them again would get the same answer.
    rejected: u64,
}

impl State {
    fn drained(&self) -> bool {
        self.queue.is_empty() && self.in_flight == 0
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic on the poster thread must not take the training thread with it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Reports a run's events to the operator from a background thread.
pub struct Reporter {
    shared: Arc<Shared>,
    poster: Option<JoinHandle<()>>,
    url: String,
}

impl Reporter {
    /// Starts the poster thread. Fails (for a warning; the run goes on unreported)
    /// only when the URL or the HTTP client is unusable.
    pub fn start(config: ReportConfig) -> Result<Self, ReportError> {
        let url = reqwest::Url::parse(&config.url).map_err(|source| ReportError::Url {
            url: config.url.clone(),
            source,
        })?;
        let poster = Poster::new(url.clone(), config.token_file)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: ReportQueue::new(QUEUE_CAPACITY),
                in_flight: 0,
                closing: false,
                poster_done: false,
                rejected: 0,
            }),
            work: Condvar::new(),
            progress: Condvar::new(),
        });
        let thread_shared = shared.clone();
        let handle = std::thread::Builder::new()
            .name("event-report".into())
            .spawn(move || post_until_closed(&thread_shared, &poster))
            .map_err(ReportError::Thread)?;
        Ok(Self {
            shared,
            poster: Some(handle),
            url: url.to_string(),
        })
    }

    /// A sink that queues every event for this reporter.
    pub fn sink(&self) -> ReportSink {
        ReportSink {
            shared: self.shared.clone(),
            warned_full: false,
        }
    }

    /// Ends reporting: waits up to `timeout` for every queued event to be
    /// delivered, then says on stderr what was not. Never fails: the trainer's
    /// exit code, not the report, is the final word on the run.
    pub fn finish(mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        state.closing = true;
        self.shared.work.notify_all();
        while !state.drained() && !state.poster_done {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            state = self
                .shared
                .progress
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let undelivered = state.queue.len() + state.in_flight;
        let dropped = state.queue.dropped();
        let rejected = state.rejected;
        let drained = state.drained();
        drop(state);
        if drained {
            // It has nothing left to post and is on its way out.
            if let Some(poster) = self.poster.take() {
                let _ = poster.join();
            }
        }
        // An undrained poster is left behind: it ends with the process.
        let mut missing = Vec::new();
        if undelivered > 0 {
            missing.push(format!(
                "{undelivered} events not delivered within {}s",
                timeout.as_secs_f64()
            ));
        }
        if dropped > 0 {
            missing.push(format!("{dropped} dropped from a full queue"));
        }
        if rejected > 0 {
            missing.push(format!("{rejected} rejected"));
        }
        if !missing.is_empty() {
            eprintln!(
                "warning: reporting to {}: {}; events.jsonl in storage has them all",
                self.url,
                missing.join(", ")
            );
        }
    }
}

/// The [`EventSink`] side: queues a copy of each event and wakes the poster.
pub struct ReportSink {
    shared: Arc<Shared>,
    warned_full: bool,
}

impl EventSink for ReportSink {
    fn emit(&mut self, event: &TrainerEvent) {
        let kept = {
            let mut state = self.shared.lock();
            let kept = state.queue.push(event.clone());
            self.shared.work.notify_one();
            kept
        };
        if !kept && !self.warned_full {
            self.warned_full = true;
            eprintln!(
                "warning: reporting: {QUEUE_CAPACITY} events wait for the operator; \
                 dropping the oldest progress, metrics and log events"
            );
        }
    }
}
