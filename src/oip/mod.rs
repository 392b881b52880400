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
use std::time::Instant;

use serde_json::{Map, Value};

use crate::model::tensor::{NamedTensor, TensorData};
use crate::model::{argmax, InferError, Model, TensorDesc};
use crate::predict;
use crate::queue::PoolError;
use crate::state::{App, Served};

/// A tensor element type as the protocol names it ("FP32", "BYTES", ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Datatype {
    Bool,
    Uint8,
    Int8,
    Int32,
    Int64,
    Fp16,
    Fp32,
    Fp64,
    Bytes,
}

impl Datatype {
    /// Every datatype, for messages and tests.
    pub const ALL: [Datatype; 9] = [
        Datatype::Bool,
        Datatype::Uint8,
        Datatype::Int8,
        Datatype::Int32,
        Datatype::Int64,
        Datatype::Fp16,
        Datatype::Fp32,
        Datatype::Fp64,
        Datatype::Bytes,
    ];

    /// The protocol's name: "BOOL", "UINT8", ..., "BYTES".
    pub fn as_str(self) -> &'static str {
        match self {
            Datatype::Bool => "BOOL",
            Datatype::Uint8 => "UINT8",
            Datatype::Int8 => "INT8",
            Datatype::Int32 => "INT32",
            Datatype::Int64 => "INT64",
            Datatype::Fp16 => "FP16",
            Datatype::Fp32 => "FP32",
            Datatype::Fp64 => "FP64",
            Datatype::Bytes => "BYTES",
        }
    }

    /// The datatype of an exact upper-case protocol name.
    pub fn parse(s: &str) -> Option<Datatype> {
        Datatype::ALL.into_iter().find(|d| d.as_str() == s)
    }

    /// Bytes per element; `None` for BYTES (variable length).
    pub fn size(self) -> Option<usize> {
        match self {
            Datatype::Bool | Datatype::Uint8 | Datatype::Int8 => Some(1),
            Datatype::Fp16 => Some(2),
            Datatype::Int32 | Datatype::Fp32 => Some(4),
            Datatype::Int64 | Datatype::Fp64 => Some(8),
            Datatype::Bytes => None,
        }
    }

    /// The datatype of a graph element type as `/v1/model` spells it (numpy-style:
    /// `float32`, ...); `None` for one hotserve does not serve.
    pub fn of_graph(dtype: &str) -> Option<Datatype> {
        Some(match dtype {
            "bool" => Datatype::Bool,
            "uint8" => Datatype::Uint8,
            "int8" => Datatype::Int8,
            "int32" => Datatype::Int32,
            "int64" => Datatype::Int64,
            "float16" => Datatype::Fp16,
            "float32" => Datatype::Fp32,
            "float64" => Datatype::Fp64,
            _ => return None,
        })
    }
}

/// Row-major tensor contents.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    Bool(Vec<bool>),
    Uint8(Vec<u8>),
    Int8(Vec<i8>),
    Int32(Vec<i32>),
    Int64(Vec<i64>),
    /// IEEE 754 half-precision values as their raw bits.
    Fp16(Vec<u16>),
    Fp32(Vec<f32>),
    Fp64(Vec<f64>),
    /// One byte string per element (UTF-8 text for text models).
    Bytes(Vec<Vec<u8>>),
}

impl Data {
    pub fn datatype(&self) -> Datatype {
        match self {
            Data::Bool(_) => Datatype::Bool,
            Data::Uint8(_) => Datatype::Uint8,
            Data::Int8(_) => Datatype::Int8,
            Data::Int32(_) => Datatype::Int32,
            Data::Int64(_) => Datatype::Int64,
            Data::Fp16(_) => Datatype::Fp16,
            Data::Fp32(_) => Datatype::Fp32,
            Data::Fp64(_) => Datatype::Fp64,
            Data::Bytes(_) => Datatype::Bytes,
        }
    }

    /// How many elements.
    pub fn len(&self) -> usize {
        match self {
            Data::Bool(v) => v.len(),
            Data::Uint8(v) => v.len(),
            Data::Int8(v) => v.len(),
            Data::Int32(v) => v.len(),
            Data::Int64(v) => v.len(),
            Data::Fp16(v) => v.len(),
            Data::Fp32(v) => v.len(),
            Data::Fp64(v) => v.len(),
            Data::Bytes(v) => v.len(),
        }
    }

