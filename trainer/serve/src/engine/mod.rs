//! The generation engine: one thread that owns the models and the KV cache, and
//! advances every running request a token at a time, in turn.
//!
//! Each round, every running request takes one step: a new request runs its prompt on
//! its own (into its slot of the cache); all the others, each one token after its own
//! slot, share one decoding step ([`CausalLm::decode_rows`]: one matrix product per
//! weight for all of them, attention for all of them at once, and each row's LoRA
//! adapter from the [`AdapterBank`], so requests for different adapters and for the
//! base step together). So up to `max_running` streams progress together and a long
//! reply never holds a short one back; more requests wait in the queue in arrival
//! order. The cache has a slot per running request, as long as the longest request
//! needs (it grows by doubling when a new one needs more). A step that panics fails
//! the requests in it and nothing else, unless the cache went down with it: then
//! every request with keys and values in it fails too, and the cache starts empty. A
//! request whose client went away is dropped at its next turn.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, TryRecvError};

use burn::prelude::Backend;
use tokio::sync::mpsc::UnboundedSender;

use anneal_model::generate::{Decoding, FinishReason, SamplingParams, Step, decode_together};
use anneal_model::llm::{CausalLm, KvSlots};
use anneal_model::lora::bank::AdapterBank;

/// A request handed to the engine.
pub struct Submission {
    /// Index into the engine's models (0: the base model, then the adapters).
    pub model: usize,
    pub prompt: Vec<u32>,
    /// Token ids that end the reply (empty: generate to the limit).
    pub eos: Vec<u32>,
    /// Stop strings are left to the caller, who sees the text.
    pub params: SamplingParams,
    pub events: UnboundedSender<EngineEvent>,
}

/// What the engine tells a request's handler.
#[derive(Debug, Clone, PartialEq)]
pub enum EngineEvent {
    Token(u32),
    Finished(FinishReason),
    /// The step failed inside the model; the message says why.
    Failed(String),
}

/// Counts the engine keeps current for the metrics.
pub trait EngineGauges {
    fn set_running(&self, running: usize);
    /// One model step ran (a prompt or a token), whether or not anyone read its token.
    fn count_step(&self);
    /// A decoding step ran for this many requests at once.
    fn observe_batch(&self, rows: usize);
    /// The KV cache's buffers take this many bytes.
    fn set_cache_bytes(&self, bytes: usize);
}

struct Running {
    model: usize,
    /// Its slot in the cache.
    slot: usize,
    decoding: Decoding,
    events: UnboundedSender<EngineEvent>,
}

/// The models, their adapters for shared steps, and the cache, between rounds.
struct Engine<'a, B: Backend> {
    /// `models[0]` is the base; each other one is the base with one adapter attached.
    models: &'a [CausalLm<B>],
    /// The adapters of `models[1..]`, for decoding steps that mix them.
    bank: Option<AdapterBank<B>>,
    cache: KvSlots<B>,
    max_positions: usize,
    free: Vec<usize>,
    gauges: &'a dyn EngineGauges,
}

/// Serves `submissions` until every sender is gone and the last request finished.
/// `models[0]` is the base model, each other one the base with one adapter attached;
/// no request needs more than `max_positions` (the context length).
pub fn run_engine<B: Backend>(
    models: &[CausalLm<B>],
    submissions: Receiver<Submission>,
    max_running: usize,
    max_positions: usize,
    gauges: &dyn EngineGauges,
) {
    let adapters: Vec<&CausalLm<B>> = models[1..].iter().collect();
    let mut engine = Engine {
        models,
        bank: AdapterBank::new(&adapters),
        cache: KvSlots::new(&models[0], max_running, max_positions),
        max_positions,
        free: (0..max_running).rev().collect(),
        gauges,
    };
    let mut running: Vec<Running> = Vec::new();
    let mut open = true;
    loop {
        if running.is_empty() {
            gauges.set_running(0);
            match submissions.recv() {
                Ok(submission) => running.push(engine.start(submission)),
                Err(_) => return,
            }
        }
        while open && running.len() < max_running {
            match submissions.try_recv() {
                Ok(submission) => running.push(engine.start(submission)),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => open = false,
            }
        }
        gauges.set_running(running.len());
        engine.run_round(&mut running);
        if !open && running.is_empty() {
            gauges.set_running(0);
            return;
        }
    }
}

