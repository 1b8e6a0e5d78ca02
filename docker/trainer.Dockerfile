# syntax=docker/dockerfile:1
# The trainer image: `trainer` built with `--features cuda`, used by trainer pods
# (`trainer train`), by `runtime: builtin` ModelDeployments (`trainer serve`) and by
# the init containers that fetch models (`trainer fetch`). Runs as uid 65532, the
# uid the operator gives those pods.
#
#   docker build -f docker/trainer.Dockerfile -t ghcr.io/anneal-dev/anneal-trainer:0.1.0 .
#
# Build args that matter:
#   CUDA_VERSION         the CUDA of the run-time base image (nvidia/cuda tag). The
#                        nodes' driver must support it (CUDA 12.8 needs driver >= 570).
#   CUDARC_CUDA_VERSION  the CUDA API the bindings are built for, e.g. 12080 for 12.8;
#                        keep it equal to CUDA_VERSION (cudarc cannot ask nvcc here).
#   RUST_VERSION         the builder's toolchain.
#
# burn-cuda needs no CUDA at build time, but at run time it loads libcuda (from the
# node's driver, mounted by the NVIDIA container toolkit) and libnvrtc, and NVRTC
# compiles its kernels against the CUDA headers: hence the -devel base, which has
# both (and sets CUDA_PATH-compatible /usr/local/cuda).

ARG RUST_VERSION=1.95
ARG CUDA_VERSION=12.8.1

FROM rust:${RUST_VERSION}-bookworm AS build
ARG CUDARC_CUDA_VERSION=12080
ENV CUDARC_CUDA_VERSION=${CUDARC_CUDA_VERSION}
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p anneal-trainer --features cuda --bin trainer \
    && install -m 0755 target/release/trainer /trainer

FROM nvidia/cuda:${CUDA_VERSION}-devel-ubuntu24.04
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 65532 anneal \
    && useradd --uid 65532 --gid 65532 --home-dir /work --no-create-home --shell /usr/sbin/nologin anneal \
    && mkdir -p /work && chown 65532:65532 /work
COPY --from=build /trainer /usr/local/bin/trainer
ENV CUDA_PATH=/usr/local/cuda \
    HOME=/work \
    ANNEAL_WORK_DIR=/work
WORKDIR /work
USER 65532:65532
# 8000: `trainer serve` (OpenAI-compatible /v1, /health).
EXPOSE 8000
ENTRYPOINT ["/usr/local/bin/trainer"]
CMD ["--help"]
