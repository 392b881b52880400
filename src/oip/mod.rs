//! The Open Inference Protocol (KServe v2, Triton's HTTP/gRPC API) independent of its
//! transport: tensors and their datatypes, the server and model metadata, readiness, and
//! `infer`, which runs a decoded request through the same path as `/predict` and
//! `/invocations` ([`crate::predict`]: limits, queue, batching, deadline, metrics). REST's
//! JSON and binary codec is [`rest`]; the gRPC service is `crate::grpc`. Errors are
//! [`OipError`]; each transport maps them to its statuses (REST in `http/error.rs`).
//!
//! Text models take one `BYTES` input of shape `[N]` (named after the signature's string
//! input, `text` by default) and answer `label` (`BYTES [N]`, named after the signature's
//! string output when there is one) and `probabilities` (`FP32 [N, labels]`). Tensor models
//! take and answer the graph's own inputs and outputs, with the graph's datatypes.

pub mod rest;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::live::{Demand, NotLive, Residency};
pub use crate::model::element::{ElementType, Values};
use crate::model::tensor::NamedTensor;
use crate::model::{argmax, InferError, Model, TensorDesc};
use crate::payload::Exchange;
use crate::predict;
use crate::queue::PoolError;
use crate::state::{App, Served};

/// One input or output tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<i64>,
    pub data: Values,
}

/// An output the client asked for (empty list in the request = every output).
#[derive(Clone, Debug, PartialEq)]
pub struct RequestedOutput {
    pub name: String,
    /// REST binary extension: answer this output as binary data (gRPC ignores it).
    pub binary: bool,
}

/// A decoded inference request, whichever transport it came from.
#[derive(Clone, Debug)]
pub struct InferRequest {
    pub id: Option<String>,
    /// Configured model name.
    pub model: String,
    /// Requested version (`None`: the live one).
    pub version: Option<String>,
    pub inputs: Vec<Tensor>,
    pub outputs: Vec<RequestedOutput>,
    /// Request-level `parameters` (unknown ones are ignored, as the spec allows).
    pub parameters: Map<String, Value>,
}

/// The answer: outputs in the order requested (or the model's order).
#[derive(Clone, Debug)]
pub struct InferResponse {
    pub id: Option<String>,
    pub model_name: String,
    pub model_version: String,
    pub outputs: Vec<Tensor>,
}

/// `GET /v2` / ServerMetadata.
pub struct ServerMetadata {
    pub name: String,
    pub version: String,
    pub extensions: Vec<String>,
}

/// One tensor's metadata (`-1` for a dynamic dimension).
pub struct TensorMetadata {
    pub name: String,
    pub datatype: ElementType,
    pub shape: Vec<i64>,
}

/// `GET /v2/models/{name}` / ModelMetadata.
pub struct ModelMetadata {
    pub name: String,
    /// The live version only (hotserve keeps one version resident per model).
    pub versions: Vec<String>,
    /// "onnxruntime_onnx".
    pub platform: String,
    pub inputs: Vec<TensorMetadata>,
    pub outputs: Vec<TensorMetadata>,
}

/// Why an OIP call failed. REST maps it in src/http/error.rs, gRPC in src/grpc/.
#[derive(Debug, thiserror::Error)]
pub enum OipError {
    /// Unknown model, or a version that is not resident (the message says which is live).
    /// 404 / NOT_FOUND
    #[error("{0}")]
    NotFound(String),
    /// Shape, datatype, name or content problems; the message names the tensor.
    /// 400 / INVALID_ARGUMENT
    #[error("{0}")]
    Invalid(String),
    /// The model is not live yet, or the server is draining. 503 / UNAVAILABLE
    #[error("{0}")]
    Unavailable(String),
    /// The queue is full. 429 + Retry-After / RESOURCE_EXHAUSTED
    #[error("{message}")]
    Overloaded {
        message: String,
        retry_after_secs: u64,
    },
    /// The request deadline passed. 504 / DEADLINE_EXCEEDED
    #[error("{0}")]
    Timeout(String),
    /// A bug or an inference failure on valid input. 500 / INTERNAL
    #[error("{0}")]
    Internal(String),
}

