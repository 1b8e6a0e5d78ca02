# syntax=docker/dockerfile:1
# The trainer's two images, two targets of this file, both running as uid 65532 (the
# uid the operator gives their pods):
#   trainer (the default, last stage): `trainer` built with `--features cuda` on a slim
#     CUDA 12.4 base, for trainer pods (`trainer train`) and `runtime: builtin`
#     ModelDeployments (`trainer serve`);
#   fetch: `trainer` built without CUDA on distroless, for the init containers that
#     download models and adapters (`trainer fetch`), which need no GPU.
#
#   docker build -f docker/trainer.Dockerfile -t ghcr.io/anneal-dev/anneal-trainer:0.1.0 .
#   docker build -f docker/trainer.Dockerfile --target fetch -t ghcr.io/anneal-dev/anneal-fetch:0.1.0 .
#
# Why CUDA 12.4, and the driver floor it sets: GPU nodes need driver >= 550.54.15 (R550,
# common on H100 fleets, or newer). burn-cuda (cubecl 0.10) compiles its kernels at run
# time with NVRTC into PTX, which the driver then JIT-compiles (cuModuleLoadData); a
# driver refuses PTX of an ISA newer than its own CUDA, and CUDA's minor-version
# compatibility covers prebuilt binaries, not JIT-compiled PTX. So NVRTC's CUDA is the
# floor, and 12.4 is the newest CUDA driver 550 runs. Nothing Anneal runs on Hopper or
# Ampere needs more: what cubecl-cuda gates on CUDA 12.8 (its `cuda_12080` cfg:
# im2col-wide TMA, packed-fp4 tensor maps, swizzle atomicity, fast tanh) is for
# Blackwell, and the 12.4 bindings compile it out. Blackwell GPUs (sm_100, sm_120) need
# NVRTC 12.8: build with CUDA_VERSION=12.8.1 CUDARC_CUDA_VERSION=12080
# NCCL_VERSION=2.25.1-1 and run it on driver >= 570. (NVIDIA's cuda-compat package
# would run a newer CUDA on driver 550, but only on data-center GPUs, with its libcuda
# put first on the library path; 12.4 needs none of that.) `trainer train`/`serve`
# check the driver against this image's CUDA_VERSION at start and say so when it is
# too old.
#
# Build args:
#   CUDA_VERSION         the CUDA of the run-time base (nvidia/cuda tag) and of the NVRTC,
#                        headers and NCCL installed on it.
#   CUDARC_CUDA_VERSION  the CUDA API the bindings are built for: 12040 for 12.4; keep it
#                        equal to CUDA_VERSION (cudarc cannot ask nvcc here).
#   NCCL_VERSION         libnccl2's version built for that CUDA (the package is
#                        libnccl2=NCCL_VERSION+cudaMAJOR.MINOR).
#   RUST_VERSION         the builders' toolchain.
#
# The CUDA run-time stage is nvidia/cuda's -base image (cudart, the CUDA apt repository,
# NVIDIA_DRIVER_CAPABILITIES=compute,utility so nvidia-smi is mounted) plus only what
# burn-cuda loads: libnvrtc (cuda-nvrtc); the headers cubecl's generated kernels
# #include (cubecl-cpp 0.10: cuda_runtime.h, cuda_fp16.h, cuda_bf16.h, cuda_fp8.h,
# mma.h, cooperative_groups.h and cooperative_groups/memcpy_async.h, and from CCCL
# cuda/barrier, cuda/pipeline, cuda/ptx; NVRTC gets `--include-path=$CUDA_PATH/include`),
# copied from a stage that installs cuda-cudart-dev, cuda-cccl and cuda-nvcc (whose crt/
# headers cuda_runtime.h pulls in) so that nvcc itself stays behind; and libnccl2,
# through which cubecl moves tensors between GPUs (a model placed on several).
# Expected size, an estimate (not measured: no image is built in CI): about 0.6 GB
# uncompressed (the -base image ~0.25 GB, NCCL ~0.25, NVRTC ~0.07, headers ~0.03, the
# binary ~0.05), against ~9 GB for the -devel image.

ARG RUST_VERSION=1.95
ARG CUDA_VERSION=12.4.1

# --- builders: the sources once, then `trainer` with and without CUDA ------------------
FROM rust:${RUST_VERSION}-bookworm AS source
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .

