//! Support code for Anneal's workspace-level tests: a fake Kubernetes API server that
//! kube's `Client` talks to over real HTTP, a fake kubelet that moves Jobs and Pods
//! along, and helpers that start the real `trainer` process and an S3-compatible server.

pub mod fake_apiserver;
pub mod fake_kubelet;
/// A real S3-compatible server (moto), shared with the trainer's tests.
#[path = "../../trainer/tests/support/s3.rs"]
pub mod moto;
pub mod operator_harness;
