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
//!
//! Adapters come and go between rounds ([`EngineMessage::Load`] and
//! [`EngineMessage::Unload`], `trainer serve --enable-runtime-lora`): a loaded one
//! rides on a clone of the base (its weights shared, not copied); an unloaded one
//! stays until the last running request that uses it has finished, then its weights
//! are dropped. Each change rebuilds the adapter bank.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, TryRecvError};

use burn::prelude::Backend;
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::oneshot;

use anneal_model::generate::{Decoding, FinishReason, SamplingParams, Step, decode_together};
use anneal_model::llm::{CausalLm, KvSlots};
use anneal_model::lora::bank::AdapterBank;
use anneal_model::lora::peft::load_adapter;

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

/// What the HTTP side asks of the engine, in order.
pub enum EngineMessage {
    Submit(Submission),
    /// Attach the PEFT adapter in the local folder `dir` to the base model as model
    /// `index`; `done` gets the outcome (the error's message names what is wrong).
    Load {
        index: usize,
        dir: PathBuf,
        done: oneshot::Sender<Result<(), String>>,
    },
    /// Drop model `index` once no running request uses it; `done` is told then.
    Unload {
        index: usize,
        done: oneshot::Sender<()>,
    },
}

impl From<Submission> for EngineMessage {
    fn from(submission: Submission) -> Self {
        EngineMessage::Submit(submission)
    }
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
    /// By index: `models[0]` is the base; each other one is the base with one adapter
    /// attached, `None` once unloaded (indexes are never reused).
    models: Vec<Option<CausalLm<B>>>,
    /// The loaded adapters, for decoding steps that mix them.
    bank: Option<AdapterBank<B>>,
    /// Per model index, its adapter's place in `bank`.
    bank_rows: Vec<Option<usize>>,
    /// Adapters asked to go, waiting for their running requests to finish.
    retiring: Vec<(usize, oneshot::Sender<()>)>,
    cache: KvSlots<B>,
    max_positions: usize,
    free: Vec<usize>,
    gauges: &'a dyn EngineGauges,
}

/// Serves `messages` until every sender is gone and the last request finished.
/// `models[0]` is the base model, each other one the base with one adapter attached;
/// no request needs more than `max_positions` (the context length).
pub fn run_engine<B: Backend, M: Into<EngineMessage>>(
    models: &[CausalLm<B>],
    messages: Receiver<M>,
    max_running: usize,
    max_positions: usize,
    gauges: &dyn EngineGauges,
) {
    let mut engine = Engine {
        models: models.iter().cloned().map(Some).collect(),
        bank: None,
        bank_rows: Vec::new(),
        retiring: Vec::new(),
        cache: KvSlots::new(&models[0], max_running, max_positions),
        max_positions,
        free: (0..max_running).rev().collect(),
        gauges,
    };
    engine.rebuild_bank();
    let mut running: Vec<Running> = Vec::new();
    let mut open = true;
    loop {
        if running.is_empty() {
            gauges.set_running(0);
            match messages.recv() {
                Ok(message) => engine.take(message.into(), &mut running),
                Err(_) => return,
            }
        }
        while open && running.len() < max_running {
            match messages.try_recv() {
                Ok(message) => engine.take(message.into(), &mut running),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => open = false,
            }
        }
        gauges.set_running(running.len());
        if !running.is_empty() {
            engine.run_round(&mut running);
        }
        engine.retire_unused(&running);
        if !open && running.is_empty() {
            gauges.set_running(0);
            return;
        }
    }
}

impl<B: Backend> Engine<'_, B> {
    /// Acts on one message: a request starts running, an adapter is loaded, or one is
    /// marked to go.
    fn take(&mut self, message: EngineMessage, running: &mut Vec<Running>) {
        match message {
            EngineMessage::Submit(submission) => {
                if let Some(request) = self.start(submission) {
                    running.push(request);
                }
            }
            EngineMessage::Load { index, dir, done } => {
                let _ = done.send(self.load(index, dir));
            }
            EngineMessage::Unload { index, done } => self.retiring.push((index, done)),
        }
    }

    /// The request as a running one, or `None` (and its handler told) when its model
    /// is gone.
    fn start(&mut self, submission: Submission) -> Option<Running> {
        if self
            .models
            .get(submission.model)
            .is_none_or(Option::is_none)
        {
            let gone = "generation failed: the model was unloaded".to_owned();
            let _ = submission.events.send(EngineEvent::Failed(gone));
            return None;
        }
        // The lowest free slot: rows in slots 0..n in order decode without reordering.
        let slot = self.free.pop().expect("a slot per running request");
        Some(Running {
            model: submission.model,
            slot,
            decoding: Decoding::new(&submission.prompt, &submission.eos, &submission.params),
            events: submission.events,
        })
    }

    /// Attaches the adapter in `dir` to a clone of the base as model `index`.
    fn load(&mut self, index: usize, dir: PathBuf) -> Result<(), String> {
        let base = self.models[0].clone().expect("the base model stays");
        let loaded = catch_unwind(AssertUnwindSafe(|| load_adapter(base, &dir)))
            .map_err(|panic| panic_message(panic.as_ref()))?
            .map_err(|e| e.to_string())?;
        if self.models.len() <= index {
            self.models.resize_with(index + 1, || None);
        }
        self.models[index] = Some(loaded);
        self.rebuild_bank();
        Ok(())
    }

    /// Drops each retiring adapter no running request uses any more.
    fn retire_unused(&mut self, running: &[Running]) {
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.retiring)
            .into_iter()
            .partition(|(index, _)| running.iter().all(|r| r.model != *index));
        self.retiring = waiting;
        if done.is_empty() {
            return;
        }
        for (index, _) in &done {
            if let Some(model) = self.models.get_mut(*index) {
                *model = None;
            }
        }
        self.rebuild_bank();
        for (_, told) in done {
            let _ = told.send(());
        }
    }

    /// The bank of the adapters loaded now, and each model's place in it.
    fn rebuild_bank(&mut self) {
        let mut adapters = Vec::new();
        self.bank_rows = (self.models.iter().enumerate())
            .map(|(index, model)| match model {
                Some(model) if index > 0 => {
                    adapters.push(model);
                    Some(adapters.len() - 1)
                }
                _ => None,
            })
            .collect();
        self.bank = AdapterBank::new(&adapters);
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
            let base = self.models[0].as_ref().expect("the base model stays");
            self.cache = KvSlots::new(base, self.cache.slots(), self.max_positions);
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
        let model = self.models[request.model]
            .as_ref()
            .expect("a running request's model stays until it finishes");
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
            .map(|&i| self.bank_rows[running[i].model])
            .collect();
        let mut batch: Vec<(&mut Decoding, usize)> = running
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| rows.contains(i))
            .map(|(_, r)| (&mut r.decoding, r.slot))
            .collect();
        let base = self.models[0].as_ref().expect("the base model stays");
        let (bank, cache) = (self.bank.as_ref(), &mut self.cache);
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