impl From<PoolError> for OipError {
    fn from(err: PoolError) -> Self {
        let message = err.to_string();
        match err {
            PoolError::QueueFull { .. } => OipError::Overloaded {
                message,
                retry_after_secs: 1,
            },
            PoolError::DeadlineExceeded => OipError::Timeout(message),
            PoolError::ShuttingDown => OipError::Unavailable(message),
            PoolError::Infer(InferError::BadInput(message)) => OipError::Invalid(message),
            PoolError::Infer(InferError::Runtime(_)) | PoolError::Panicked(_) => {
                OipError::Internal(message)
            }
        }
    }
}

/// The extensions `GET /v2` lists: Triton's binary tensor data (REST).
pub const EXTENSIONS: [&str; 1] = ["binary_tensor_data"];

/// The name of the output holding the probabilities of a text model.
pub const PROBABILITIES: &str = "probabilities";

pub fn server_metadata() -> ServerMetadata {
    ServerMetadata {
        name: "hotserve".to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        extensions: EXTENSIONS.iter().map(|e| e.to_string()).collect(),
    }
}

/// The process answers requests (it does while it runs at all, draining included).
pub fn server_live(_app: &App) -> bool {
    true
}

/// Every configured model is live (discovered models come and go: each has its own
/// readiness) and the server is not draining.
pub fn server_ready(app: &App) -> bool {
    app.models()
        .iter()
        .filter(|served| !served.discovered)
        .all(|served| served.live.is_ready())
}

/// A model's state in the repository index, in the words of KServe's and Triton's model
/// repository extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelState {
    /// Live, and the server is not draining.
    Ready,
    /// No version live yet, and no check has failed: it is being resolved, downloaded or
    /// validated.
    Loading,
    /// Not serving: its checks failed, it was unloaded through the API, or the server is
    /// draining.
    Unavailable,
    /// Being unloaded through the API: its last requests finish.
    Unloading,
}

impl ModelState {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelState::Ready => "READY",
            ModelState::Loading => "LOADING",
            ModelState::Unavailable => "UNAVAILABLE",
            ModelState::Unloading => "UNLOADING",
        }
    }
}

/// One model of the repository index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    pub name: String,
    /// The live version, if any.
    pub version: Option<String>,
    pub state: ModelState,
    /// Why it is not ready (the last error, or what it is doing), when it is not; for a ready
    /// model not in memory, that it loads on its next request.
    pub reason: Option<String>,
}

/// Every model with its live version and state, configured ones first in configuration order,
/// then the discovered ones; only the ready ones when `ready_only`.
pub fn repository_index(app: &App, ready_only: bool) -> Vec<IndexEntry> {
    app.models()
        .iter()
        .map(|served| {
            let live = served.live.current();
            let status = served.live.status();
            let residency = served.live.residency();
            let (state, reason) = if served.live.is_draining() {
                (ModelState::Unavailable, Some("shutting down".to_string()))
            } else if let Residency::Loading = residency {
                (ModelState::Loading, Some("loading into memory".to_string()))
            } else if let Residency::Parked(parked) = &residency {
                let state = if served.reloader.is_unloading() {
                    ModelState::Unloading
                } else if parked.on_demand {
                    ModelState::Ready
                } else {
                    ModelState::Unavailable
                };
                (state, Some(format!("not loaded: {}", parked.why)))
            } else if served.live.is_ready() {
                (ModelState::Ready, None)
            } else if served.live.is_draining() {
                (ModelState::Unavailable, Some("shutting down".to_string()))
            } else if live.is_none() && status.last_error.is_none() {
                (ModelState::Loading, Some(status.message))
            } else {
                let reason = status.last_error.unwrap_or(status.message);
                (ModelState::Unavailable, Some(reason))
            };
            let parked = match residency {
                Residency::Parked(parked) => Some(parked.version),
                _ => None,
            };
            IndexEntry {
                name: served.name.clone(),
                version: live.map(|model| model.info.version.clone()).or(parked),
                state,
                reason,
            }
        })
        .filter(|entry| !ready_only || entry.state == ModelState::Ready)
        .collect()
}

