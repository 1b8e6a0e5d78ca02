//! Matrix products on the CPU backend (Flex, through the gemm crate) at the shapes a
//! 0.5B model's LoRA step multiplies: GFLOP/s per shape, one JSON line per shape on
//! stdout. `benches/matmul_cpu.py` runs this beside torch's products on the same
//! shapes and writes the comparison to benches/RESULTS.md.
//!
//!     cargo bench -p anneal-model --bench matmul

use std::time::Instant;

use anneal_model::backend::CpuBackend;
use burn::prelude::*;
use burn::tensor::Distribution;

/// (rows, inner, columns, what it is) at Qwen2.5-0.5B's shape, 2 x 1,024 tokens.
const SHAPES: [(usize, usize, usize, &str); 4] = [
    (2048, 896, 4864, "gate/up projection"),
    (2048, 4864, 896, "down projection"),
    (2048, 896, 896, "q/o projection"),
    (220, 896, 151_936, "a logits chunk"),
];
const REPEATS: usize = 5;

fn main() {
    let device = Default::default();
    let normal = Distribution::Normal(0.0, 1.0);
    for (rows, inner, columns, what) in SHAPES {
        let a = Tensor::<CpuBackend, 2>::random([rows, inner], normal, &device);
        let b = Tensor::<CpuBackend, 2>::random([inner, columns], normal, &device);
        // One product first: the threads and buffers are warm for the timed ones.
        let _ = a.clone().matmul(b.clone()).into_data();
        let started = Instant::now();
        for _ in 0..REPEATS {
            let _ = a.clone().matmul(b.clone()).into_data();
        }
        let seconds = started.elapsed().as_secs_f64() / REPEATS as f64;
        let gflops = 2.0 * (rows * inner * columns) as f64 / seconds / 1e9;
        println!(
            "{{\"shape\": [{rows}, {inner}, {columns}], \"what\": \"{what}\", \"gflops\": {gflops:.1}}}"
        );
    }
}
