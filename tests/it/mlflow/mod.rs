//! Integration tests against a real MLflow tracking server (started once for the whole test
//! binary by `support::mlflow_server`): resolving every `MODEL_URI` form, downloading, hot
//! reload, promotion, the cache, crashes, the search for registered models, and how failures
//! read, with faults injected only through the harness's proxy.

mod cache;
mod crash;
mod discovery;
mod grpc;
mod promote;
mod registry;
mod reload;
mod search;
