//! Helpers for the executor integration tests (fake Kubernetes API, broker access).

pub mod fake_kube;
