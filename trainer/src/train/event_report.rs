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

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anneal_crds::events::{EventBody, TrainerEvent};
use reqwest::StatusCode;

use crate::train::event_log::EventSink;

/// Events posted at most in one request.
pub const MAX_BATCH: usize = 100;
/// Events waiting at most; beyond it progress, metrics and log events are dropped.
pub const QUEUE_CAPACITY: usize = 10_000;
/// One post may take this long before it counts as failed and is retried.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a refused token is tried again: the Secret may be mounted later, but
/// asking every half second would only fill the operator's log.
const REFUSED_RETRY: Duration = Duration::from_secs(30);

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

/// Waits between failed posts: 0.5 s doubling to 30 s, each spread ±25% so that
/// many pods do not retry an operator that comes back all at the same moment.
#[derive(Debug)]
pub struct Backoff {
    base: Duration,
}

impl Backoff {
    pub const FIRST: Duration = Duration::from_millis(500);
    pub const MAX: Duration = Duration::from_secs(30);

    pub fn new() -> Self {
        Self { base: Self::FIRST }
    }

    /// The wait before the next attempt; `jitter` in [0, 1) picks where in the
    /// ±25% spread it falls.
    pub fn next_delay(&mut self, jitter: f64) -> Duration {
        let delay = spread(self.base, jitter);
        self.base = (self.base * 2).min(Self::MAX);
        delay
    }

