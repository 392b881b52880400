//! The integration-test harness every test binary shares: hotserve in the test process
//! ([`inprocess`], the default) or as the real binary ([`hotserve`], where the process is the
//! point: signals, exit codes, logs, debug failpoints), waiting for conditions instead of
//! sleeping ([`wait`]), one real MLflow tracking server per test binary ([`mlflow_server`]),
//! registering models in it with MLflow's own Python client (`register.py`) and a
//! fault-injecting HTTP proxy to put in front of it ([`fault_proxy`]), one HTTPS request with
//! Python's `ssl` module (`tls_client.py`, for `tests/tls.rs`), curl as a client ([`curl`]),
//! and object stores: an S3 server and an MLflow server that keeps its artifacts there without
//! proxying them ([`stores`]).
//!
//! Include it from a test binary with `#[path = "support/mod.rs"] mod support;` (from
//! `tests/`) or `#[path = "../support/mod.rs"] mod support;` (from a folder under `tests/`).
#![allow(dead_code, unused_imports)]

pub mod curl;
pub mod fault_proxy;
pub mod hotserve;
pub mod inprocess;
pub mod mlflow_server;
pub mod stores;
pub mod wait;

pub use fault_proxy::{Fault, FaultProxy};
pub use mlflow_server::{mlflow, register, repo_root, MlflowServer};
pub use wait::{eventually, metric, metric_reaches, PATIENCE};
