#!/usr/bin/env bash
# Makes, on a machine without a GPU, what a lent GPU machine needs to run check.sh in
# one call: the GPU machine reaches no registry, so `trainer` is built here with CUDA
# (cudarc binds the CUDA API version named below; the GPU machine's CUDA runs it) and
# copied, stripped, to target/gpu/trainer. It prints the call that carries it there.
#
#   scripts/gpu/prepare.sh            # CUDA 13.0 (CUDARC_CUDA_VERSION=13000)
#   CUDARC_CUDA_VERSION=12040 scripts/gpu/prepare.sh
#
# The build keeps its own target folder (target/cuda), so it does not undo the CPU
# build's; from cold it takes a while on 2 cores, after that only the changed crates.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
export CUDARC_CUDA_VERSION=${CUDARC_CUDA_VERSION:-13000}
cargo build --release --locked -p anneal-trainer --bin trainer --features cuda --target-dir target/cuda
mkdir -p target/gpu
strip -o target/gpu/trainer target/cuda/release/trainer
size=$(stat -c %s target/gpu/trainer)
echo "target/gpu/trainer: $((size / 1024 / 1024)) MiB (CUDA API $CUDARC_CUDA_VERSION, commit $(git rev-parse --short HEAD))"
if (( size > 60 * 1024 * 1024 )); then
  echo "warning: over 60 MiB; a device call carries at most 64 MiB in all" >&2
fi
cat <<'CALL'
On the lent machine, in one device call (carry: ["target/gpu"], timeout_s: 600):
  ANNEAL_TRAINER_BIN=target/gpu/trainer ANNEAL_PYTHON=python3 ANNEAL_CHECK_BUDGET=540 scripts/gpu/check.sh
Its table is written to $OUT/gpu-check.md, each step's output to $OUT/gpu-check-steps.log.
CALL
