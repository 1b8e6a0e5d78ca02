//! The generation engine: one thread that owns the models and advances every running
//! request a token at a time, in turn.
//!
//! Each round, every running request takes one step: a new request runs its prompt on
//! its own; the others, each one token after its own KV cache, are batched per model
//! ([`CausalLm::decode_rows`]: one matrix product per weight for all of them, attention
//! per request). So up to `max_running` streams progress together and a long reply
//! never holds a short one back; more requests wait in the queue in arrival order. A
//! step that panics fails the requests in it and nothing else. A request whose client
//! went away is dropped at its next turn.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, TryRecvError};

use burn::prelude::Backend;
use tokio::sync::mpsc::UnboundedSender;

use anneal_model::generate::{Decoding, FinishReason, SamplingParams, Step};
use anneal_model::llm::CausalLm;

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
}

struct Running<B: Backend> {
    model: usize,
    decoding: Decoding<B>,
    events: UnboundedSender<EngineEvent>,
}

/// Serves `submissions` until every sender is gone and the last request finished.
pub fn run_engine<B: Backend>(
    models: &[CausalLm<B>],
    submissions: Receiver<Submission>,
    max_running: usize,
    gauges: &dyn EngineGauges,
) {
    let mut running: Vec<Running<B>> = Vec::new();
    let mut open = true;
    loop {
        if running.is_empty() {
            gauges.set_running(0);
            match submissions.recv() {
                Ok(submission) => running.push(start(submission)),
                Err(_) => return,
            }
        }
        while open && running.len() < max_running {
            match submissions.try_recv() {
                Ok(submission) => running.push(start(submission)),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => open = false,
            }
        }
        gauges.set_running(running.len());
        run_round(models, &mut running, gauges);
        if !open && running.is_empty() {
            gauges.set_running(0);
            return;
        }
    }
}

fn start<B: Backend>(submission: Submission) -> Running<B> {
    Running {
        model: submission.model,
        decoding: Decoding::new(&submission.prompt, &submission.eos, &submission.params),
        events: submission.events,
    }
}

/// One step for every running request; those that are over are removed.
fn run_round<B: Backend>(
    models: &[CausalLm<B>],
    running: &mut Vec<Running<B>>,
    gauges: &dyn EngineGauges,
) {
    running.retain(|request| !request.events.is_closed());
    // Requests one token after their cache, by model: those can share a step.
    let mut batches: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, request) in running.iter().enumerate() {
        if request.decoding.decodes_next() {
            batches.entry(request.model).or_default().push(i);
        }
    }
    let mut over = vec![false; running.len()];
    let mut batched = vec![false; running.len()];
    for rows in batches.values().filter(|rows| rows.len() > 1) {
        for (&i, ended) in rows
            .iter()
            .zip(step_together(models, running, rows, gauges))
        {
            over[i] = ended;
            batched[i] = true;
        }
    }
    for (i, request) in running.iter_mut().enumerate() {
        if !batched[i] {
            over[i] = !advance(models, request, gauges);
        }
    }
    let mut index = 0;
    running.retain(|_| {
        index += 1;
        !over[index - 1]
    });
}

/// One step of one request; false when it is over.
fn advance<B: Backend>(
    models: &[CausalLm<B>],
    request: &mut Running<B>,
    gauges: &dyn EngineGauges,
) -> bool {
    gauges.count_step();
    if request.decoding.decodes_next() {
        gauges.observe_batch(1);
    }
    let model = &models[request.model];
    let event = match catch_unwind(AssertUnwindSafe(|| request.decoding.step(model))) {
        Ok(step) => step_event(step),
        Err(panic) => EngineEvent::Failed(panic_message(panic.as_ref())),
    };
    deliver(request, event)
}

