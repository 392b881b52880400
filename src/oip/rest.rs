//! The REST form of the protocol, in one place: the bodies of server and model metadata and of
//! the health answers ([`ServerMetadataBody`], [`ModelMetadataBody`], [`Probe`]), and an
//! inference request and response (KServe v2 JSON, plus Triton's binary tensor data
//! extension), decoded and encoded purely: bytes in, [`InferRequest`] out, and
//! [`InferResponse`] in, bytes out. Every rejection is an [`OipError::Invalid`] that names the
//! tensor; nothing here panics on any input (`tests/it/properties.rs`).
//!
//! Binary data: with an `Inference-Header-Content-Length: N` header, the first N bytes of the
//! body are the JSON header and the rest are the raw contents of the inputs whose
//! `parameters.binary_data_size` says how many bytes are theirs, in input order. An output is
//! answered as binary when its `parameters.binary_data` is true, or when the request's
//! `parameters.binary_data_output` is (and it does not say otherwise); the response then puts
//! its JSON first, says its length in the same header and appends the raw outputs.

use serde::Serialize;
use serde_json::{Map, Value};

use super::{
    ElementType, InferRequest, InferResponse, ModelMetadata, OipError, RequestedOutput,
    ServerMetadata, Tensor, TensorMetadata, Values,
};

/// The header that says how long the JSON part of a body with binary data is.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// How deep `data` may nest (a tensor of rank 32 is more than any model takes).
const MAX_DEPTH: usize = 32;

/// An encoded response body.
#[derive(Debug, PartialEq)]
pub struct Body {
    pub bytes: Vec<u8>,
    /// The length of the JSON part when binary outputs follow it (`None`: all JSON).
    pub header_length: Option<usize>,
}

/// Decodes a `POST .../infer` body for `model` (at `version`); `header_length` is the
/// `Inference-Header-Content-Length` header, when sent.
pub fn decode(
    body: &[u8],
    header_length: Option<usize>,
    model: &str,
    version: Option<&str>,
) -> Result<InferRequest, OipError> {
    let (header, mut binary) = match header_length {
        Some(length) if length > body.len() => {
            return Err(invalid(format!(
                "Inference-Header-Content-Length is {length} but the body has {} bytes",
                body.len()
            )))
        }
        Some(length) => body.split_at(length),
        None => (body, &[][..]),
    };
    let request: Value = serde_json::from_slice(header)
        .map_err(|err| invalid(format!("the request is not valid JSON: {err}")))?;
    let Value::Object(mut request) = request else {
        return Err(invalid("the request must be a JSON object with \"inputs\""));
    };
    let id = match request.remove("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(id),
        Some(_) => return Err(invalid("\"id\" must be a string")),
    };
    let parameters = parameters(request.remove("parameters"), "the request")?;
    let all_binary = flag(&parameters, "binary_data_output", "the request")?.unwrap_or(false);
    let Some(Value::Array(inputs_json)) = request.remove("inputs") else {
        return Err(invalid(
            "the request must have \"inputs\": [{\"name\", \"shape\", \"datatype\", \"data\"}]",
        ));
    };
    let mut inputs = Vec::with_capacity(inputs_json.len());
    for (index, input) in inputs_json.into_iter().enumerate() {
        inputs.push(decode_input(index, input, &mut binary)?);
    }
    if !binary.is_empty() {
        return Err(invalid(format!(
            "{} bytes of binary data follow the inputs that no input's binary_data_size claims",
            binary.len()
        )));
    }
    let outputs = match request.remove("outputs") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(outputs)) => outputs
            .into_iter()
            .map(|output| decode_output(output, all_binary))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(invalid("\"outputs\" must be a list of {\"name\"}")),
    };
    Ok(InferRequest {
        id,
        model: model.to_string(),
        version: version.map(str::to_string),
        inputs,
        outputs,
        parameters,
    })
}