impl<B: Backend> Engine<'_, B> {
    fn start(&mut self, submission: Submission) -> Running {
        // The lowest free slot: rows in slots 0..n in order decode without reordering.
        let slot = self.free.pop().expect("a slot per running request");
        Running {
            model: submission.model,
            slot,
            decoding: Decoding::new(&submission.prompt, &submission.eos, &submission.params),
            events: submission.events,
        }
    }

    /// One step for every running request; those that are over are removed.
    fn run_round(&mut self, running: &mut Vec<Running>) {
        self.remove(running, |request| request.events.is_closed());
        let decoding: Vec<usize> = (0..running.len())
            .filter(|&i| running[i].decoding.decodes_next())
            .collect();
        let mut over = vec![false; running.len()];
        if !decoding.is_empty() {
            for (&i, ended) in decoding.iter().zip(self.step_together(running, &decoding)) {
                over[i] = ended;
            }
        }
        for (i, request) in running.iter_mut().enumerate() {
            if !decoding.contains(&i) {
                over[i] = !self.advance(request);
            }
        }
        if !self.cache.is_intact() {
            // A panic took the cache's buffers: what was in them is gone.
            for (i, request) in running.iter().enumerate() {
                if !over[i] && request.decoding.cached_len() > 0 {
                    let _ = request.events.send(EngineEvent::Failed(
                        "generation failed: the KV cache was lost to another request's failure"
                            .to_owned(),
                    ));
                    over[i] = true;
                }
            }
            self.cache = KvSlots::new(&self.models[0], self.cache.slots(), self.max_positions);
        }
        let mut index = 0;
        self.remove(running, |_| {
            index += 1;
            over[index - 1]
        });
        self.gauges.set_cache_bytes(self.cache.bytes());
    }

    /// Drops the requests `gone` picks, emptying their slots.
    fn remove(&mut self, running: &mut Vec<Running>, mut gone: impl FnMut(&Running) -> bool) {
        let cache = &mut self.cache;
        let free = &mut self.free;
        running.retain(|request| {
            if !gone(request) {
                return true;
            }
            if cache.is_intact() {
                cache.release(request.slot);
            }
            // Kept highest first, so the lowest pops next.
            let at = free.partition_point(|&s| s > request.slot);
            free.insert(at, request.slot);
            false
        });
    }

    /// One step of one request alone (its prompt, or its end); false when it is over.
    fn advance(&mut self, request: &mut Running) -> bool {
        self.gauges.count_step();
        let model = &self.models[request.model];
        let cache = &mut self.cache;
        let step = catch_unwind(AssertUnwindSafe(|| {
            request.decoding.step(model, request.slot, cache)
        }));
        let event = match step {
            Ok(step) => step_event(step),
            Err(panic) => EngineEvent::Failed(panic_message(panic.as_ref())),
        };
        deliver(request, event)
    }

    /// One decoding step for the requests `rows`, of any models, as one batch on the
    /// base with each row's adapter; for each, whether it is over.
    fn step_together(&mut self, running: &mut [Running], rows: &[usize]) -> Vec<bool> {
        for _ in rows {
            self.gauges.count_step();
        }
        self.gauges.observe_batch(rows.len());
        let adapter_of_row: Vec<Option<usize>> = rows
            .iter()
            .map(|&i| running[i].model.checked_sub(1))
            .collect();
        let mut batch: Vec<(&mut Decoding, usize)> = running
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| rows.contains(i))
            .map(|(_, r)| (&mut r.decoding, r.slot))
            .collect();
        let (base, bank, cache) = (&self.models[0], self.bank.as_ref(), &mut self.cache);
        let steps = catch_unwind(AssertUnwindSafe(|| {
            let adapters = bank.and_then(|bank| bank.rows(&adapter_of_row));
            decode_together(base, &mut batch, cache, adapters.as_ref())
        }));
        match steps {
            Ok(steps) => rows
                .iter()
                .zip(steps)
                .map(|(&i, step)| !deliver(&mut running[i], step_event(step)))
                .collect(),
            Err(panic) => {
                let message = panic_message(panic.as_ref());
                rows.iter()
                    .map(|&i| {
                        let _ = running[i].events.send(EngineEvent::Failed(message.clone()));
                        true
                    })
                    .collect()
            }
        }
    }
}

fn step_event(step: Step) -> EngineEvent {
    match step {
        Step::Token(token) => EngineEvent::Token(token),
        Step::Finished(reason) => EngineEvent::Finished(reason),
    }
}

/// Sends the event; true while the request goes on (a closed channel means the client left).
fn deliver(request: &mut Running, event: EngineEvent) -> bool {
    let more = matches!(event, EngineEvent::Token(_));
    request.events.send(event).is_ok() && more
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let message = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "unknown error".to_owned());
    format!("generation failed: {message}")
}

#[cfg(test)]
mod tests;
