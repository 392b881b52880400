//! hotserve's integration tests: one test binary, so that the crate and ONNX Runtime's bindings
//! are linked once. Each module is one subject; `support` is the harness they share (servers in
//! the test process or as the real binary, one real MLflow server for the whole binary, object
//! stores, waiting for conditions, the Python helpers beside it).
//!
//! Run one subject with a filter on its module path: `cargo test --test it serve::`, or
//! `cargo test --test it mlflow::reload::` for a part of the MLflow tests.

mod support;

mod conformance;
mod fleet;
mod grpc;
mod hostile_models;
mod http2;
mod layouts;
mod lifecycle;
mod limits;
mod mlflow;
mod models;
mod oip;
mod payload_log;
mod properties;
mod providers;
mod serve;
mod stores;
mod tls;
mod traces;
mod weights;