/// Encodes a response: JSON, with the outputs asked for as binary appended after it.
pub fn encode(
    response: &InferResponse,
    requested: &[RequestedOutput],
    parameters: &Map<String, Value>,
) -> Body {
    let all_binary = parameters
        .get("binary_data_output")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let binary = |name: &str| {
        requested
            .iter()
            .find(|r| r.name == name)
            .map_or(all_binary, |r| r.binary)
    };
    let mut raw = Vec::new();
    let outputs = response
        .outputs
        .iter()
        .map(|output| {
            let (data, parameters) = if binary(&output.name) {
                let bytes = output.data.to_raw();
                let size = bytes.len();
                raw.extend_from_slice(&bytes);
                (
                    None,
                    Some(BinaryParameters {
                        binary_data_size: size,
                    }),
                )
            } else {
                (Some(Value::Array(output.data.to_json())), None)
            };
            OutputBody {
                name: &output.name,
                datatype: output.data.element_type().oip_name(),
                shape: &output.shape,
                parameters,
                data,
            }
        })
        .collect();
    let header = ResponseBody {
        id: response.id.as_deref(),
        model_name: &response.model_name,
        model_version: &response.model_version,
        outputs,
    };
    let mut bytes = serde_json::to_vec(&header).unwrap_or_default();
    let any_binary = response.outputs.iter().any(|output| binary(&output.name));
    let header_length = any_binary.then_some(bytes.len());
    bytes.extend_from_slice(&raw);
    Body {
        bytes,
        header_length,
    }
}

/// The JSON part of an inference response.
#[derive(Debug, Serialize)]
struct ResponseBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    model_name: &'a str,
    model_version: &'a str,
    outputs: Vec<OutputBody<'a>>,
}

/// One output: its values in `data`, or their size in `parameters` when they follow as
/// binary data.
#[derive(Debug, Serialize)]
struct OutputBody<'a> {
    name: &'a str,
    datatype: &'static str,
    shape: &'a [i64],
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<BinaryParameters>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Value>,
}

#[derive(Debug, Serialize)]
struct BinaryParameters {
    binary_data_size: usize,
}

/// `GET /v2`'s body.
#[derive(Debug, Serialize)]
pub struct ServerMetadataBody<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub extensions: &'a [String],
}

/// `GET /v2/models/{name}[/versions/{version}]`'s body.
#[derive(Debug, Serialize)]
pub struct ModelMetadataBody<'a> {
    pub name: &'a str,
    pub versions: &'a [String],
    pub platform: &'a str,
    pub inputs: Vec<TensorMetadataBody<'a>>,
    pub outputs: Vec<TensorMetadataBody<'a>>,
}

/// One tensor of a model's metadata (`-1` for a dynamic dimension).
#[derive(Debug, Serialize)]
pub struct TensorMetadataBody<'a> {
    pub name: &'a str,
    pub datatype: &'static str,
    pub shape: &'a [i64],
}

/// A health answer: `{"live": bool}`, or `{"ready": bool}` with the reason when not ready.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Probe {
    Live {
        live: bool,
    },
    Ready {
        ready: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
}

impl Probe {
    pub fn live(live: bool) -> Probe {
        Probe::Live { live }
    }

    /// Readiness, with why not when it is not (a reason is dropped when ready).
    pub fn ready(ready: bool, why_not: Option<String>) -> Probe {
        Probe::Ready {
            ready,
            reason: why_not.filter(|_| !ready),
        }
    }

    /// Whether what it answers about holds.
    pub fn holds(&self) -> bool {
        match self {
            Probe::Live { live } => *live,
            Probe::Ready { ready, .. } => *ready,
        }
    }
}

/// One model in the body of `POST /v2/repository/index`.
#[derive(Debug, Serialize)]
pub struct IndexModel<'a> {
    pub name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<&'a str>,
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
}

/// The body of `POST /v2/repository/index`: a JSON array, one object per model.
pub fn repository_index(entries: &[super::IndexEntry]) -> Vec<IndexModel<'_>> {
    entries
        .iter()
        .map(|entry| IndexModel {
            name: &entry.name,
            version: entry.version.as_deref(),
            state: entry.state.as_str(),
            reason: entry.reason.as_deref(),
        })
        .collect()
}

/// What `POST /v2/repository/index` may ask: only the ready models.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexRequest {
    #[serde(default)]
    pub ready: bool,
}

/// The body of `GET /v2`.
pub fn server_metadata(metadata: &ServerMetadata) -> ServerMetadataBody<'_> {
    ServerMetadataBody {
        name: &metadata.name,
        version: &metadata.version,
        extensions: &metadata.extensions,
    }
}

