//! Integration tests against a real MLflow tracking server (started once for this binary by
//! the shared harness in `tests/support`): resolving every `MODEL_URI` form, downloading, and
//! how failures read, with faults injected only through the harness's proxy.

#[path = "../support/mod.rs"]
mod support;

mod cache;
mod crash;
mod grpc;
mod promote;
mod registry;
mod reload;
