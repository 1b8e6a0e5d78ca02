//! One request's reply as it is generated: engine events turned into text pieces (stop
//! strings applied), with the request's metrics recorded once, however it ends.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use tokio::sync::mpsc::UnboundedReceiver;

use super::engine::EngineEvent;
use super::serve_metrics::ServeMetrics;
use super::text_stream::{TextDelta, TextStream};
use anneal_model::chat::ModelTokenizer;
use anneal_model::generate::FinishReason;

/// A piece of the reply.
#[derive(Debug, PartialEq)]
pub enum ReplyPart {
    Text(String),
    Finished(FinishReason),
    Failed(String),
}

/// Holds a place among the requests in flight; gives it back when dropped.
pub struct Slot {
    in_flight: Arc<AtomicUsize>,
    metrics: ServeMetrics,
}

impl Slot {
    /// Takes a place unless `limit` requests are in flight already.
    pub fn take(
        in_flight: &Arc<AtomicUsize>,
        limit: usize,
        metrics: &ServeMetrics,
    ) -> Option<Slot> {
        let taken = in_flight
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_ok();
        taken.then(|| {
            metrics.in_flight.inc();
            Slot {
                in_flight: in_flight.clone(),
                metrics: metrics.clone(),
            }
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.metrics.in_flight.dec();
    }
}

/// Reads a request's engine events. Dropping it before the end (the client left)
/// closes the channel, which the engine takes as a cancel.
pub struct Reply {
    events: UnboundedReceiver<EngineEvent>,
    text: TextStream,
    tokenizer: Arc<ModelTokenizer>,
    model: String,
    metrics: ServeMetrics,
    arrived: Instant,
    first_token: Option<Instant>,
    /// Tokens the reply used (tokens after a stop string are not counted).
    pub completion_tokens: usize,
    outcome: Option<&'static str>,
    /// Pieces ready to hand out.
    pending: VecDeque<ReplyPart>,
    _slot: Slot,
}

impl Reply {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        events: UnboundedReceiver<EngineEvent>,
        stop: Vec<String>,
        tokenizer: Arc<ModelTokenizer>,
        model: String,
        prompt_tokens: usize,
        metrics: ServeMetrics,
        arrived: Instant,
        slot: Slot,
    ) -> Self {
        metrics
            .prompt_tokens
            .with_label_values(&[&model])
            .inc_by(prompt_tokens as u64);
        Self {
            events,
            text: TextStream::new(stop),
            tokenizer,
            model,
            metrics,
            arrived,
            first_token: None,
            completion_tokens: 0,
            outcome: None,
            pending: VecDeque::new(),
            _slot: slot,
        }
    }

    /// The next piece; `None` after the end.
    pub async fn next(&mut self) -> Option<ReplyPart> {
        loop {
            if let Some(part) = self.pending.pop_front() {
                return Some(part);
            }
            if self.outcome.is_some() {
                return None;
            }
            self.receive().await;
        }
    }

    /// Takes one engine event and queues the pieces it gives.
    async fn receive(&mut self) {
        let tokenizer = self.tokenizer.clone();
        let decode = |ids: &[u32]| tokenizer.decode(ids, true).unwrap_or_default();
        match self.events.recv().await {
            Some(EngineEvent::Token(token)) => {
                self.on_token();
                match self.text.push(token, decode) {
                    TextDelta::More(text) => self.queue_text(text),
                    TextDelta::Stopped(text) => {
                        // Closing the channel tells the engine to stop generating for us.
                        self.events.close();
                        self.queue_text(text);
                        self.finish(FinishReason::Stop);
                    }
                }
            }
            Some(EngineEvent::Finished(reason)) => {
                let rest = self.text.finish(decode);
                self.queue_text(rest);
                self.finish(reason);
            }
            Some(EngineEvent::Failed(message)) => {
                self.end("error");
                self.pending.push_back(ReplyPart::Failed(message));
            }
            None => {
                self.end("error");
                self.pending.push_back(ReplyPart::Failed(
                    "the generation engine stopped".to_owned(),
                ));
            }
        }
    }

    fn queue_text(&mut self, text: String) {
        if !text.is_empty() {
            self.pending.push_back(ReplyPart::Text(text));
        }
    }

    fn finish(&mut self, reason: FinishReason) {
        self.end(finish_name(reason));
        self.pending.push_back(ReplyPart::Finished(reason));
    }

    fn on_token(&mut self) {
        self.completion_tokens += 1;
        if self.first_token.is_none() {
            let now = Instant::now();
            self.first_token = Some(now);
            self.metrics
                .time_to_first_token
                .with_label_values(&[&self.model])
                .observe((now - self.arrived).as_secs_f64());
        }
    }

    fn end(&mut self, outcome: &'static str) {
        if self.outcome.is_some() {
            return;
        }
        self.outcome = Some(outcome);
        let labels = [self.model.as_str()];
        let m = &self.metrics;
        m.requests.with_label_values(&[&self.model, outcome]).inc();
        m.generated_tokens
            .with_label_values(&labels)
            .inc_by(self.completion_tokens as u64);
        m.request_duration
            .with_label_values(&labels)
            .observe(self.arrived.elapsed().as_secs_f64());
        if let Some(first) = self.first_token
            && self.completion_tokens > 1
        {
            let seconds = first.elapsed().as_secs_f64();
            if seconds > 0.0 {
                m.tokens_per_second
                    .with_label_values(&labels)
                    .observe((self.completion_tokens - 1) as f64 / seconds);
            }
        }
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        self.end("cancelled");
    }
}

/// OpenAI's name for a finish reason.
pub fn finish_name(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
    }
}