/// The body of a model's metadata.
pub fn model_metadata(metadata: &ModelMetadata) -> ModelMetadataBody<'_> {
    ModelMetadataBody {
        name: &metadata.name,
        versions: &metadata.versions,
        platform: &metadata.platform,
        inputs: tensors(&metadata.inputs),
        outputs: tensors(&metadata.outputs),
    }
}

fn tensors(tensors: &[TensorMetadata]) -> Vec<TensorMetadataBody<'_>> {
    tensors
        .iter()
        .map(|t| TensorMetadataBody {
            name: &t.name,
            datatype: t.datatype.oip_name(),
            shape: &t.shape,
        })
        .collect()
}

fn invalid(message: impl Into<String>) -> OipError {
    OipError::Invalid(message.into())
}

/// A `parameters` object (absent: empty).
fn parameters(value: Option<Value>, of: &str) -> Result<Map<String, Value>, OipError> {
    match value {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(map)) => Ok(map),
        Some(_) => Err(invalid(format!("{of}: \"parameters\" must be an object"))),
    }
}

/// A boolean parameter, when present.
fn flag(parameters: &Map<String, Value>, key: &str, of: &str) -> Result<Option<bool>, OipError> {
    match parameters.get(key) {
        None => Ok(None),
        Some(Value::Bool(value)) => Ok(Some(*value)),
        Some(_) => Err(invalid(format!(
            "{of}: parameter {key} must be true or false"
        ))),
    }
}

fn decode_input(index: usize, input: Value, binary: &mut &[u8]) -> Result<Tensor, OipError> {
    let Value::Object(mut input) = input else {
        return Err(invalid(format!("input {index} must be an object")));
    };
    let name = match input.remove("name") {
        Some(Value::String(name)) => name,
        _ => return Err(invalid(format!("input {index} has no \"name\""))),
    };
    let of = format!("input '{name}'");
    let datatype = match input.remove("datatype") {
        Some(Value::String(datatype)) => {
            ElementType::from_oip_name(&datatype).ok_or_else(|| {
                let known: Vec<&str> = ElementType::ALL.iter().map(|d| d.oip_name()).collect();
                invalid(format!(
                    "{of}: unknown datatype '{datatype}'; use one of {}",
                    known.join(", ")
                ))
            })?
        }
        _ => return Err(invalid(format!("{of} has no \"datatype\""))),
    };
    let shape: Vec<i64> = match input.remove("shape") {
        Some(Value::Array(dims)) => dims
            .iter()
            .map(|d| d.as_i64().filter(|&d| d >= 0))
            .collect::<Option<_>>()
            .ok_or_else(|| invalid(format!("{of}: \"shape\" must list sizes (integers >= 0)")))?,
        _ => return Err(invalid(format!("{of} has no \"shape\""))),
    };
    let count = shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(usize::try_from(d).ok()?))
        .ok_or_else(|| invalid(format!("{of}: shape {shape:?} is too large")))?;
    let parameters = parameters(input.remove("parameters"), &of)?;
    if parameters.contains_key("shared_memory_region") {
        return Err(invalid(format!(
            "{of}: shared memory is not supported; send the data in the request"
        )));
    }
    let data = match parameters.get("binary_data_size") {
        Some(size) => {
            let size = size
                .as_u64()
                .and_then(|s| usize::try_from(s).ok())
                .ok_or_else(|| invalid(format!("{of}: binary_data_size must be a byte count")))?;
            if input.get("data").is_some() {
                return Err(invalid(format!(
                    "{of} has both \"data\" and binary_data_size; send one"
                )));
            }
            if size > binary.len() {
                return Err(invalid(format!(
                    "{of}: binary_data_size is {size} but only {} bytes of binary data are left",
                    binary.len()
                )));
            }
            let (own, rest) = binary.split_at(size);
            *binary = rest;
            Values::from_raw(datatype, own).map_err(|why| invalid(format!("{of}: {why}")))?
        }
        None => {
            let Some(data) = input.remove("data") else {
                return Err(invalid(format!(
                    "{of} has no \"data\" (nor binary_data_size)"
                )));
            };
            from_json(datatype, &data).map_err(|why| invalid(format!("{of}: {why}")))?
        }
    };
    if data.len() != count {
        return Err(invalid(format!(
            "{of} has shape {shape:?} ({count} elements) but {} elements of data",
            data.len()
        )));
    }
    Ok(Tensor { name, shape, data })
}

