#!/usr/bin/env bash
# Runs the parser fuzz targets (tests/fuzz/parsers.rs) longer than the test suite does:
#   scripts/fuzz.sh [ITERATIONS]     # default 200000 inputs per target
# A failure prints BOLERO_RANDOM_SEED=...; rerun that seed to repeat the crash, then add
# the input to the `regressions` test.
set -euo pipefail
cd "$(dirname "$0")/.."
ITERATIONS=${1:-200000}
export BOLERO_RANDOM_ITERATIONS=$ITERATIONS
echo "fuzzing every parser target with $ITERATIONS inputs each"
time cargo test --release --locked -p anneal-fuzz -- --test-threads 2
