#!/usr/bin/env bash
# Makes, on a machine without a GPU, what a lent GPU machine needs to run check.sh in
# one call: the GPU machine reaches no registry, so `trainer` is built here with CUDA
# (cudarc binds the CUDA API version named below; the GPU machine's CUDA runs it),
# stripped and compressed to target/gpu/trainer.gz. It prints the call that carries it
# there.
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
# Stripped, it is over 100 MiB; a device call carries 64 MiB with the working tree, so
# it travels compressed (about 31 MiB) and is unpacked there.
strip -o target/gpu/trainer target/cuda/release/trainer
gzip -9 -f target/gpu/trainer
packed=$(stat -c %s target/gpu/trainer.gz)
tree=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
echo "target/gpu/trainer.gz: $((packed / 1024 / 1024)) MiB beside $((tree / 1024 / 1024)) MiB of tracked files (CUDA API $CUDARC_CUDA_VERSION, commit $(git rev-parse --short HEAD))"
if (( packed + tree > 62 * 1024 * 1024 )); then
  echo "warning: a device call carries at most 64 MiB with the working tree" >&2
fi
cat <<'CALL'
On the lent machine, in one device call (carry: ["target/gpu"], timeout_s: 600):
  gunzip -c target/gpu/trainer.gz > /tmp/trainer && chmod +x /tmp/trainer && ANNEAL_TRAINER_BIN=/tmp/trainer ANNEAL_PYTHON=python3 ANNEAL_CHECK_BUDGET=540 scripts/gpu/check.sh
Its table is written to $OUT/gpu-check.md, each step's output to $OUT/gpu-check-steps.log.
CALL