/// Whether `model` (at `version`, when given) is live and the server not draining. An
/// unknown model, or a version other than the live one, is [`OipError::NotFound`].
pub fn model_ready(app: &App, model: &str, version: Option<&str>) -> Result<bool, OipError> {
    let served = find(app, model)?;
    let served = &*served;
    match (served.live.current(), served.live.parked()) {
        (Some(live), _) => {
            check_version(served, &live.info.version, version)?;
            Ok(served.live.is_ready())
        }
        // Known and valid, loaded by its next request.
        (None, Some(parked)) => {
            check_version(served, &parked.version, version)?;
            Ok(served.live.is_ready())
        }
        (None, None) => Ok(false),
    }
}

/// A parked model is loaded first (its metadata is its graph's).
pub async fn model_metadata(
    app: &App,
    model: &str,
    version: Option<&str>,
) -> Result<ModelMetadata, OipError> {
    let served = find(app, model)?;
    let served = &*served;
    let deadline = Instant::now() + app.config.request_timeout;
    let live = live_model(served, deadline).await?;
    check_version(served, &live.info.version, version)?;
    let (inputs, outputs) = match Interface::of(&live) {
        Interface::Text {
            input,
            label,
            labels,
        } => (
            vec![TensorMetadata {
                name: input,
                datatype: ElementType::Bytes,
                shape: vec![-1],
            }],
            vec![
                TensorMetadata {
                    name: label,
                    datatype: ElementType::Bytes,
                    shape: vec![-1],
                },
                TensorMetadata {
                    name: PROBABILITIES.to_string(),
                    datatype: ElementType::Fp32,
                    shape: vec![-1, labels as i64],
                },
            ],
        ),
        Interface::Tensor => (describe(&live.inputs), describe(&live.outputs)),
    };
    Ok(ModelMetadata {
        name: served.name.clone(),
        versions: vec![live.info.version.clone()],
        platform: "onnxruntime_onnx".to_string(),
        inputs,
        outputs,
    })
}

/// Runs through the same queue, batching, deadline and metrics as `/predict` and `/invocations`;
/// `exchange`: the request is sampled for the payload log.
pub async fn infer(
    app: &App,
    request: InferRequest,
    exchange: Option<&Exchange>,
) -> Result<InferResponse, OipError> {
    let deadline = Instant::now() + app.config.request_timeout;
    infer_until(app, request, deadline, exchange).await
}

/// [`infer`] with the deadline given (REST counts the time spent reading the body).
pub async fn infer_until(
    app: &App,
    request: InferRequest,
    deadline: Instant,
    exchange: Option<&Exchange>,
) -> Result<InferResponse, OipError> {
    let served = find(app, &request.model)?;
    let served = &*served;
    let model = live_model(served, deadline).await?;
    check_version(served, &model.info.version, request.version.as_deref())?;
    let outputs = match Interface::of(&model) {
        Interface::Text { input, label, .. } => {
            let texts = texts(&request.inputs, &input)?;
            predict::check_texts(&app.config, &texts)
                .map_err(|err| OipError::Invalid(format!("input '{input}': {err}")))?;
            let rows = texts.len() as i64;
            let scores = predict::classify(app, served, &model, texts, deadline, exchange).await?;
            let labels = &model.text().expect("the interface says text").labels;
            let best: Vec<Vec<u8>> = scores
                .iter()
                .map(|s| labels[argmax(&s.0).0].clone().into_bytes())
                .collect();
            let probabilities: Vec<f32> = scores.iter().flat_map(|s| s.0.clone()).collect();
            vec![
                Tensor {
                    name: label,
                    shape: vec![rows],
                    data: Values::Bytes(best),
                },
                Tensor {
                    name: PROBABILITIES.to_string(),
                    shape: vec![rows, labels.len() as i64],
                    data: Values::Fp32(probabilities),
                },
            ]
        }
        Interface::Tensor => {
            let inputs = graph_inputs(&model, request.inputs)?;
            predict::run_tensors(app, served, &model, inputs, deadline, exchange)
                .await?
                .into_iter()
                .map(from_named)
                .collect()
        }
    };
    Ok(InferResponse {
        id: request.id,
        model_name: served.name.clone(),
        model_version: model.info.version.clone(),
        outputs: select(outputs, &request.outputs)?,
    })
}

