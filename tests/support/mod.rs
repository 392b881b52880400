//! The integration-test harness every test binary shares: one real MLflow tracking server per
//! test binary ([`mlflow_server`]), registering models in it with MLflow's own Python client
//! (`register.py`), and a fault-injecting HTTP proxy to put in front of it ([`fault_proxy`]).
//!
//! Include it from a test binary with `#[path = "../support/mod.rs"] mod support;`.
#![allow(dead_code, unused_imports)]

pub mod fault_proxy;
pub mod hotserve;
pub mod mlflow_server;

pub use fault_proxy::{Fault, FaultProxy};
pub use mlflow_server::{mlflow, register, repo_root, MlflowServer};
