#!/usr/bin/env bash
# The whole test suite, as CI runs it. Installs what it needs (Python tools in
# .venv, from PyPI) on a fresh machine that has only Rust and Python 3.11.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "Python test tools (.venv)"
# Installed again whenever scripts/requirements-test.txt changes: the stamp is a copy
# of the requirements the venv was last installed from.
stamp=.venv/requirements-test.installed
if ! cmp -s scripts/requirements-test.txt "$stamp"; then
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check -r scripts/requirements-test.txt
    cp scripts/requirements-test.txt "$stamp"
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "the CUDA backend still compiles (no GPU or toolkit needed)"
cargo clippy -p anneal-trainer --features cuda --lib --bins --locked -- -D warnings

step "generated CRDs are up to date"
cargo run --quiet --locked -p anneal-crds --bin crdgen -- --check

step "CRDs validate against the Kubernetes 1.33 API schema"
.venv/bin/kubernetes-validate --strict --quiet -k 1.33.0 deploy/crds/*.yaml charts/anneal/crds/*.yaml

step "cargo test"
cargo test --workspace --locked