/// What a model takes and answers over the protocol.
enum Interface {
    /// A text classifier: one BYTES input, the label and the probabilities out.
    Text {
        /// The input's name: the signature's string input, else `text`.
        input: String,
        /// The label output's name: the signature's string output, else `label`.
        label: String,
        /// How many labels (the width of `probabilities`).
        labels: usize,
    },
    /// The graph's own inputs and outputs.
    Tensor,
}

impl Interface {
    fn of(model: &Model) -> Interface {
        let Some(task) = model.text() else {
            return Interface::Tensor;
        };
        let signature = model.mlmodel.signature.as_ref();
        let string_column = |schema: Option<&Value>, fallback: &str| {
            schema
                .and_then(Value::as_array)
                .and_then(|columns| {
                    columns
                        .iter()
                        .find(|c| c["type"] == "string")
                        .and_then(|c| c["name"].as_str())
                })
                .unwrap_or(fallback)
                .to_string()
        };
        Interface::Text {
            input: string_column(signature.map(|s| &s.inputs), "text"),
            label: string_column(signature.map(|s| &s.outputs), "label"),
            labels: task.labels.len(),
        }
    }
}

/// Loads `model` into memory (the version known valid, without asking the registry), within
/// `memory_budget`, and waits for it up to `patience`. A model unloaded through the API loads
/// on demand again from then on.
pub async fn load(app: &App, model: &str, patience: Duration) -> Result<(), OipError> {
    let served = find(app, model)?;
    let served = &*served;
    if served.live.current().is_some() {
        return Ok(());
    }
    if served.live.parked().is_none() {
        let status = served.live.status();
        return Err(OipError::Unavailable(format!(
            "model '{model}' has no valid version to load yet: {}",
            status.last_error.unwrap_or(status.message)
        )));
    }
    served.live.demand(Demand::Api);
    live_model_for(served, patience, Demand::Api)
        .await
        .map(drop)
}

/// Unloads `model` from memory (kept valid on disk: `.../load` or, for a model that is not
/// pinned, nothing else brings it back), once the requests that hold it have finished.
pub async fn unload(app: &App, model: &str) -> Result<(), OipError> {
    let served = find(app, model)?;
    let served = &*served;
    if served.reloader.plan.pin {
        return Err(OipError::Invalid(format!(
            "model '{model}' is pinned (pin: true) and is never unloaded; remove pin from its configuration to unload it"
        )));
    }
    let why =
        "unloaded through POST /v2/repository/models/{name}/unload; POST .../load loads it again"
            .replace("{name}", model);
    served.reloader.unload(why).await;
    Ok(())
}

fn find(app: &App, model: &str) -> Result<Arc<Served>, OipError> {
    app.model(model).ok_or_else(|| {
        OipError::NotFound(format!(
            "no model is configured as '{model}'; configured models: {}",
            app.model_names().join(", ")
        ))
    })
}

/// The live model (loaded first when it is parked, waiting until `deadline`). While the
/// server drains it still answers, as `/predict` does (readiness has already turned false; the
/// pool refuses work once it is closed).
async fn live_model(served: &Served, deadline: Instant) -> Result<Arc<Model>, OipError> {
    let patience = deadline.saturating_duration_since(Instant::now());
    live_model_for(served, patience, Demand::Request).await
}