FROM source AS build-cuda
ARG CUDARC_CUDA_VERSION=12040
ENV CUDARC_CUDA_VERSION=${CUDARC_CUDA_VERSION}
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p anneal-trainer --features cuda --bin trainer \
    && install -m 0755 target/release/trainer /trainer

FROM source AS build-fetch
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p anneal-trainer --bin trainer \
    && install -m 0755 target/release/trainer /trainer

# --- fetch: `trainer fetch`, no CUDA ------------------------------------------------------
# The CPU binary needs only glibc, libgcc and the CA certificates (TLS is rustls, with
# the system's roots), all of which distroless/cc has.
FROM gcr.io/distroless/cc-debian12:nonroot AS fetch
COPY --from=build-fetch /trainer /usr/local/bin/trainer
ENV HOME=/work
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/trainer"]
CMD ["fetch", "--help"]

# --- the CUDA headers NVRTC compiles cubecl's kernels against ---------------------------
FROM nvidia/cuda:${CUDA_VERSION}-base-ubuntu22.04 AS cuda-headers
ARG CUDA_VERSION
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN cuda_minor=$(cut -d. -f1,2 <<< "${CUDA_VERSION}") \
    && apt-get update \
    && apt-get install -y --no-install-recommends \
        "cuda-cudart-dev-${cuda_minor/./-}" "cuda-cccl-${cuda_minor/./-}" "cuda-nvcc-${cuda_minor/./-}" \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /opt/cuda \
    && cp -rL "/usr/local/cuda-${cuda_minor}"/targets/*/include /opt/cuda/include \
    && for header in cuda_runtime.h cuda_fp16.h cuda_bf16.h cuda_fp8.h mma.h crt/host_config.h \
        cooperative_groups.h cooperative_groups/memcpy_async.h cuda/barrier cuda/pipeline cuda/ptx; do \
        test -e "/opt/cuda/include/${header}" || { echo "no ${header} in CUDA ${CUDA_VERSION}" >&2; exit 1; }; \
    done

# --- trainer: the CUDA image (default target) ------------------------------------------
FROM nvidia/cuda:${CUDA_VERSION}-base-ubuntu22.04 AS trainer
ARG CUDA_VERSION
ARG NCCL_VERSION=2.21.5-1
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# cudarc dlopens NCCL as libnccl.so, a name only libnccl-dev (headers and a static
# library) would link; the link alone does. Each library is then checked findable.
RUN cuda_minor=$(cut -d. -f1,2 <<< "${CUDA_VERSION}") \
    && apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
        "cuda-nvrtc-${cuda_minor/./-}" "libnccl2=${NCCL_VERSION}+cuda${cuda_minor}" \
    && rm -rf /var/lib/apt/lists/* \
    && nccl=$(ldconfig -p | awk '/libnccl\.so\.2 / && !found {print $NF; found = 1}') \
    && test -n "${nccl}" \
    && ln -s "$(basename "${nccl}")" "$(dirname "${nccl}")/libnccl.so" \
    && ldconfig \
    && ldconfig -p | grep 'libnvrtc\.so\.12 ' > /dev/null \
    && ldconfig -p | grep 'libnvrtc-builtins\.so' > /dev/null \
    && ldconfig -p | grep 'libnccl\.so ' > /dev/null \
    && groupadd --gid 65532 anneal \
    && useradd --uid 65532 --gid 65532 --home-dir /work --no-create-home --shell /usr/sbin/nologin anneal \
    && mkdir -p /work && chown 65532:65532 /work
COPY --from=cuda-headers /opt/cuda/include /opt/cuda/include
COPY --from=build-cuda /trainer /usr/local/bin/trainer
# Built against the builder's glibc (Debian 12, 2.36), run on Ubuntu 22.04's (2.35):
# it must start here. Loading CUDA waits for a GPU, so this touches none.
RUN /usr/local/bin/trainer --version
# CUDA_PATH: where cubecl points NVRTC's include path. CUDA_VERSION (from the base) is
# what the start check holds the driver to. The kernel cache is the operator's volume
# (ANNEAL_KERNEL_CACHE); HOME and the work folder are its emptyDir at /work.
ENV CUDA_PATH=/opt/cuda \
    HOME=/work \
    ANNEAL_WORK_DIR=/work
WORKDIR /work
USER 65532:65532
# 8000: `trainer serve` (OpenAI-compatible /v1, /health).
EXPOSE 8000
ENTRYPOINT ["/usr/local/bin/trainer"]
CMD ["--help"]
