//! The harness every integration test shares: hotserve in the test process
//! ([`inprocess`], the default) or as the real binary ([`hotserve`], where the process is the
//! point: signals, exit codes, logs, debug failpoints), waiting for conditions instead of
//! sleeping ([`wait`]), one real MLflow tracking server for the whole test binary ([`mlflow_server`]),
//! registering models in it with MLflow's own Python client (`register.py`) and a
//! fault-injecting HTTP proxy to put in front of it ([`fault_proxy`]), one HTTPS request with
//! Python's `ssl` module (`tls_client.py`, for `tls.rs`), curl as a client ([`curl`]),
//! and object stores: an S3 server and an MLflow server that keeps its artifacts there without
//! proxying them ([`stores`]).

pub mod curl;
pub mod fault_proxy;
pub mod hotserve;
pub mod inprocess;
pub mod mlflow_server;
pub mod stores;
pub mod wait;

pub use fault_proxy::{Fault, FaultProxy};
pub use mlflow_server::{mlflow, register, repo_root};
pub use wait::{eventually, metric, metric_reaches, PATIENCE};