async fn live_model_for(
    served: &Served,
    patience: Duration,
    by: Demand,
) -> Result<Arc<Model>, OipError> {
    served.live.acquire(patience, by).await.map_err(|not_live| {
        let status = served.live.status();
        OipError::Unavailable(match not_live {
            NotLive::StillLoading => format!(
                "model '{}' is still loading (a cold start longer than the request's deadline); retry",
                served.name
            ),
            NotLive::Unavailable => format!(
                "model '{}' is not live yet: {}",
                served.name,
                status.last_error.unwrap_or(status.message)
            ),
        })
    })
}

/// A version other than the live one (`live`) is not resident: hotserve keeps one version
/// per model.
fn check_version(served: &Served, live: &str, version: Option<&str>) -> Result<(), OipError> {
    match version {
        Some(wanted) if wanted != live => Err(OipError::NotFound(format!(
            "version '{wanted}' of model '{}' is not resident; the live version is '{live}'",
            served.name
        ))),
        _ => Ok(()),
    }
}

/// Graph tensors as the protocol describes them; those of types hotserve does not serve are
/// left out (they cannot be sent, and `run` does not return them).
fn describe(tensors: &[TensorDesc]) -> Vec<TensorMetadata> {
    tensors
        .iter()
        .filter_map(|t| {
            Some(TensorMetadata {
                name: t.name.clone(),
                datatype: t.dtype.served()?,
                shape: t.shape.clone(),
            })
        })
        .collect()
}

/// The texts of a text model's one BYTES input named `input`, shape `[N]` (or `[N, 1]`).
fn texts(inputs: &[Tensor], input: &str) -> Result<Vec<String>, OipError> {
    let tensor = match inputs {
        [only] if only.name == input => only,
        [only] => {
            return Err(OipError::Invalid(format!(
                "input '{}' is not an input of this model; it takes '{input}' (BYTES [-1])",
                only.name
            )))
        }
        _ => {
            return Err(OipError::Invalid(format!(
                "{} inputs sent; this model takes one: '{input}' (BYTES [-1])",
                inputs.len()
            )))
        }
    };
    let Values::Bytes(elements) = &tensor.data else {
        return Err(OipError::Invalid(format!(
            "input '{input}' is {}; this model takes BYTES (UTF-8 text)",
            tensor.data.element_type().oip_name()
        )));
    };
    let rows_ok = match tensor.shape.as_slice() {
        [n] => *n >= 0,
        [n, 1] => *n >= 0,
        _ => false,
    };
    if !rows_ok || tensor.shape[0] as usize != elements.len() {
        return Err(OipError::Invalid(format!(
            "input '{input}' has shape {:?} with {} elements; send shape [N] with N texts",
            tensor.shape,
            elements.len()
        )));
    }
    elements
        .iter()
        .enumerate()
        .map(|(index, bytes)| {
            String::from_utf8(bytes.clone()).map_err(|_| {
                OipError::Invalid(format!("input '{input}': element {index} is not UTF-8"))
            })
        })
        .collect()
}

/// The graph's inputs from the request's tensors, checked against the graph: every input
/// present once, with the graph's datatype and a shape that fits the graph's.
fn graph_inputs(model: &Model, inputs: Vec<Tensor>) -> Result<Vec<NamedTensor>, OipError> {
    let expected = |desc: &TensorDesc| {
        let datatype = match desc.dtype.served() {
            Some(element) => element.oip_name(),
            None => desc.dtype.name(),
        };
        format!("'{}' ({datatype} {:?})", desc.name, desc.shape)
    };
    let mut named = Vec::with_capacity(inputs.len());
    for tensor in &inputs {
        let Some(desc) = model.inputs.iter().find(|d| d.name == tensor.name) else {
            let takes: Vec<String> = model.inputs.iter().map(expected).collect();
            return Err(OipError::Invalid(format!(
                "input '{}' is not an input of this model; it takes {}",
                tensor.name,
                takes.join(", ")
            )));
        };
        if inputs.iter().filter(|t| t.name == tensor.name).count() > 1 {
            return Err(OipError::Invalid(format!(
                "input '{}' is sent more than once",
                tensor.name
            )));
        }
        let got = tensor.data.element_type();
        if desc.dtype.served() != Some(got) {
            return Err(OipError::Invalid(format!(
                "input '{}' is {}; the model takes {}",
                tensor.name,
                got.oip_name(),
                expected(desc)
            )));
        }
        let fits = tensor.shape.len() == desc.shape.len()
            && tensor
                .shape
                .iter()
                .zip(&desc.shape)
                .all(|(&got, &want)| got >= 0 && (want < 0 || got == want));
        if !fits {
            return Err(OipError::Invalid(format!(
                "input '{}' has shape {:?}; the model takes {} (-1 = any)",
                tensor.name,
                tensor.shape,
                expected(desc)
            )));
        }
    }
    if let Some(missing) = model
        .inputs
        .iter()
        .find(|d| !inputs.iter().any(|t| t.name == d.name))
    {
        return Err(OipError::Invalid(format!(
            "input {} is missing",
            expected(missing)
        )));
    }
    for tensor in inputs {
        named.push(to_named(tensor)?);
    }
    Ok(named)
}