    /// No elements at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Little-endian raw bytes as Triton's binary extension and gRPC `raw_*_contents` carry
    /// them (BYTES: each element prefixed by its u32 little-endian length).
    pub fn to_raw(&self) -> Vec<u8> {
        fn flat<const N: usize, T: Copy>(v: &[T], le: impl Fn(T) -> [u8; N]) -> Vec<u8> {
            v.iter().flat_map(|&x| le(x)).collect()
        }
        match self {
            Data::Bool(v) => v.iter().map(|&b| u8::from(b)).collect(),
            Data::Uint8(v) => v.clone(),
            Data::Int8(v) => flat(v, i8::to_le_bytes),
            Data::Int32(v) => flat(v, i32::to_le_bytes),
            Data::Int64(v) => flat(v, i64::to_le_bytes),
            Data::Fp16(v) => flat(v, u16::to_le_bytes),
            Data::Fp32(v) => flat(v, f32::to_le_bytes),
            Data::Fp64(v) => flat(v, f64::to_le_bytes),
            Data::Bytes(v) => {
                let mut out = Vec::with_capacity(v.iter().map(|e| e.len() + 4).sum());
                for element in v {
                    out.extend_from_slice(&(element.len() as u32).to_le_bytes());
                    out.extend_from_slice(element);
                }
                out
            }
        }
    }

