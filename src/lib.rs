//! hotserve: a model-serving daemon for MLflow ONNX models with atomic hot reload.
//!
//! The modules follow a request's and a model's path through the daemon:
//!
//! - [`config`]: settings from defaults, YAML, environment and flags, all errors at once.
//! - [`registry`]: the MLflow client: `MODEL_URI` forms, resolution, artifact download.
//! - [`model`]: `MLmodel` parsing, the validation gate, ONNX Runtime sessions, tokenization.
//! - [`reload`]: triggers, the reload pipeline, the model cache, webhooks, the file watcher.
//! - [`promote`]: safe promotion: a candidate compared in shadow before the swap.
//! - [`live`]: the live model behind `ArcSwap`, and the status `/health` reports.
//! - [`queue`]: where a request waits: the bounded queue and the batching inference pool.
//! - [`protocol`]: request formats (`/predict`, MLflow's scoring protocol), parsed purely.
//! - [`predict`]: the one prediction path every route and protocol shares.
//! - [`payload`]: payload logging: sampled request and response records to a file or an
//!   HTTP sink (CloudEvents), off the request path.
//! - [`oip`]: the Open Inference Protocol (KServe v2) apart from its transport; its REST codec.
//! - [`http`]: hyper server, routes, the error -> status mapping.
//! - [`grpc`]: the Open Inference Protocol over gRPC (`inference.GRPCInferenceService`).
//! - [`app`]: wiring and lifecycle; [`cli`]: `resolve` and `validate`.
//! - [`files`]: path confinement and content digests, shared by `registry` and `model`.
//! - [`metrics`], [`sdnotify`]: Prometheus text and systemd notifications.

pub mod accept;
pub mod access;
pub mod app;
pub mod cli;
pub mod config;
pub mod discovery;
pub mod failpoints;
pub mod files;
pub mod grpc;
pub mod http;
pub mod live;
pub mod metrics;
pub mod model;
pub mod oip;
pub mod payload;
pub mod predict;
pub mod promote;
pub mod protocol;
pub mod queue;
pub mod registry;
pub mod reload;
pub mod route;
pub mod sdnotify;
pub mod security;
pub mod state;
pub mod telemetry;
