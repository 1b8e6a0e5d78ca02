//! Decoding throughput on the CPU backend: N generations decoding together in one
//! preallocated KV cache (one model step per token for all of them, as `trainer
//! serve` runs them) against the same generations decoding one at a time (as
//! `generate` runs one), and one at a time on the old path (a cache grown by
//! concatenation through `forward_hidden`, as `generate` ran before the preallocated
//! cache), greedy, in the same process; and the cache's bytes.
//!
//! cargo bench -p anneal-model --bench decode --profile dev -- [--shape 0.5b|small|tiny] [--rows 8] [--steps 8] [--write]
//!
//! `--profile dev` reuses the test build (dependencies optimized, see the root
//! Cargo.toml); `--write` rewrites this bench's section of benches/RESULTS.md. The
//! `0.5b` and `small` shapes have random weights (Qwen2.5-0.5B's shape, and the
//! forward bench's); `tiny` is examples/models/anneal-tiny.

#[path = "../../../benches/results_section.rs"]
mod results_section;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anneal_model::backend::{CpuBackend, LayerStorage};
use anneal_model::generate::{Decoding, SamplingParams, Step, argmax, decode_together};
use anneal_model::llm::config::ModelConfig;
use anneal_model::llm::kv_slots::position_bytes;
use anneal_model::llm::weights::{WeightSource, build_model};
use anneal_model::llm::{CausalLm, KvSlots, LayerPlacement, ModelError, load_model};
use burn::prelude::*;
use burn::tensor::DType;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

type B = CpuBackend;

const SHAPE_05B: &str = r#"{"architectures": ["Qwen2ForCausalLM"], "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2, "vocab_size": 151936, "tie_word_embeddings": true, "rope_theta": 1000000.0, "rms_norm_eps": 1e-06, "max_position_embeddings": 32768}"#;
const SHAPE_SMALL: &str = r#"{"architectures": ["Qwen2ForCausalLM"], "hidden_size": 256, "intermediate_size": 688, "num_hidden_layers": 4, "num_attention_heads": 8, "num_key_value_heads": 2, "vocab_size": 2048, "tie_word_embeddings": true, "rope_theta": 1000000.0, "rms_norm_eps": 1e-06, "max_position_embeddings": 1024}"#;

/// Random weights: uniform in ±0.05, norms 1; seeded by the tensor's name.
struct RandomWeights;

impl WeightSource for RandomWeights {
    fn tensor(
        &self,
        name: &str,
        shape: &[usize],
        _dtype: &dyn Fn(DType) -> DType,
    ) -> Result<TensorData, ModelError> {
        let len: usize = shape.iter().product();
        let values: Vec<f32> = if name.contains("norm") {
            vec![1.0; len]
        } else {
            let seed = name
                .bytes()
                .fold(7u64, |s, b| s.wrapping_mul(31).wrapping_add(u64::from(b)));
            let mut rng = SmallRng::seed_from_u64(seed);
            (0..len).map(|_| rng.random_range(-0.05..0.05)).collect()
        };
        Ok(TensorData::new(values, shape.to_vec()))
    }
}

fn model(shape: &str) -> (String, CausalLm<B>) {
    let device = Default::default();
    let random = |json: &str| {
        let config = ModelConfig::from_json(json).expect("a config");
        let placement = LayerPlacement::single(device, config.num_layers);
        build_model::<B>(
            &config,
            &RandomWeights,
            &placement,
            DType::F32,
            LayerStorage::Computed,
        )
        .expect("the model builds")
    };
    match shape {
        "0.5b" => (
            format!("Qwen2.5-0.5B's shape, random weights: {SHAPE_05B}"),
            random(SHAPE_05B),
        ),
        "small" => (
            format!("Qwen2-shaped random weights: {SHAPE_SMALL}"),
            random(SHAPE_SMALL),
        ),
        _ => {
            let dir =
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/models/anneal-tiny");
            let (_, model) = load_model::<B>(&dir, &device, DType::F32).expect("the tiny model");
            (
                "examples/models/anneal-tiny (Qwen2, hidden 128, 4 layers, vocab 2048)".to_owned(),
                model,
            )
        }
    }
}