    /// The inverse of [`Data::to_raw`]; an error names what is wrong (length not a multiple
    /// of the element size, truncated BYTES, a BOOL byte that is neither 0 nor 1).
    pub fn from_raw(datatype: Datatype, raw: &[u8]) -> Result<Data, String> {
        fn chunks<const N: usize, T>(raw: &[u8], from: impl Fn([u8; N]) -> T) -> Vec<T> {
            raw.chunks_exact(N)
                .map(|c| from(c.try_into().expect("chunks_exact yields N bytes")))
                .collect()
        }
        if let Some(size) = datatype.size() {
            if !raw.len().is_multiple_of(size) {
                return Err(format!(
                    "{} bytes of {} data is not a whole number of {size}-byte elements",
                    raw.len(),
                    datatype.as_str()
                ));
            }
        }
        Ok(match datatype {
            Datatype::Bool => Data::Bool(
                raw.iter()
                    .map(|&b| match b {
                        0 => Ok(false),
                        1 => Ok(true),
                        other => Err(format!("a BOOL element is byte {other}; use 0 or 1")),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Datatype::Uint8 => Data::Uint8(raw.to_vec()),
            Datatype::Int8 => Data::Int8(chunks(raw, i8::from_le_bytes)),
            Datatype::Int32 => Data::Int32(chunks(raw, i32::from_le_bytes)),
            Datatype::Int64 => Data::Int64(chunks(raw, i64::from_le_bytes)),
            Datatype::Fp16 => Data::Fp16(chunks(raw, u16::from_le_bytes)),
            Datatype::Fp32 => Data::Fp32(chunks(raw, f32::from_le_bytes)),
            Datatype::Fp64 => Data::Fp64(chunks(raw, f64::from_le_bytes)),
            Datatype::Bytes => {
                let mut elements = Vec::new();
                let mut rest = raw;
                while !rest.is_empty() {
                    let Some((length, tail)) = rest.split_first_chunk::<4>() else {
                        return Err(format!(
                            "BYTES element {} is truncated: {} bytes left, its length takes 4",
                            elements.len(),
                            rest.len()
                        ));
                    };
                    let length = u32::from_le_bytes(*length) as usize;
                    if tail.len() < length {
                        return Err(format!(
                            "BYTES element {} says {length} bytes but {} are left",
                            elements.len(),
                            tail.len()
                        ));
                    }
                    let (element, tail) = tail.split_at(length);
                    elements.push(element.to_vec());
                    rest = tail;
                }
                Data::Bytes(elements)
            }
        })
    }
}

/// One input or output tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<i64>,
    pub data: Data,
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
    pub datatype: Datatype,
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

/// Every configured model is live and the server is not draining.
pub fn server_ready(app: &App) -> bool {
    app.models.iter().all(|served| served.live.is_ready())
}

/// Whether `model` (at `version`, when given) is live and the server not draining. An
/// unknown model, or a version other than the live one, is [`OipError::NotFound`].
pub fn model_ready(app: &App, model: &str, version: Option<&str>) -> Result<bool, OipError> {
    let served = find(app, model)?;
    match served.live.current() {
        Some(live) => {
            check_version(served, &live, version)?;
            Ok(served.live.is_ready())
        }
        None => Ok(false),
    }
}

pub fn model_metadata(
    app: &App,
    model: &str,
    version: Option<&str>,
) -> Result<ModelMetadata, OipError> {
    let served = find(app, model)?;
    let live = live_model(served)?;
    check_version(served, &live, version)?;
    let (inputs, outputs) = match Interface::of(&live) {
        Interface::Text {
            input,
            label,
            labels,
        } => (
            vec![TensorMetadata {
                name: input,
                datatype: Datatype::Bytes,
                shape: vec![-1],
            }],
            vec![
                TensorMetadata {
                    name: label,
                    datatype: Datatype::Bytes,
                    shape: vec![-1],
                },
                TensorMetadata {
                    name: PROBABILITIES.to_string(),
                    datatype: Datatype::Fp32,
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

/// Runs through the same queue, batching, deadline and metrics as `/predict` and `/invocations`.
pub async fn infer(app: &App, request: InferRequest) -> Result<InferResponse, OipError> {
    let deadline = Instant::now() + app.config.request_timeout;
    infer_until(app, request, deadline).await
}

/// [`infer`] with the deadline given (REST counts the time spent reading the body).
pub async fn infer_until(
    app: &App,
    request: InferRequest,
    deadline: Instant,
) -> Result<InferResponse, OipError> {
    let served = find(app, &request.model)?;
    let model = live_model(served)?;
    check_version(served, &model, request.version.as_deref())?;
    let outputs = match Interface::of(&model) {
        Interface::Text { input, label, .. } => {
            let texts = texts(&request.inputs, &input)?;
            predict::check_texts(&app.config, &texts)
                .map_err(|err| OipError::Invalid(format!("input '{input}': {err}")))?;
            let rows = texts.len() as i64;
            let scores = predict::classify(app, served, &model, texts, deadline).await?;
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
                    data: Data::Bytes(best),
                },
                Tensor {
                    name: PROBABILITIES.to_string(),
                    shape: vec![rows, labels.len() as i64],
                    data: Data::Fp32(probabilities),
                },
            ]
        }
        Interface::Tensor => {
            let inputs = graph_inputs(&model, request.inputs)?;
            predict::run_tensors(app, served, &model, inputs, deadline)
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

fn find<'a>(app: &'a App, model: &str) -> Result<&'a Served, OipError> {
    app.model(model).ok_or_else(|| {
        OipError::NotFound(format!(
            "no model is configured as '{model}'; configured models: {}",
            app.model_names().join(", ")
        ))
    })
}

/// The live model. While the server drains it still answers, as `/predict` does (readiness
/// has already turned false; the pool refuses work once it is closed).
fn live_model(served: &Served) -> Result<Arc<Model>, OipError> {
    served.live.current().ok_or_else(|| {
        let status = served.live.status();
        OipError::Unavailable(format!(
            "model '{}' is not live yet: {}",
            served.name,
            status.last_error.unwrap_or(status.message)
        ))
    })
}

/// A version other than the live one is not resident: hotserve keeps one version per model.
fn check_version(served: &Served, live: &Model, version: Option<&str>) -> Result<(), OipError> {
    match version {
        Some(wanted) if wanted != live.info.version => Err(OipError::NotFound(format!(
            "version '{wanted}' of model '{}' is not resident; the live version is '{}'",
            served.name, live.info.version
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
                datatype: Datatype::of_graph(&t.dtype)?,
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
    let Data::Bytes(elements) = &tensor.data else {
        return Err(OipError::Invalid(format!(
            "input '{input}' is {}; this model takes BYTES (UTF-8 text)",
            tensor.data.datatype().as_str()
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
        let datatype = Datatype::of_graph(&desc.dtype).map_or(desc.dtype.as_str(), |d| d.as_str());
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
        let got = tensor.data.datatype();
        if Datatype::of_graph(&desc.dtype) != Some(got) {
            return Err(OipError::Invalid(format!(
                "input '{}' is {}; the model takes {}",
                tensor.name,
                got.as_str(),
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
    let data = match tensor.data {
        Data::Bool(v) => TensorData::Bool(v),
        Data::Uint8(v) => TensorData::U8(v),
        Data::Int8(v) => TensorData::I8(v),
        Data::Int32(v) => TensorData::I32(v),
        Data::Int64(v) => TensorData::I64(v),
        Data::Fp16(v) => TensorData::F16(v),
        Data::Fp32(v) => TensorData::F32(v),
        Data::Fp64(v) => TensorData::F64(v),
        Data::Bytes(_) => {
            return Err(OipError::Invalid(format!(
                "input '{}' is BYTES; tensor models take numbers",
                tensor.name
            )))
        }
    };
    Ok(NamedTensor {
        name: tensor.name,
        shape: tensor.shape.into_iter().map(|d| d as usize).collect(),
        data,
    })
}

/// A model-layer tensor as the protocol's.
fn from_named(tensor: NamedTensor) -> Tensor {
    let data = match tensor.data {
        TensorData::Bool(v) => Data::Bool(v),
        TensorData::U8(v) => Data::Uint8(v),
        TensorData::I8(v) => Data::Int8(v),
        TensorData::I32(v) => Data::Int32(v),
        TensorData::I64(v) => Data::Int64(v),
        TensorData::F16(v) => Data::Fp16(v),
        TensorData::F32(v) => Data::Fp32(v),
        TensorData::F64(v) => Data::Fp64(v),
    };
    Tensor {
        name: tensor.name,
        shape: tensor.shape.into_iter().map(|d| d as i64).collect(),
        data,
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

    #[test]
    fn datatype_names_round_trip() {
        for datatype in Datatype::ALL {
            assert_eq!(Datatype::parse(datatype.as_str()), Some(datatype));
        }
        assert_eq!(Datatype::parse("fp32"), None);
        assert_eq!(Datatype::parse("FLOAT32"), None);
    }

    #[test]
    #[rustfmt::skip]
    fn raw_round_trips() {
        let check = |data: Data, raw: &[u8]| {
            assert_eq!(data.to_raw(), raw, "{data:?}");
            assert_eq!(Data::from_raw(data.datatype(), raw), Ok(data.clone()), "{data:?}");
        };
        check(Data::Bool(vec![true, false]), &[1, 0]);
        check(Data::Uint8(vec![7, 255]), &[7, 255]);
        check(Data::Int8(vec![-1, 2]), &[255, 2]);
        check(Data::Int32(vec![1, -2]), &[1, 0, 0, 0, 254, 255, 255, 255]);
        check(Data::Int64(vec![258]), &[2, 1, 0, 0, 0, 0, 0, 0]);
        check(Data::Fp16(vec![0x3c00]), &[0x00, 0x3c]);
        check(Data::Fp32(vec![1.0]), &[0, 0, 0x80, 0x3f]);
        check(Data::Fp64(vec![-2.0]), &[0, 0, 0, 0, 0, 0, 0, 0xc0]);
        check(Data::Bytes(vec![b"ab".to_vec(), vec![]]), &[2, 0, 0, 0, b'a', b'b', 0, 0, 0, 0]);
        check(Data::Bytes(vec![]), &[]);
    }

    #[test]
    #[rustfmt::skip]
    fn bad_raw_data_is_named() {
        let check = |datatype: Datatype, raw: &[u8], expected: &str| {
            assert_eq!(Data::from_raw(datatype, raw), Err(expected.to_string()), "{datatype:?}");
        };
        check(Datatype::Fp32, &[0, 0, 0], "3 bytes of FP32 data is not a whole number of 4-byte elements");
        check(Datatype::Bool, &[2], "a BOOL element is byte 2; use 0 or 1");
        check(Datatype::Bytes, &[1, 0], "BYTES element 0 is truncated: 2 bytes left, its length takes 4");
        check(Datatype::Bytes, &[3, 0, 0, 0, b'a'], "BYTES element 0 says 3 bytes but 1 are left");
    }

    fn tensor(name: &str) -> Tensor {
        Tensor {
            name: name.into(),
            shape: vec![1],
            data: Data::Int32(vec![1]),
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