fn decode_output(output: Value, all_binary: bool) -> Result<RequestedOutput, OipError> {
    let Value::Object(mut output) = output else {
        return Err(invalid(
            "each requested output must be an object with \"name\"",
        ));
    };
    let name = match output.remove("name") {
        Some(Value::String(name)) => name,
        _ => return Err(invalid("a requested output has no \"name\"")),
    };
    let of = format!("output '{name}'");
    let parameters = parameters(output.remove("parameters"), &of)?;
    if parameters.contains_key("classification") {
        return Err(invalid(format!(
            "{of}: the classification extension is not supported; ask for 'label' and 'probabilities'"
        )));
    }
    if parameters.contains_key("shared_memory_region") {
        return Err(invalid(format!("{of}: shared memory is not supported")));
    }
    let binary = flag(&parameters, "binary_data", &of)?.unwrap_or(all_binary);
    Ok(RequestedOutput { name, binary })
}

/// Tensor data from JSON: a flat or nested list (row-major) of values of `datatype`.
fn from_json(datatype: ElementType, data: &Value) -> Result<Values, String> {
    let mut leaves = Vec::new();
    flatten(data, 0, &mut leaves)?;
    let bad = |index: usize, leaf: &Value| {
        let shown: String = leaf.to_string().chars().take(40).collect();
        format!(
            "element {index} ({shown}) is not a {} value",
            datatype.oip_name()
        )
    };
    fn each<T>(
        leaves: &[&Value],
        convert: impl Fn(&Value) -> Option<T>,
        bad: impl Fn(usize, &Value) -> String,
    ) -> Result<Vec<T>, String> {
        leaves
            .iter()
            .enumerate()
            .map(|(i, leaf)| convert(leaf).ok_or_else(|| bad(i, leaf)))
            .collect()
    }
    fn int<T: TryFrom<i64>>(leaf: &Value) -> Option<T> {
        T::try_from(leaf.as_i64()?).ok()
    }
    Ok(match datatype {
        ElementType::Bool => Values::Bool(each(&leaves, Value::as_bool, bad)?),
        ElementType::Uint8 => Values::Uint8(each(&leaves, int::<u8>, bad)?),
        ElementType::Int8 => Values::Int8(each(&leaves, int::<i8>, bad)?),
        ElementType::Int32 => Values::Int32(each(&leaves, int::<i32>, bad)?),
        ElementType::Int64 => Values::Int64(each(&leaves, int::<i64>, bad)?),
        ElementType::Fp16 => Values::Fp16(each(
            &leaves,
            |v| Some(half::f16::from_f64(v.as_f64()?).to_bits()),
            bad,
        )?),
        ElementType::Fp32 => Values::Fp32(each(&leaves, |v| Some(v.as_f64()? as f32), bad)?),
        ElementType::Fp64 => Values::Fp64(each(&leaves, Value::as_f64, bad)?),
        ElementType::Bytes => Values::Bytes(each(
            &leaves,
            |v| Some(v.as_str()?.as_bytes().to_vec()),
            bad,
        )?),
    })
}

