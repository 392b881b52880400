//! STUB of the Open Inference Protocol core (`crate::oip`), kept in the gRPC branch only so that
//! `src/grpc/` compiles and its tests run: the real module (branch wt-oip) replaces this file
//! at merge. Public items are exactly the shared interface (`OIP_CORE.md`); the bodies are
//! minimal: text models take one `BYTES [N]` input and answer `label` and `probabilities`
//! through `Pool::classify`, tensor models take FP32/FP64/INT64/INT32 graph inputs through
//! `Pool::run_tensors`.

use std::sync::Arc;
use std::time::Instant;

use serde_json::{Map, Value};

use crate::http::{App, Served};
use crate::model::tensor::{NamedTensor, TensorData};
use crate::model::{InferError, Model};
use crate::queue::PoolError;

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
    const ALL: [(Datatype, &'static str, Option<usize>); 9] = [
        (Datatype::Bool, "BOOL", Some(1)),
        (Datatype::Uint8, "UINT8", Some(1)),
        (Datatype::Int8, "INT8", Some(1)),
        (Datatype::Int32, "INT32", Some(4)),
        (Datatype::Int64, "INT64", Some(8)),
        (Datatype::Fp16, "FP16", Some(2)),
        (Datatype::Fp32, "FP32", Some(4)),
        (Datatype::Fp64, "FP64", Some(8)),
        (Datatype::Bytes, "BYTES", None),
    ];

    pub fn as_str(self) -> &'static str {
        Self::ALL.iter().find(|(d, _, _)| *d == self).unwrap().1
    }

    pub fn parse(s: &str) -> Option<Datatype> {
        Self::ALL.iter().find(|(_, n, _)| *n == s).map(|e| e.0)
    }

    pub fn size(self) -> Option<usize> {
        Self::ALL.iter().find(|(d, _, _)| *d == self).unwrap().2
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

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Little-endian raw bytes (BYTES: each element prefixed by its u32 little-endian length).
    pub fn to_raw(&self) -> Vec<u8> {
        match self {
            Data::Bool(v) => v.iter().map(|&b| u8::from(b)).collect(),
            Data::Uint8(v) => v.clone(),
            Data::Int8(v) => v.iter().map(|&x| x as u8).collect(),
            Data::Int32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::Int64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::Fp16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::Fp32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::Fp64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::Bytes(v) => v
                .iter()
                .flat_map(|b| (b.len() as u32).to_le_bytes().into_iter().chain(b.clone()))
                .collect(),
        }
    }

    /// The inverse of [`Data::to_raw`].
    pub fn from_raw(datatype: Datatype, raw: &[u8]) -> Result<Data, String> {
        let Some(size) = datatype.size() else {
            let mut items = Vec::new();
            let mut rest = raw;
            while !rest.is_empty() {
                let (length, tail) = rest
                    .split_first_chunk::<4>()
                    .ok_or("BYTES data is truncated in an element's length prefix")?;
                let length = u32::from_le_bytes(*length) as usize;
                if tail.len() < length {
                    return Err("BYTES data is truncated in an element".into());
                }
                items.push(tail[..length].to_vec());
                rest = &tail[length..];
            }
            return Ok(Data::Bytes(items));
        };
        if !raw.len().is_multiple_of(size) {
            return Err(format!(
                "{} bytes is not a multiple of {size} ({})",
                raw.len(),
                datatype.as_str()
            ));
        }
        let chunks = raw.chunks_exact(size);
        Ok(match datatype {
            Datatype::Bool => Data::Bool(raw.iter().map(|&b| b != 0).collect()),
            Datatype::Uint8 => Data::Uint8(raw.to_vec()),
            Datatype::Int8 => Data::Int8(raw.iter().map(|&b| b as i8).collect()),
            Datatype::Int32 => Data::Int32(
                chunks
                    .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
            ),
            Datatype::Int64 => Data::Int64(
                chunks
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
            ),
            Datatype::Fp16 => Data::Fp16(
                chunks
                    .map(|c| u16::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
            ),
            Datatype::Fp32 => Data::Fp32(
                chunks
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
            ),
            Datatype::Fp64 => Data::Fp64(
                chunks
                    .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
            ),
            Datatype::Bytes => unreachable!("BYTES has no element size"),
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
    /// Unknown model, or a version that is not resident. 404 / NOT_FOUND
    #[error("{0}")]
    NotFound(String),
    /// Shape, datatype, name or content problems; the message names the tensor. 400 / INVALID_ARGUMENT
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

pub fn server_metadata() -> ServerMetadata {
    ServerMetadata {
        name: "hotserve".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        extensions: Vec::new(),
    }
}

pub fn server_live(_app: &App) -> bool {
    true
}

/// Every configured model is live and the server is not draining.
pub fn server_ready(app: &App) -> bool {
    app.models.iter().all(|m| m.live.is_ready())
}

pub fn model_ready(app: &App, model: &str, version: Option<&str>) -> Result<bool, OipError> {
    let served = served(app, model)?;
    Ok(match served.live.current() {
        Some(live) => served.live.is_ready() && version.is_none_or(|v| v == live.info.version),
        None => false,
    })
}

pub fn model_metadata(
    app: &App,
    model: &str,
    version: Option<&str>,
) -> Result<ModelMetadata, OipError> {
    let (_, live) = live(app, model, version)?;
    let describe = |descs: &[crate::model::TensorDesc]| {
        descs
            .iter()
            .map(|d| TensorMetadata {
                name: d.name.clone(),
                datatype: datatype_of(&d.dtype).unwrap_or(Datatype::Fp32),
                shape: d.shape.clone(),
            })
            .collect()
    };
    let (inputs, outputs) = match live.text() {
        Some(task) => (
            vec![TensorMetadata {
                name: "text".into(),
                datatype: Datatype::Bytes,
                shape: vec![-1],
            }],
            vec![
                TensorMetadata {
                    name: "label".into(),
                    datatype: Datatype::Bytes,
                    shape: vec![-1],
                },
                TensorMetadata {
                    name: "probabilities".into(),
                    datatype: Datatype::Fp32,
                    shape: vec![-1, task.labels.len() as i64],
                },
            ],
        ),
        None => (describe(&live.inputs), describe(&live.outputs)),
    };
    Ok(ModelMetadata {
        name: model.to_string(),
        versions: vec![live.info.version.clone()],
        platform: "onnxruntime_onnx".into(),
        inputs,
        outputs,
    })
}

/// Runs through the same queue, batching, deadline and metrics as `/predict` and `/invocations`.
pub async fn infer(app: &App, request: InferRequest) -> Result<InferResponse, OipError> {
    let deadline = Instant::now() + app.config.request_timeout;
    let (served, model) = live(app, &request.model, request.version.as_deref())?;
    let work = async {
        match model.text() {
            Some(task) => {
                let texts = texts(&request.inputs)?;
                let encoding = model.clone();
                let encoded = tokio::task::spawn_blocking(move || {
                    texts
                        .iter()
                        .map(|t| encoding.encode(t))
                        .collect::<Result<Vec<_>, _>>()
                })
                .await
                .map_err(|err| OipError::Internal(format!("tokenization failed: {err}")))?
                .map_err(pool_error_of_infer)?;
                let n = encoded.len() as i64;
                let scores = app
                    .pool
                    .classify(&model, &served.metrics, encoded, deadline)
                    .await
                    .map_err(pool_error)?;
                let labels = scores
                    .iter()
                    .map(|s| {
                        task.labels[crate::model::argmax(&s.0).0]
                            .clone()
                            .into_bytes()
                    })
                    .collect();
                let probabilities = scores.iter().flat_map(|s| s.0.clone()).collect();
                Ok(vec![
                    Tensor {
                        name: "label".into(),
                        shape: vec![n],
                        data: Data::Bytes(labels),
                    },
                    Tensor {
                        name: "probabilities".into(),
                        shape: vec![n, task.labels.len() as i64],
                        data: Data::Fp32(probabilities),
                    },
                ])
            }
            None => {
                let inputs = tensors(&model, &request.inputs)?;
                let outputs = app
                    .pool
                    .run_tensors(&model, &served.metrics, inputs, deadline)
                    .await
                    .map_err(pool_error)?;
                Ok(outputs.into_iter().map(from_named).collect())
            }
        }
    };
    let outputs: Vec<Tensor> = tokio::time::timeout_at(deadline.into(), work)
        .await
        .map_err(|_| OipError::Timeout("the request took longer than request_timeout".into()))??;
    let outputs = if request.outputs.is_empty() {
        outputs
    } else {
        request
            .outputs
            .iter()
            .map(|wanted| {
                outputs
                    .iter()
                    .find(|t| t.name == wanted.name)
                    .cloned()
                    .ok_or_else(|| OipError::Invalid(format!("unknown output '{}'", wanted.name)))
            })
            .collect::<Result<_, _>>()?
    };
    Ok(InferResponse {
        id: request.id,
        model_name: request.model,
        model_version: model.info.version.clone(),
        outputs,
    })
}

fn served<'a>(app: &'a App, model: &str) -> Result<&'a Served, OipError> {
    app.model(model).ok_or_else(|| {
        OipError::NotFound(format!(
            "no model is configured as '{model}'; configured models: {}",
            app.model_names().join(", ")
        ))
    })
}

fn live<'a>(
    app: &'a App,
    model: &str,
    version: Option<&str>,
) -> Result<(&'a Served, Arc<Model>), OipError> {
    let served = served(app, model)?;
    let live = served
        .live
        .current()
        .ok_or_else(|| OipError::Unavailable(format!("model '{model}' is not live yet")))?;
    if let Some(version) = version.filter(|v| *v != live.info.version) {
        return Err(OipError::NotFound(format!(
            "version {version} of model '{model}' is not loaded; the live version is {}",
            live.info.version
        )));
    }
    Ok((served, live))
}

fn texts(inputs: &[Tensor]) -> Result<Vec<String>, OipError> {
    let [input] = inputs else {
        return Err(OipError::Invalid(
            "a text model takes one BYTES input".into(),
        ));
    };
    let Data::Bytes(items) = &input.data else {
        return Err(OipError::Invalid(format!(
            "input '{}' must be BYTES",
            input.name
        )));
    };
    items
        .iter()
        .map(|b| {
            String::from_utf8(b.clone())
                .map_err(|_| OipError::Invalid(format!("input '{}' is not UTF-8", input.name)))
        })
        .collect()
}

fn tensors(model: &Model, inputs: &[Tensor]) -> Result<Vec<NamedTensor>, OipError> {
    model
        .inputs
        .iter()
        .map(|desc| {
            let input = inputs
                .iter()
                .find(|t| t.name == desc.name)
                .ok_or_else(|| OipError::Invalid(format!("missing input '{}'", desc.name)))?;
            let data = match (&input.data, desc.dtype.as_str()) {
                (Data::Fp32(v), "float32") => TensorData::F32(v.clone()),
                (Data::Fp64(v), "float64") => TensorData::F64(v.clone()),
                (Data::Int64(v), "int64") => TensorData::I64(v.clone()),
                (Data::Int32(v), "int32") => TensorData::I32(v.clone()),
                (data, dtype) => {
                    return Err(OipError::Invalid(format!(
                        "input '{}' is {}; the model expects {dtype}",
                        input.name,
                        data.datatype().as_str()
                    )))
                }
            };
            Ok(NamedTensor {
                name: input.name.clone(),
                shape: input.shape.iter().map(|&d| d.max(0) as usize).collect(),
                data,
            })
        })
        .collect()
}

fn from_named(tensor: NamedTensor) -> Tensor {
    let data = match tensor.data {
        TensorData::F32(v) => Data::Fp32(v),
        TensorData::F64(v) => Data::Fp64(v),
        TensorData::I64(v) => Data::Int64(v),
        TensorData::I32(v) => Data::Int32(v),
    };
    Tensor {
        name: tensor.name,
        shape: tensor.shape.iter().map(|&d| d as i64).collect(),
        data,
    }
}

fn datatype_of(dtype: &str) -> Option<Datatype> {
    Some(match dtype {
        "float32" => Datatype::Fp32,
        "float64" => Datatype::Fp64,
        "int64" => Datatype::Int64,
        "int32" => Datatype::Int32,
        _ => return None,
    })
}

fn pool_error_of_infer(err: InferError) -> OipError {
    pool_error(PoolError::Infer(err))
}

fn pool_error(err: PoolError) -> OipError {
    match err {
        PoolError::QueueFull { .. } => OipError::Overloaded {
            message: err.to_string(),
            retry_after_secs: 1,
        },
        PoolError::DeadlineExceeded => OipError::Timeout(err.to_string()),
        PoolError::ShuttingDown => OipError::Unavailable(err.to_string()),
        PoolError::Infer(InferError::BadInput(message)) => OipError::Invalid(message),
        PoolError::Infer(err) => OipError::Internal(err.to_string()),
        PoolError::Panicked(message) => OipError::Internal(format!("inference failed: {message}")),
    }
}