/// One decoding step for the requests `rows` (same model), as one batch; for each,
/// whether it is over.
fn step_together<B: Backend>(
    models: &[CausalLm<B>],
    running: &mut [Running<B>],
    rows: &[usize],
    gauges: &dyn EngineGauges,
) -> Vec<bool> {
    let model = &models[running[rows[0]].model];
    let (tokens, caches): (Vec<u32>, Vec<_>) = rows
        .iter()
        .map(|&i| running[i].decoding.take_for_batch())
        .unzip();
    for _ in rows {
        gauges.count_step();
    }
    gauges.observe_batch(rows.len());
    match catch_unwind(AssertUnwindSafe(|| {
        let (logits, caches) = model.decode_rows(&tokens, caches);
        (logits.into_data().convert::<f32>(), caches)
    })) {
        Ok((logits, caches)) => {
            let logits = logits.as_slice::<f32>().expect("f32 logits");
            let vocab = logits.len() / rows.len();
            rows.iter()
                .zip(caches)
                .enumerate()
                .map(|(row, (&i, cache))| {
                    let step = running[i]
                        .decoding
                        .accept(cache, &logits[row * vocab..(row + 1) * vocab]);
                    !deliver(&mut running[i], step_event(step))
                })
                .collect()
        }
        Err(panic) => {
            // The caches went down with the step: every request in it fails.
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

fn step_event(step: Step) -> EngineEvent {
    match step {
        Step::Token(token) => EngineEvent::Token(token),
        Step::Finished(reason) => EngineEvent::Finished(reason),
    }
}

/// Sends the event; true while the request goes on (a closed channel means the client left).
fn deliver<B: Backend>(request: &mut Running<B>, event: EngineEvent) -> bool {
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
mod tests {
    use std::path::Path;
    use std::sync::Mutex;
    use std::sync::mpsc::channel;

    use burn::tensor::DType;
    use tokio::sync::mpsc::unbounded_channel;

    use super::*;
    use anneal_model::backend::CpuBackend;
    use anneal_model::generate::generate;
    use anneal_model::llm::load_model;

    struct Seen(Mutex<Vec<usize>>, Mutex<usize>, Mutex<Vec<usize>>);
    impl EngineGauges for Seen {
        fn set_running(&self, running: usize) {
            self.0.lock().unwrap().push(running);
        }
        fn count_step(&self) {
            *self.1.lock().unwrap() += 1;
        }
        fn observe_batch(&self, rows: usize) {
            self.2.lock().unwrap().push(rows);
        }
    }

    fn drain(mut events: tokio::sync::mpsc::UnboundedReceiver<EngineEvent>) -> Vec<EngineEvent> {
        let mut out = Vec::new();
        while let Ok(event) = events.try_recv() {
            out.push(event);
        }
        out
    }

    /// Three requests interleaved give each the tokens it gets alone, and the engine
    /// ran them side by side (up to the limit of two).
    #[test]
    fn interleaved_requests_generate_what_each_would_alone() {
        let dir =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/reference/qwen2-tiny");
        let (_, model) = load_model::<CpuBackend>(&dir, &Default::default(), DType::F32).unwrap();
        let prompts: [&[u32]; 3] = [&[1, 2, 3], &[40, 41], &[7, 8, 9, 10, 11]];
        let params = |seed| SamplingParams {
            max_new_tokens: 6,
            temperature: 0.8,
            seed,
            ..Default::default()
        };
        let (submit, submissions) = channel();
        let mut receivers = Vec::new();
        for (i, prompt) in prompts.iter().enumerate() {
            let (events, receiver) = unbounded_channel();
            submit
                .send(Submission {
                    model: 0,
                    prompt: prompt.to_vec(),
                    eos: Vec::new(),
                    params: params(i as u64),
                    events,
                })
                .unwrap();
            receivers.push(receiver);
        }
        // A client that left before its turn: dropped without a step.
        let (events, gone) = unbounded_channel();
        drop(gone);
        submit
            .send(Submission {
                model: 0,
                prompt: vec![5],
                eos: Vec::new(),
                params: params(9),
                events,
            })
            .unwrap();
        drop(submit);

        let seen = Seen(
            Mutex::new(Vec::new()),
            Mutex::new(0),
            Mutex::new(Vec::new()),
        );
        run_engine(std::slice::from_ref(&model), submissions, 2, &seen);
        for (i, receiver) in receivers.into_iter().enumerate() {
            let alone = generate(
                &model,
                prompts[i],
                &[],
                &params(i as u64),
                |_| String::new(),
                |_| {},
            );
            let mut expected: Vec<EngineEvent> = alone
                .token_ids
                .iter()
                .map(|&t| EngineEvent::Token(t))
                .collect();
            expected.push(EngineEvent::Finished(FinishReason::Length));
            assert_eq!(drain(receiver), expected, "request {i}");
        }
        // 3 requests of 6 tokens and a finishing step each; the one that left never ran.
        assert_eq!(*seen.1.lock().unwrap(), 3 * 7);
        // Two ran side by side, their tokens after the first in batches of two.
        assert_eq!(
            seen.2
                .lock()
                .unwrap()
                .iter()
                .filter(|&&rows| rows == 2)
                .count(),
            5
        );
        let seen = seen.0.lock().unwrap();
        assert_eq!(seen.iter().max(), Some(&2), "{seen:?}");
        assert_eq!(seen.last(), Some(&0));
    }
}
