#!/usr/bin/env python3
"""Matrix products on the CPU: the trainer's backend (burn's Flex, through the gemm
crate) against torch, on the same shapes, both on 2 threads. The shapes are the
products of a LoRA step at Qwen2.5-0.5B's size (benches/scale_cpu.py): most of a
CPU training step's time is in them, so their speed bounds the trainer's tokens/s
against transformers + PEFT.

    cargo build --release -p anneal-model --benches
    /tmp/refvenv/bin/python benches/matmul_cpu.py [--write]
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from forward_cpu import write_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SECTION = "## matrix products on the CPU"
REPEATS = 5


def burn_products() -> list:
    env = dict(os.environ, RAYON_NUM_THREADS="2")
    out = subprocess.run(["cargo", "bench", "-q", "-p", "anneal-model", "--bench", "matmul"],
                         check=True, capture_output=True, text=True, cwd=ROOT, env=env).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def torch_gflops(rows: int, inner: int, columns: int) -> float:
    import torch
    torch.set_num_threads(2)
    torch.manual_seed(0)
    a, b = torch.randn(rows, inner), torch.randn(inner, columns)
    a @ b
    start = time.perf_counter()
    for _ in range(REPEATS):
        a @ b
    seconds = (time.perf_counter() - start) / REPEATS
    return 2 * rows * inner * columns / seconds / 1e9


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--write", action="store_true", help="update benches/RESULTS.md")
    args = parser.parse_args()
    import torch
    rows = []
    for product in burn_products():
        shape = product["shape"]
        reference = torch_gflops(*shape)
        rows.append((shape, product["what"], product["gflops"], reference))
    table = ["| product | shape | burn flex (GFLOP/s) | torch (GFLOP/s) | flex / torch |", "|---|---|---|---|---|"]
    for (m, k, n), what, ours, theirs in rows:
        table.append(f"| {what} | [{m}, {k}] x [{k}, {n}] | {ours:.1f} | {theirs:.1f} | {ours / theirs:.2f}x |")
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown CPU")
    section = "\n".join([
        SECTION, "",
        f"Command: `/tmp/refvenv/bin/python benches/matmul_cpu.py --write` ({time.strftime('%Y-%m-%d')}, {cpu}, 2 threads each; "
        f"f32, {REPEATS} products timed after one warm-up; torch {torch.__version__}).",
        "The trainer's CPU backend multiplies through the gemm crate, whose AVX-512 kernels are compiled only with its "
        "`x86-v4` feature (the workspace turns it on; they are picked at run time where the CPU has AVX-512).",
        "", *table, "",
    ])
    print(section)
    if args.write:
        write_section(SECTION, section)


if __name__ == "__main__":
    main()
