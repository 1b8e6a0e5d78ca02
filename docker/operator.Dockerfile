# syntax=docker/dockerfile:1
# The operator image: `anneal-operator` (FineTuneJob and ModelDeployment controllers,
# report endpoint, metrics) on a distroless base, as uid 65532.
#
#   docker build -f docker/operator.Dockerfile -t ghcr.io/anneal-dev/anneal-operator:0.1.0 .
#
# Build args: RUST_VERSION (the builder's toolchain, >= the workspace's rust-version).
# The binary needs only glibc, libgcc and CA certificates (TLS is rustls).

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
# aws-lc-sys (rustls' crypto) builds C code; cmake covers targets that need it.
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p anneal-operator --bin anneal-operator \
    && install -m 0755 target/release/anneal-operator /anneal-operator

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /anneal-operator /usr/local/bin/anneal-operator
USER 65532:65532
# 8080: report endpoint (trainers post events, job logs); 9090: /metrics, /healthz, /readyz.
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/anneal-operator"]