    /// After a post got through: the next problem starts from the first wait again.
    pub fn reset(&mut self) {
        self.base = Self::FIRST;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

/// `base` scaled by 0.75 + `jitter` / 2, for `jitter` in [0, 1).
fn spread(base: Duration, jitter: f64) -> Duration {
    base.mul_f64(0.75 + jitter.clamp(0.0, 1.0) / 2.0)
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
    /// Starts the poster thread. Fails (with a message for a warning; the run goes
    /// on unreported) only when the URL or the HTTP client is unusable.
    pub fn start(config: ReportConfig) -> Result<Self, String> {
        let url = reqwest::Url::parse(&config.url)
            .map_err(|e| format!("report URL {}: {e}", config.url))?;
        anneal_crds::storage::install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            // The operator is a Service inside the cluster: a proxy meant for the
            // internet would only stand in the way.
            .no_proxy()
            .build()
            .map_err(|e| format!("report client: {e}"))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("report runtime: {e}"))?;
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
        let poster = Poster {
            runtime,
            client,
            url: url.clone(),
            token_file: config.token_file,
        };
        let thread_shared = shared.clone();
        let handle = std::thread::Builder::new()
            .name("event-report".into())
            .spawn(move || post_until_closed(&thread_shared, &poster))
            .map_err(|e| format!("starting the report thread: {e}"))?;
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

/// How one post went.
#[derive(Debug)]
enum Attempt {
    Delivered,
    /// 401, 403 or 404: the token is missing or not (yet) valid, or the operator
    /// does not know the job yet.
    Refused(String),
    /// Another 4xx: the same batch would get the same answer.
    Rejected(String),
    /// 5xx, 408, 429, connection refused, timeout: worth retrying soon.
    Unavailable(String),
}

/// The HTTP side of the poster thread.
struct Poster {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
    url: reqwest::Url,
    token_file: Option<PathBuf>,
}

impl Poster {
    fn post(&self, batch: &[TrainerEvent]) -> Attempt {
        let body = serde_json::to_vec(batch).expect("events serialize");
        let mut request = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        let mut token_problem = String::new();
        if let Some(path) = &self.token_file {
            match std::fs::read_to_string(path) {
                Ok(token) => request = request.bearer_auth(token.trim()),
                Err(e) => token_problem = format!(" (token file {}: {e})", path.display()),
            }
        }
        self.runtime.block_on(async {
            let response = match request.send().await {
                Ok(response) => response,
                Err(e) => return Attempt::Unavailable(error_chain(&e)),
            };
            let status = response.status();
            // Read the reply to the end so the connection can carry the next post.
            let _ = response.bytes().await;
            classify(status, &token_problem)
        })
    }
}

fn classify(status: StatusCode, token_problem: &str) -> Attempt {
    if status.is_success() {
        return Attempt::Delivered;
    }
    let described = format!("the operator answered {status}{token_problem}");
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND => {
            Attempt::Refused(described)
        }
        StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_MANY_REQUESTS => {
            Attempt::Unavailable(described)
        }
        s if s.is_client_error() => Attempt::Rejected(described),
        _ => Attempt::Unavailable(described),
    }
}

/// What went wrong under reqwest's "error sending request for url (...)", which
/// repeats the URL the warning already names; that line itself when it has no cause.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut causes = Vec::new();
    let mut source = error.source();
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    if causes.is_empty() {
        return error.to_string();
    }
    causes.join(": ")
}

/// The poster thread: posts batches until the run ends and nothing is left.
fn post_until_closed(shared: &Shared, poster: &Poster) {
    let mut batch: Vec<TrainerEvent> = Vec::new();
    let mut backoff = Backoff::new();
    let mut problems = ProblemLog::new(poster.url.as_str());
    loop {
        {
            let mut state = shared.lock();
            while batch.is_empty() && state.queue.is_empty() && !state.closing {
                state = shared.work.wait(state).unwrap_or_else(|e| e.into_inner());
            }
            if batch.is_empty() && state.queue.is_empty() {
                state.poster_done = true;
                shared.progress.notify_all();
                return;
            }
            // A batch that failed takes on events queued since, in order.
            let room = MAX_BATCH - batch.len();
            state.queue.take_into(room, &mut batch);
            state.in_flight = batch.len();
        }
        let wait = match poster.post(&batch) {
            Attempt::Delivered => {
                backoff.reset();
                problems.cleared();
                settle(shared, &mut batch, false);
                continue;
            }
            Attempt::Rejected(why) => {
                problems.note(ProblemKind::Rejected, &why);
                settle(shared, &mut batch, true);
                continue;
            }
            Attempt::Refused(why) => {
                problems.note(ProblemKind::Refused, &why);
                spread(REFUSED_RETRY, rand::random())
            }
            Attempt::Unavailable(why) => {
                problems.note(ProblemKind::Unavailable, &why);
                backoff.next_delay(rand::random())
            }
        };
        pause(shared, wait);
    }
}

/// Clears the posted (or given up) batch and tells `finish`.
fn settle(shared: &Shared, batch: &mut Vec<TrainerEvent>, rejected: bool) {
    let mut state = shared.lock();
    if rejected {
        state.rejected += batch.len() as u64;
    }
    state.in_flight = 0;
    batch.clear();
    shared.progress.notify_all();
}

/// Sleeps `wait`, cut short once when the run ends: the last events (the final
/// phase) should not sit out a 30 s backoff while `finish` has only seconds.
fn pause(shared: &Shared, wait: Duration) {
    let deadline = Instant::now() + wait;
    let mut state = shared.lock();
    let was_closing = state.closing;
    loop {
        let now = Instant::now();
        if now >= deadline || (state.closing && !was_closing) {
            return;
        }
        state = shared
            .work
            .wait_timeout(state, deadline - now)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ProblemKind {
    Unavailable,
    Refused,
    Rejected,
}

/// Says on stderr when reporting runs into trouble and when it recovers: one
/// line per kind of trouble, not one per retry.
struct ProblemLog {
    url: String,
    failures_in_row: u32,
    told: Option<ProblemKind>,
}

impl ProblemLog {
    fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            failures_in_row: 0,
            told: None,
        }
    }

    fn note(&mut self, kind: ProblemKind, why: &str) {
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

    fn cleared(&mut self) {
        if self.told.take().is_some() {
            eprintln!("reporting to {}: delivering again", self.url);
        }
        self.failures_in_row = 0;
    }
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

    #[test]
    fn backoff_doubles_from_half_a_second_to_thirty_and_starts_over_after_success() {
        let mut backoff = Backoff::new();
        // Jitter 0.5 is the middle of the spread: the bare schedule.
        let waits: Vec<f64> = (0..9)
            .map(|_| backoff.next_delay(0.5).as_secs_f64())
            .collect();
        assert_eq!(waits, [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]);
        backoff.reset();
        assert_eq!(backoff.next_delay(0.5), Duration::from_millis(500));
    }

    #[test]
    fn jitter_spreads_each_wait_by_a_quarter_either_way() {
        let mut low = Backoff::new();
        let mut high = Backoff::new();
        for _ in 0..3 {
            low.next_delay(0.0);
            high.next_delay(0.999_999);
        }
        // The fourth wait is 4 s before jitter.
        assert_eq!(low.next_delay(0.0), Duration::from_secs(3));
        let high = high.next_delay(0.999_999).as_secs_f64();
        assert!((4.99..5.0).contains(&high), "{high}");
    }

    #[test]
    fn auth_refusals_wait_for_a_token_other_4xx_give_up_5xx_retry() {
        assert!(matches!(
            classify(StatusCode::UNAUTHORIZED, ""),
            Attempt::Refused(_)
        ));
        assert!(matches!(
            classify(StatusCode::NOT_FOUND, ""),
            Attempt::Refused(_)
        ));
        assert!(matches!(
            classify(StatusCode::BAD_REQUEST, ""),
            Attempt::Rejected(_)
        ));
        assert!(matches!(
            classify(StatusCode::SERVICE_UNAVAILABLE, ""),
            Attempt::Unavailable(_)
        ));
        assert!(matches!(
            classify(StatusCode::TOO_MANY_REQUESTS, ""),
            Attempt::Unavailable(_)
        ));
        assert!(matches!(classify(StatusCode::OK, ""), Attempt::Delivered));
    }
}