/// Prompts of different lengths: `base`, `base + 7`, `base + 14`, ...
fn prompts(rows: usize, base: usize, vocab: usize) -> Vec<Vec<u32>> {
    (0..rows)
        .map(|r| {
            (0..base + 7 * r)
                .map(|i| ((i * 7919 + r * 131) % vocab) as u32)
                .collect()
        })
        .collect()
}

fn params(steps: usize) -> SamplingParams {
    SamplingParams {
        // The prompt's step gives the first token; `steps` decoding steps follow.
        max_new_tokens: steps + 1,
        ..Default::default()
    }
}

/// Every row in one cache, decoding together: the time of the decoding steps, the
/// tokens, and the cache's bytes.
fn together(
    model: &CausalLm<B>,
    prompts: &[Vec<u32>],
    steps: usize,
) -> (Duration, Vec<Vec<u32>>, usize) {
    let longest = prompts.iter().map(Vec::len).max().unwrap();
    let mut cache = KvSlots::new(model, prompts.len(), longest + steps + 1);
    let mut decodings: Vec<Decoding> = prompts
        .iter()
        .map(|p| Decoding::new(p, &[], &params(steps)))
        .collect();
    let mut tokens = vec![Vec::new(); prompts.len()];
    for (slot, d) in decodings.iter_mut().enumerate() {
        let Step::Token(t) = d.step(model, slot, &mut cache) else {
            panic!("a token")
        };
        tokens[slot].push(t);
    }
    let start = Instant::now();
    for _ in 0..steps {
        let mut rows: Vec<(&mut Decoding, usize)> = decodings
            .iter_mut()
            .enumerate()
            .map(|(s, d)| (d, s))
            .collect();
        for (slot, step) in decode_together(model, &mut rows, &mut cache, None)
            .into_iter()
            .enumerate()
        {
            let Step::Token(t) = step else {
                panic!("a token")
            };
            tokens[slot].push(t);
        }
    }
    (start.elapsed(), tokens, cache.bytes())
}

/// Each row alone in a cache of its own, one after the other.
fn one_at_a_time(
    model: &CausalLm<B>,
    prompts: &[Vec<u32>],
    steps: usize,
) -> (Duration, Vec<Vec<u32>>) {
    let mut time = Duration::ZERO;
    let mut all = Vec::new();
    for prompt in prompts {
        let mut cache = KvSlots::new(model, 1, prompt.len() + steps + 1);
        let mut decoding = Decoding::new(prompt, &[], &params(steps));
        let mut tokens = Vec::new();
        let Step::Token(t) = decoding.step(model, 0, &mut cache) else {
            panic!("a token")
        };
        tokens.push(t);
        let start = Instant::now();
        for _ in 0..steps {
            let Step::Token(t) = decoding.step(model, 0, &mut cache) else {
                panic!("a token")
            };
            tokens.push(t);
        }
        time += start.elapsed();
        all.push(tokens);
    }
    (time, all)
}

