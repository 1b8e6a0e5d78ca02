use std::path::Path;
use std::sync::Mutex;
use std::sync::mpsc::channel;

use burn::tensor::DType;
use tokio::sync::mpsc::unbounded_channel;

use super::*;
use anneal_model::backend::CpuBackend;
use anneal_model::generate::generate;
use anneal_model::llm::load_model;

#[path = "../../../model/tests/common/concat_reference.rs"]
mod concat_reference;
#[path = "../../../model/tests/common/greedy_cases.rs"]
mod greedy_cases;

#[derive(Default)]
struct Seen(
    Mutex<Vec<usize>>,
    Mutex<usize>,
    Mutex<Vec<usize>>,
    Mutex<usize>,
);
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
    fn set_cache_bytes(&self, bytes: usize) {
        *self.3.lock().unwrap() = bytes;
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
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/reference/qwen2-tiny");
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

    let seen = Seen::default();
    run_engine(std::slice::from_ref(&model), submissions, 2, 64, &seen);
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

/// Requests for the base and for two adapters, arriving together, decode in shared
/// steps of all five rows (each with its own adapter) and give each row the greedy
/// ids it gets alone on the old path (a concatenated cache, its adapter attached;
/// `greedy_record` pins those against the ids recorded before the change); the
/// cache grew as longer prompts came.
#[test]
fn rows_of_different_adapters_share_steps_and_keep_each_rows_ids() {
    use concat_reference::concat_greedy;
    use greedy_cases::{CASES, MODELS, NEW_TOKENS, load, prompt, with_adapter};
    for &(name, dtype) in &MODELS {
        let base = load::<CpuBackend>(name, dtype);
        let vocab = base.embed_tokens.weight.dims()[0];
        let models = vec![
            base.clone(),
            with_adapter(base.clone(), 0),
            with_adapter(base, 1),
        ];
        let (submit, submissions) = channel();
        let mut receivers = Vec::new();
        for case in &CASES {
            let (events, receiver) = unbounded_channel();
            submit
                .send(Submission {
                    model: case.adapter.map_or(0, |a| a + 1),
                    prompt: prompt(case, vocab),
                    eos: Vec::new(),
                    params: SamplingParams {
                        max_new_tokens: NEW_TOKENS,
                        ..Default::default()
                    },
                    events,
                })
                .unwrap();
            receivers.push(receiver);
        }
        drop(submit);
        let seen = Seen::default();
        run_engine(&models, submissions, CASES.len(), 512, &seen);
        for (c, receiver) in receivers.into_iter().enumerate() {
            let case = &CASES[c];
            let alone = &models[case.adapter.map_or(0, |a| a + 1)];
            let mut want: Vec<EngineEvent> = concat_greedy(alone, &prompt(case, vocab), NEW_TOKENS)
                .into_iter()
                .map(EngineEvent::Token)
                .collect();
            want.push(EngineEvent::Finished(FinishReason::Length));
            assert_eq!(drain(receiver), want, "{name} {dtype:?} case {c}");
        }
        let batches = seen.2.lock().unwrap();
        assert_eq!(batches.len(), NEW_TOKENS - 1, "{batches:?}");
        assert!(
            batches.iter().all(|&rows| rows == CASES.len()),
            "{batches:?}"
        );
        // Grown from the first prompt's 1 + 24 positions to the longest's 45 + 24
        // (doubling: 25, 50, 100), five slots; released again at the end.
        let layers = models[0].layers.len();
        let attn = &models[0].layers[0].self_attn;
        let per_position = 2 * layers * attn.num_kv_heads * attn.head_dim * dtype.size();
        assert_eq!(*seen.3.lock().unwrap(), per_position * CASES.len() * 100);
    }
}
