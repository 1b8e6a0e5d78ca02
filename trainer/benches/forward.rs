//! Forward-pass throughput of a model folder on the CPU backend: full-sequence
//! forwards with logits, as prefill and scoring do. Prints one JSON line
//! (`tokens_per_second`, `peak_rss_mib`), read by benches/forward_cpu.py, which
//! runs transformers on the same checkpoint for the ratio.
//!
//! cargo bench -p anneal-trainer --bench forward -- MODEL_DIR [BATCH] [SEQ] [ITERS]

mod common;

use std::path::PathBuf;
use std::time::Instant;

use anneal_model::backend::CpuBackend;
use anneal_model::llm::load_model;
use burn::prelude::*;
use burn::tensor::DType;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let model_dir = PathBuf::from(
        args.first()
            .expect("usage: forward MODEL_DIR [BATCH] [SEQ] [ITERS]"),
    );
    let arg = |i: usize, default: usize| {
        args.get(i)
            .map_or(default, |v| v.parse().expect("a number"))
    };
    let (batch, seq, iters) = (arg(1, 4), arg(2, 256), arg(3, 10));

    let device = Default::default();
    let (config, model) =
        load_model::<CpuBackend>(&model_dir, &device, DType::F32).expect("the model loads");
    // Token ids spread over the vocabulary; their values do not change the cost.
    let ids: Vec<i64> = (0..batch * seq)
        .map(|i| ((i * 7919) % config.vocab_size) as i64)
        .collect();
    let input = || {
        Tensor::<CpuBackend, 1, Int>::from_data(
            TensorData::new(ids.clone(), [batch * seq]),
            &device,
        )
        .reshape([batch, seq])
    };

    // One untimed pass: first-touch allocation and any lazy initialisation.
    let _ = model.forward(input()).into_data();
    let start = Instant::now();
    for _ in 0..iters {
        // into_data waits for the result, so the time covers the whole computation.
        let _ = model.forward(input()).into_data();
    }
    let seconds = start.elapsed().as_secs_f64();
    let tokens = (batch * seq * iters) as f64;
    println!(
        "{}",
        serde_json::json!({
            "implementation": "anneal (burn flex, f32)",
            "batch": batch, "seq": seq, "iters": iters,
            "tokens_per_second": tokens / seconds,
            "peak_rss_mib": common::peak_rss_mib(),
        })
    );
}
