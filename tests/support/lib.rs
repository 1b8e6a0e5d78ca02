//! Support code for Anneal's workspace-level tests: a fake kubelet that moves Jobs and
//! Pods along on the fake API server (crate `anneal-fake-apiserver`), and a harness
//! that runs the operator in process (or as a process a test can kill) with the real
//! `trainer` process and an S3-compatible server (crate `anneal-moto`). The
//! `anneal-sim-trainer` binary stands in for `trainer` where hundreds of jobs run.

pub mod bench_operator;
pub mod browser;
pub mod console_support;
pub mod fake_kubelet;
pub mod operator_harness;
pub mod operator_process;