/// A protocol tensor as the model layer's; BYTES has no graph type hotserve serves.
fn to_named(tensor: Tensor) -> Result<NamedTensor, OipError> {
    if let Values::Bytes(_) = tensor.data {
        return Err(OipError::Invalid(format!(
            "input '{}' is BYTES; tensor models take numbers",
            tensor.name
        )));
    }
    Ok(NamedTensor {
        name: tensor.name,
        shape: tensor.shape.into_iter().map(|d| d as usize).collect(),
        data: tensor.data,
    })
}

/// A model-layer tensor as the protocol's.
fn from_named(tensor: NamedTensor) -> Tensor {
    Tensor {
        name: tensor.name,
        shape: tensor.shape.into_iter().map(|d| d as i64).collect(),
        data: tensor.data,
    }
}

/// The outputs the client asked for, in its order; every output when it named none.
fn select(outputs: Vec<Tensor>, wanted: &[RequestedOutput]) -> Result<Vec<Tensor>, OipError> {
    if wanted.is_empty() {
        return Ok(outputs);
    }
    let mut outputs: Vec<Option<Tensor>> = outputs.into_iter().map(Some).collect();
    wanted
        .iter()
        .map(|want| {
            let slot = outputs
                .iter_mut()
                .find(|slot| slot.as_ref().is_some_and(|t| t.name == want.name));
            match slot {
                Some(slot) => Ok(slot.take().expect("found a filled slot")),
                None => {
                    let names: Vec<&str> = outputs
                        .iter()
                        .flatten()
                        .map(|t| t.name.as_str())
                        .collect();
                    Err(OipError::Invalid(format!(
                        "output '{}' is not an output of this model (or is requested twice); it has {}",
                        want.name,
                        if names.is_empty() { "no others".to_string() } else { format!("{names:?}") }
                    )))
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(name: &str) -> Tensor {
        Tensor {
            name: name.into(),
            shape: vec![1],
            data: Values::Int32(vec![1]),
        }
    }

    #[test]
    fn outputs_are_selected_in_the_requested_order() {
        let want = |names: &[&str]| -> Vec<RequestedOutput> {
            names
                .iter()
                .map(|n| RequestedOutput {
                    name: n.to_string(),
                    binary: false,
                })
                .collect()
        };
        let names = |result: Result<Vec<Tensor>, OipError>| -> Result<Vec<String>, String> {
            result
                .map(|ts| ts.into_iter().map(|t| t.name).collect())
                .map_err(|e| e.to_string())
        };
        let all = || vec![tensor("a"), tensor("b"), tensor("c")];
        assert_eq!(
            names(select(all(), &want(&[]))),
            Ok(vec!["a".into(), "b".into(), "c".into()])
        );
        assert_eq!(
            names(select(all(), &want(&["c", "a"]))),
            Ok(vec!["c".into(), "a".into()])
        );
        assert_eq!(
            names(select(all(), &want(&["z"]))),
            Err("output 'z' is not an output of this model (or is requested twice); it has [\"a\", \"b\", \"c\"]".into())
        );
        assert!(names(select(all(), &want(&["a", "a"]))).is_err());
    }
}