/// Each row alone on the old path: every step through `forward_hidden`, its cache
/// grown by concatenation (a copy of everything cached, per layer and token).
fn one_at_a_time_concat(
    model: &CausalLm<B>,
    prompts: &[Vec<u32>],
    steps: usize,
) -> (Duration, Vec<Vec<u32>>) {
    let device = model.embed_tokens.weight.device();
    let ids = |tokens: &[u32]| {
        let values: Vec<i64> = tokens.iter().map(|&t| i64::from(t)).collect();
        Tensor::<B, 1, Int>::from_data(TensorData::new(values, [tokens.len()]), &device)
            .reshape([1, tokens.len()])
    };
    let next = |hidden: Tensor<B, 3>| {
        let len = hidden.dims()[1];
        let logits = model.logits(hidden.narrow(1, len - 1, 1)).into_data(); // [1, 1, vocab]
        argmax(logits.as_slice::<f32>().expect("f32 logits"))
    };
    let mut time = Duration::ZERO;
    let mut all = Vec::new();
    for prompt in prompts {
        let (hidden, mut cache) = model.forward_hidden(ids(prompt), None);
        let mut tokens = vec![next(hidden)];
        let start = Instant::now();
        for _ in 0..steps {
            let (hidden, grown) =
                model.forward_hidden(ids(&tokens[tokens.len() - 1..]), Some(cache));
            cache = grown;
            tokens.push(next(hidden));
        }
        time += start.elapsed();
        all.push(tokens);
    }
    (time, all)
}

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_owned())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let shape = arg(&args, "--shape", "0.5b");
    let rows: usize = arg(&args, "--rows", "8").parse().expect("a number");
    let steps: usize = arg(&args, "--steps", "8").parse().expect("a number");
    let prompt_len: usize = arg(&args, "--prompt", "64").parse().expect("a number");
    let (what, model) = model(&shape);
    let vocab = model.embed_tokens.weight.dims()[0];
    let prompts = prompts(rows, prompt_len, vocab);

    // One untimed round of each: first-touch allocation, thread pools.
    let _ = together(&model, &prompts[..1], 1);
    let (batched, batched_ids, cache_bytes) = together(&model, &prompts, steps);
    let (alone, alone_ids) = one_at_a_time(&model, &prompts, steps);
    let (old, old_ids) = one_at_a_time_concat(&model, &prompts, steps);
    assert_eq!(
        batched_ids, alone_ids,
        "decoding together changed the tokens"
    );
    assert_eq!(
        old_ids, alone_ids,
        "the preallocated cache changed the tokens"
    );
    let tokens = (rows * steps) as f64;
    let tps = |time: Duration| tokens / time.as_secs_f64();
    let (batched_tps, alone_tps, old_tps) = (tps(batched), tps(alone), tps(old));
    let attn = &model.layers[0].self_attn;
    let per_position = position_bytes(
        model.layers.len(),
        attn.num_kv_heads,
        attn.head_dim,
        DType::F32,
    );
    let kib = |b: usize| b as f64 / 1024.0;
    let text = format!(
        "## decoding: rows together vs one at a time (CPU)\n\n\
         Command: `cargo bench -p anneal-model --bench decode --profile dev -- --shape {shape} --rows {rows} --steps {steps} --write` ({}, 2 cores).\n\
         Model: {what}; f32 (the CPU computes in f32). {rows} greedy generations with prompts of {prompt_len} to {} tokens, \
         {steps} decoding steps each after the prompt's, timed without the prompts. Together: one preallocated KV cache with a slot \
         per generation, one model step per token for all of them (`decode_together`, as `trainer serve` runs concurrent requests); \
         one at a time: each generation in a cache of its own (as `generate` runs one); old path: one at a time, every step \
         through `forward_hidden` with the cache grown by concatenation (as `generate` ran before). All three give the same \
         tokens (checked).\n\n\
         | decoding | tokens/s | KV cache |\n|---|---|---|\n\
         | {rows} rows together | {batched_tps:.1} | {:.0} KiB ({rows} slots x {} positions) |\n\
         | one at a time | {alone_tps:.1} | one slot each |\n\
         | one at a time, old path (concatenated cache) | {old_tps:.1} | grown per token |\n\n\
         Ratios: together / one at a time **{:.2}x**; together / old path **{:.2}x**; one at a time / old path **{:.2}x** \
         tokens/s.\n\n\
         A position of context takes {:.1} KiB of cache at this shape in f32; in bf16, as on CUDA: {:.0} KiB at Qwen2.5-7B \
         (28 layers, 4 KV heads of 128), {:.0} KiB at Qwen2.5-72B (80 layers, 8 KV heads of 128).\n",
        anneal_crds::jiff::Zoned::now().date(),
        prompt_len + 7 * (rows - 1),
        kib(cache_bytes),
        cache_bytes / (rows * per_position),
        batched_tps / alone_tps,
        batched_tps / old_tps,
        alone_tps / old_tps,
        kib(per_position),
        kib(position_bytes(28, 4, 128, DType::BF16)),
        kib(position_bytes(80, 8, 128, DType::BF16)),
    );
    print!("{text}");
    if args.iter().any(|a| a == "--write") {
        results_section::write_section(
            &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../benches/RESULTS.md"),
            &text,
        );
    }
}