fn flatten<'a>(value: &'a Value, depth: usize, out: &mut Vec<&'a Value>) -> Result<(), String> {
    match value {
        Value::Array(items) => {
            if depth >= MAX_DEPTH {
                return Err(format!("\"data\" nests more than {MAX_DEPTH} lists deep"));
            }
            items
                .iter()
                .try_for_each(|item| flatten(item, depth + 1, out))
        }
        leaf if depth == 0 => Err(format!(
            "\"data\" must be a list, not {}",
            crate::protocol::kind(leaf)
        )),
        leaf => {
            out.push(leaf);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Decodes `body` (JSON, then `binary`) and returns its inputs, or the error message.
    fn check(body: Value, binary: &[u8], expected: Result<Vec<Tensor>, &str>) {
        let mut bytes = body.to_string().into_bytes();
        let header_length = (!binary.is_empty()).then_some(bytes.len());
        bytes.extend_from_slice(binary);
        let got = decode(&bytes, header_length, "m", None)
            .map(|r| r.inputs)
            .map_err(|e| e.to_string());
        assert_eq!(got, expected.map_err(str::to_string), "{body}");
    }

    fn tensor(name: &str, shape: &[i64], data: Values) -> Tensor {
        Tensor {
            name: name.into(),
            shape: shape.to_vec(),
            data,
        }
    }

    fn input(name: &str, datatype: &str, shape: Value, data: Value) -> Value {
        json!({"inputs": [{"name": name, "datatype": datatype, "shape": shape, "data": data}]})
    }

    #[test]
    #[rustfmt::skip]
    fn json_inputs() {
        check(input("x", "FP32", json!([2, 2]), json!([[1, 2], [3, 4.5]])), &[], Ok(vec![tensor("x", &[2, 2], Values::Fp32(vec![1.0, 2.0, 3.0, 4.5]))]));
        check(input("x", "FP32", json!([2, 2]), json!([1, 2, 3, 4])), &[], Ok(vec![tensor("x", &[2, 2], Values::Fp32(vec![1.0, 2.0, 3.0, 4.0]))]));
        check(input("t", "BYTES", json!([2]), json!(["a", "b"])), &[], Ok(vec![tensor("t", &[2], Values::Bytes(vec![b"a".to_vec(), b"b".to_vec()]))]));
        check(input("b", "BOOL", json!([1]), json!([true])), &[], Ok(vec![tensor("b", &[1], Values::Bool(vec![true]))]));
        check(input("i", "INT8", json!([2]), json!([-128, 127])), &[], Ok(vec![tensor("i", &[2], Values::Int8(vec![-128, 127]))]));
        check(input("h", "FP16", json!([1]), json!([1.0])), &[], Ok(vec![tensor("h", &[1], Values::Fp16(vec![0x3c00]))]));
        check(input("e", "INT64", json!([0]), json!([])), &[], Ok(vec![tensor("e", &[0], Values::Int64(vec![]))]));
    }

    #[test]
    #[rustfmt::skip]
    fn json_rejections_name_the_tensor() {
        check(input("x", "FP32", json!([3]), json!([1, 2])), &[], Err("input 'x' has shape [3] (3 elements) but 2 elements of data"));
        check(input("x", "FP31", json!([1]), json!([1])), &[], Err("input 'x': unknown datatype 'FP31'; use one of BOOL, UINT8, INT8, INT32, INT64, FP16, FP32, FP64, BYTES"));
        check(input("i", "UINT8", json!([1]), json!([256])), &[], Err("input 'i': element 0 (256) is not a UINT8 value"));
        check(input("i", "INT32", json!([1]), json!([1.5])), &[], Err("input 'i': element 0 (1.5) is not a INT32 value"));
        check(input("b", "BOOL", json!([1]), json!([1])), &[], Err("input 'b': element 0 (1) is not a BOOL value"));
        check(input("x", "FP32", json!([-1]), json!([])), &[], Err("input 'x': \"shape\" must list sizes (integers >= 0)"));
        check(input("x", "FP32", json!([1]), json!(1)), &[], Err("input 'x': \"data\" must be a list, not a number"));
        check(json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1]}]}), &[], Err("input 'x' has no \"data\" (nor binary_data_size)"));
        check(json!({"inputs": 1}), &[], Err("the request must have \"inputs\": [{\"name\", \"shape\", \"datatype\", \"data\"}]"));
        check(json!([1]), &[], Err("the request must be a JSON object with \"inputs\""));
        check(input("x", "FP32", json!([4294967296_u64, 4294967296_u64, 4294967296_u64]), json!([])), &[], Err("input 'x': shape [4294967296, 4294967296, 4294967296] is too large"));
    }

    fn binary_input(name: &str, datatype: &str, shape: Value, size: usize) -> Value {
        json!({"name": name, "datatype": datatype, "shape": shape, "parameters": {"binary_data_size": size}})
    }

    #[test]
    #[rustfmt::skip]
    fn binary_inputs() {
        let raw: Vec<u8> = [1.0f32, 2.0].iter().flat_map(|x| x.to_le_bytes()).chain([1, 0]).collect();
        let body = json!({"inputs": [binary_input("x", "FP32", json!([1, 2]), 8), binary_input("b", "BOOL", json!([2]), 2)]});
        check(body, &raw, Ok(vec![tensor("x", &[1, 2], Values::Fp32(vec![1.0, 2.0])), tensor("b", &[2], Values::Bool(vec![true, false]))]));
        let body = json!({"inputs": [binary_input("x", "FP32", json!([1, 2]), 8)]});
        check(body.clone(), &raw, Err("2 bytes of binary data follow the inputs that no input's binary_data_size claims"));
        check(body, &raw[..6], Err("input 'x': binary_data_size is 8 but only 6 bytes of binary data are left"));
        let body = json!({"inputs": [binary_input("x", "FP32", json!([1]), 3)]});
        check(body, &[0, 0, 0], Err("input 'x': 3 bytes of FP32 data is not a whole number of 4-byte elements"));
        let body = json!({"inputs": [binary_input("t", "BYTES", json!([1]), 6)]});
        check(body, &[2, 0, 0, 0, b'h', b'i'], Ok(vec![tensor("t", &[1], Values::Bytes(vec![b"hi".to_vec()]))]));
    }

    #[test]
    fn a_header_length_past_the_body_is_refused() {
        let err = decode(b"{}", Some(3), "m", None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Inference-Header-Content-Length is 3 but the body has 2 bytes"
        );
    }

    #[test]
    fn requested_outputs_and_their_binary_flags() {
        let decode_outputs = |body: Value| {
            decode(body.to_string().as_bytes(), None, "m", Some("2"))
                .map(|r| {
                    r.outputs
                        .into_iter()
                        .map(|o| (o.name, o.binary))
                        .collect::<Vec<_>>()
                })
                .map_err(|e| e.to_string())
        };
        let outputs = |all: Value| {
            json!({"inputs": [], "parameters": {"binary_data_output": all}, "outputs": [
                {"name": "a"}, {"name": "b", "parameters": {"binary_data": true}},
                {"name": "c", "parameters": {"binary_data": false}}]})
        };
        assert_eq!(
            decode_outputs(outputs(json!(false))),
            Ok(vec![
                ("a".into(), false),
                ("b".into(), true),
                ("c".into(), false)
            ])
        );
        assert_eq!(
            decode_outputs(outputs(json!(true))),
            Ok(vec![
                ("a".into(), true),
                ("b".into(), true),
                ("c".into(), false)
            ])
        );
        assert_eq!(
            decode_outputs(outputs(json!("yes"))),
            Err("the request: parameter binary_data_output must be true or false".into())
        );
    }

    fn response() -> InferResponse {
        InferResponse {
            id: Some("r1".into()),
            model_name: "m".into(),
            model_version: "3".into(),
            outputs: vec![
                tensor("label", &[1], Values::Bytes(vec![b"POSITIVE".to_vec()])),
                tensor("p", &[1, 2], Values::Fp32(vec![0.25, 0.75])),
            ],
        }
    }

    #[test]
    fn json_responses() {
        let body = encode(&response(), &[], &Map::new());
        assert_eq!(body.header_length, None);
        let value: Value = serde_json::from_slice(&body.bytes).unwrap();
        assert_eq!(
            value,
            json!({"id": "r1", "model_name": "m", "model_version": "3", "outputs": [
                {"name": "label", "datatype": "BYTES", "shape": [1], "data": ["POSITIVE"]},
                {"name": "p", "datatype": "FP32", "shape": [1, 2], "data": [0.25, 0.75]}]})
        );
    }

    #[test]
    fn binary_responses() {
        let requested = [RequestedOutput {
            name: "p".into(),
            binary: true,
        }];
        let body = encode(&response(), &requested, &Map::new());
        let length = body.header_length.expect("a binary output");
        let header: Value = serde_json::from_slice(&body.bytes[..length]).unwrap();
        assert_eq!(
            header["outputs"][1],
            json!({"name": "p", "datatype": "FP32", "shape": [1, 2], "parameters": {"binary_data_size": 8}})
        );
        assert_eq!(header["outputs"][0]["data"], json!(["POSITIVE"]));
        assert_eq!(
            &body.bytes[length..],
            Values::Fp32(vec![0.25, 0.75]).to_raw()
        );
        let mut all = Map::new();
        all.insert("binary_data_output".into(), json!(true));
        let body = encode(&response(), &[], &all);
        let length = body.header_length.expect("binary outputs");
        let expected: Vec<u8> = [
            Values::Bytes(vec![b"POSITIVE".to_vec()]).to_raw(),
            Values::Fp32(vec![0.25, 0.75]).to_raw(),
        ]
        .concat();
        assert_eq!(&body.bytes[length..], expected);
    }
}
