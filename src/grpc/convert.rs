//! Between the protocol buffers of `grpc_predict_v2.proto` and [`crate::oip`]'s types, and
//! from an [`OipError`] to a gRPC status. Pure: no IO, no model, table-tested below.
//!
//! Contents come either typed (`InferTensorContents`, the field that matches the datatype) or
//! raw (`raw_input_contents`, one little-endian buffer per input, in the order of `inputs`),
//! never both in one request. The answer uses the request's form, as Triton does (tritonclient
//! sends raw); FP16 has no typed field, so an answer with an FP16 output is always raw.

use serde_json::{Map, Value};
use tonic::{Code, Status};

use super::proto::infer_parameter::ParameterChoice;
use super::proto::model_infer_request::InferInputTensor;
use super::proto::model_infer_response::InferOutputTensor;
use super::proto::model_metadata_response::TensorMetadata as ProtoTensorMetadata;
use super::proto::{
    InferParameter, InferTensorContents, ModelInferRequest, ModelInferResponse,
    ModelMetadataResponse, ServerMetadataResponse,
};
use crate::oip::{
    ElementType, InferRequest, InferResponse, ModelMetadata, OipError, RequestedOutput,
    ServerMetadata, Tensor, TensorMetadata, Values,
};

/// How the client sent its tensors, and so how the answer carries them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Contents {
    /// `InferTensorContents`, the repeated field matching each datatype.
    Typed,
    /// `raw_input_contents` / `raw_output_contents`.
    Raw,
}

/// The gRPC status of an OIP failure; an overloaded answer carries
/// `grpc-retry-pushback-ms`, gRPC's form of `Retry-After`.
/// A call refused for want of an API key (`api_keys_file`): UNAUTHENTICATED, with the same
/// message the HTTP routes give.
pub fn unauthenticated(err: &crate::security::keys::AuthError) -> Status {
    Status::unauthenticated(err.to_string())
}

pub fn status(err: OipError) -> Status {
    let code = code_of(&err);
    let mut status = Status::new(code, err.to_string());
    if let OipError::Overloaded {
        retry_after_secs, ..
    } = err
    {
        let millis = (retry_after_secs * 1000).to_string();
        if let Ok(value) = millis.parse() {
            status
                .metadata_mut()
                .insert("grpc-retry-pushback-ms", value);
        }
    }
    status
}

/// The status code of each kind of OIP failure (the gRPC twin of `src/http/error.rs`).
pub fn code_of(err: &OipError) -> Code {
    match err {
        OipError::NotFound(_) => Code::NotFound,
        OipError::Invalid(_) => Code::InvalidArgument,
        OipError::Unavailable(_) => Code::Unavailable,
        OipError::Overloaded { .. } => Code::ResourceExhausted,
        OipError::Timeout(_) => Code::DeadlineExceeded,
        OipError::Internal(_) => Code::Internal,
    }
}

/// A `ModelInferRequest` as an OIP request, and the form its contents came in.
pub fn infer_request(request: ModelInferRequest) -> Result<(InferRequest, Contents), OipError> {
    let ModelInferRequest {
        model_name,
        model_version,
        id,
        parameters,
        inputs,
        outputs,
        raw_input_contents,
    } = request;
    let contents = if raw_input_contents.is_empty() {
        Contents::Typed
    } else {
        if raw_input_contents.len() != inputs.len() {
            return Err(OipError::Invalid(format!(
                "raw_input_contents has {} entries for {} inputs; send one per input, in the order of inputs",
                raw_input_contents.len(),
                inputs.len()
            )));
        }
        if let Some(input) = inputs.iter().find(|i| i.contents.is_some()) {
            return Err(OipError::Invalid(format!(
                "input '{}' has contents while the request uses raw_input_contents; send either, not both",
                input.name
            )));
        }
        Contents::Raw
    };
    let mut raw = raw_input_contents.into_iter();
    let inputs = inputs
        .into_iter()
        .map(|input| input_tensor(input, raw.next().as_deref()))
        .collect::<Result<_, _>>()?;
    let request = InferRequest {
        id: Some(id).filter(|id| !id.is_empty()),
        model: model_name,
        version: Some(model_version).filter(|v| !v.is_empty()),
        inputs,
        outputs: outputs
            .into_iter()
            .map(|output| RequestedOutput {
                name: output.name,
                binary: false,
            })
            .collect(),
        parameters: parameters_to_json(parameters),
    };
    Ok((request, contents))
}

/// An OIP answer as a `ModelInferResponse`, in the form the request used.
pub fn infer_response(response: InferResponse, contents: Contents) -> ModelInferResponse {
    let raw = contents == Contents::Raw
        || response
            .outputs
            .iter()
            .any(|t| t.data.element_type() == ElementType::Fp16);
    let mut raw_output_contents = Vec::new();
    let outputs = response
        .outputs
        .into_iter()
        .map(|tensor| {
            let contents = if raw {
                raw_output_contents.push(tensor.data.to_raw());
                None
            } else {
                Some(typed_contents(tensor.data.clone()))
            };
            InferOutputTensor {
                name: tensor.name,
                datatype: tensor.data.element_type().oip_name().to_string(),
                shape: tensor.shape,
                parameters: Default::default(),
                contents,
            }
        })
        .collect();
    ModelInferResponse {
        model_name: response.model_name,
        model_version: response.model_version,
        id: response.id.unwrap_or_default(),
        parameters: Default::default(),
        outputs,
        raw_output_contents,
    }
}

pub fn server_metadata(metadata: ServerMetadata) -> ServerMetadataResponse {
    ServerMetadataResponse {
        name: metadata.name,
        version: metadata.version,
        extensions: metadata.extensions,
    }
}

pub fn model_metadata(metadata: ModelMetadata) -> ModelMetadataResponse {
    let tensors = |tensors: Vec<TensorMetadata>| {
        tensors
            .into_iter()
            .map(|t| ProtoTensorMetadata {
                name: t.name,
                datatype: t.datatype.oip_name().to_string(),
                shape: t.shape,
            })
            .collect()
    };
    ModelMetadataResponse {
        name: metadata.name,
        versions: metadata.versions,
        platform: metadata.platform,
        inputs: tensors(metadata.inputs),
        outputs: tensors(metadata.outputs),
    }
}

/// One input: its datatype checked, its contents decoded (from `raw` when the request is
/// raw), and their element count checked against its shape.
fn input_tensor(input: InferInputTensor, raw: Option<&[u8]>) -> Result<Tensor, OipError> {
    let name = input.name;
    let invalid = |why: String| OipError::Invalid(format!("input '{name}': {why}"));
    let datatype = ElementType::from_oip_name(&input.datatype).ok_or_else(|| {
        invalid(format!(
            "datatype '{}' is not supported; use BOOL, UINT8, INT8, INT32, INT64, FP16, FP32, FP64 or BYTES",
            input.datatype
        ))
    })?;
    if let Some(dim) = input.shape.iter().find(|&&d| d < 0) {
        return Err(invalid(format!(
            "shape {:?} has a negative dimension ({dim})",
            input.shape
        )));
    }
    let elements = input
        .shape
        .iter()
        .try_fold(1u64, |n, &d| n.checked_mul(d as u64))
        .ok_or_else(|| invalid(format!("shape {:?} is too large", input.shape)))?;
    let data = match raw {
        Some(raw) => Values::from_raw(datatype, raw)
            .map_err(|why| invalid(format!("raw contents: {why}")))?,
        None => from_typed(datatype, input.contents.unwrap_or_default()).map_err(invalid)?,
    };
    if data.len() as u64 != elements {
        return Err(invalid(format!(
            "shape {:?} has {elements} elements but the {} contents hold {}",
            input.shape,
            datatype.oip_name(),
            data.len()
        )));
    }
    Ok(Tensor {
        name,
        shape: input.shape,
        data,
    })
}

/// Typed contents from the field that matches `datatype`; values out of the type's range
/// and contents in another field are refused.
fn from_typed(datatype: ElementType, contents: InferTensorContents) -> Result<Values, String> {
    let InferTensorContents {
        bool_contents,
        int_contents,
        int64_contents,
        uint_contents,
        uint64_contents,
        fp32_contents,
        fp64_contents,
        bytes_contents,
    } = contents;
    let filled = [
        ("bool_contents", !bool_contents.is_empty()),
        ("int_contents", !int_contents.is_empty()),
        ("int64_contents", !int64_contents.is_empty()),
        ("uint_contents", !uint_contents.is_empty()),
        ("uint64_contents", !uint64_contents.is_empty()),
        ("fp32_contents", !fp32_contents.is_empty()),
        ("fp64_contents", !fp64_contents.is_empty()),
        ("bytes_contents", !bytes_contents.is_empty()),
    ];
    let expected = match datatype {
        ElementType::Bool => "bool_contents",
        ElementType::Uint8 => "uint_contents",
        ElementType::Int8 | ElementType::Int32 => "int_contents",
        ElementType::Int64 => "int64_contents",
        ElementType::Fp32 => "fp32_contents",
        ElementType::Fp64 => "fp64_contents",
        ElementType::Bytes => "bytes_contents",
        ElementType::Fp16 => {
            return Err("FP16 has no typed contents; send it in raw_input_contents".into())
        }
    };
    if let Some((field, _)) = filled.iter().find(|(f, set)| *set && *f != expected) {
        return Err(format!(
            "{} data belongs in contents.{expected}, not contents.{field}",
            datatype.oip_name()
        ));
    }
    Ok(match datatype {
        ElementType::Bool => Values::Bool(bool_contents),
        ElementType::Uint8 => Values::Uint8(
            uint_contents
                .into_iter()
                .map(|v| u8::try_from(v).map_err(|_| format!("{v} is out of range for UINT8")))
                .collect::<Result<_, _>>()?,
        ),
        ElementType::Int8 => Values::Int8(
            int_contents
                .into_iter()
                .map(|v| i8::try_from(v).map_err(|_| format!("{v} is out of range for INT8")))
                .collect::<Result<_, _>>()?,
        ),
        ElementType::Int32 => Values::Int32(int_contents),
        ElementType::Int64 => Values::Int64(int64_contents),
        ElementType::Fp32 => Values::Fp32(fp32_contents),
        ElementType::Fp64 => Values::Fp64(fp64_contents),
        ElementType::Bytes => Values::Bytes(bytes_contents),
        ElementType::Fp16 => unreachable!("refused above"),
    })
}

/// Typed contents for an output (not FP16: answers with FP16 are raw).
fn typed_contents(data: Values) -> InferTensorContents {
    let mut contents = InferTensorContents::default();
    match data {
        Values::Bool(v) => contents.bool_contents = v,
        Values::Uint8(v) => contents.uint_contents = v.into_iter().map(u32::from).collect(),
        Values::Int8(v) => contents.int_contents = v.into_iter().map(i32::from).collect(),
        Values::Int32(v) => contents.int_contents = v,
        Values::Int64(v) => contents.int64_contents = v,
        Values::Fp16(_) => unreachable!("answers with FP16 outputs are raw"),
        Values::Fp32(v) => contents.fp32_contents = v,
        Values::Fp64(v) => contents.fp64_contents = v,
        Values::Bytes(v) => contents.bytes_contents = v,
    }
    contents
}

/// Request parameters as the JSON values the REST form carries.
fn parameters_to_json(
    parameters: std::collections::HashMap<String, InferParameter>,
) -> Map<String, Value> {
    parameters
        .into_iter()
        .filter_map(|(key, parameter)| {
            let value = match parameter.parameter_choice? {
                ParameterChoice::BoolParam(b) => Value::from(b),
                ParameterChoice::Int64Param(i) => Value::from(i),
                ParameterChoice::StringParam(s) => Value::from(s),
            };
            Some((key, value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(
        name: &str,
        datatype: &str,
        shape: &[i64],
        contents: Option<InferTensorContents>,
    ) -> InferInputTensor {
        InferInputTensor {
            name: name.into(),
            datatype: datatype.into(),
            shape: shape.to_vec(),
            parameters: Default::default(),
            contents,
        }
    }

    fn request(inputs: Vec<InferInputTensor>, raw: Vec<Vec<u8>>) -> ModelInferRequest {
        ModelInferRequest {
            model_name: "m".into(),
            inputs,
            raw_input_contents: raw,
            ..Default::default()
        }
    }

    /// Inputs as (name, shape, data).
    type Inputs<'a> = Vec<(&'a str, Vec<i64>, Values)>;

    /// The decoded inputs and contents form, or the error message.
    fn check(request: ModelInferRequest, expected: Result<(Inputs<'_>, Contents), &str>) {
        let got = infer_request(request.clone()).map(|(r, c)| {
            let inputs: Vec<(String, Vec<i64>, Values)> = r
                .inputs
                .into_iter()
                .map(|t| (t.name, t.shape, t.data))
                .collect();
            (inputs, c)
        });
        match (got, expected) {
            (Ok(got), Ok((inputs, contents))) => {
                let inputs: Vec<(String, Vec<i64>, Values)> = inputs
                    .into_iter()
                    .map(|(n, s, d)| (n.to_string(), s, d))
                    .collect();
                assert_eq!(got, (inputs, contents), "{request:?}");
            }
            (Err(OipError::Invalid(got)), Err(message)) => assert_eq!(got, message, "{request:?}"),
            (got, expected) => panic!("{request:?}: got {got:?}, expected {expected:?}"),
        }
    }

    fn fp32(values: &[f32]) -> Option<InferTensorContents> {
        Some(InferTensorContents {
            fp32_contents: values.to_vec(),
            ..Default::default()
        })
    }

    fn bytes(values: &[&str]) -> Option<InferTensorContents> {
        Some(InferTensorContents {
            bytes_contents: values.iter().map(|s| s.as_bytes().to_vec()).collect(),
            ..Default::default()
        })
    }

    #[test]
    #[rustfmt::skip]
    fn typed_inputs() {
        check(request(vec![input("x", "FP32", &[1, 2], fp32(&[1.0, 2.0]))], vec![]), Ok((vec![("x", vec![1, 2], Values::Fp32(vec![1.0, 2.0]))], Contents::Typed)));
        check(request(vec![input("text", "BYTES", &[2], bytes(&["a", "b"]))], vec![]), Ok((vec![("text", vec![2], Values::Bytes(vec![b"a".to_vec(), b"b".to_vec()]))], Contents::Typed)));
        check(request(vec![input("i", "INT8", &[2], Some(InferTensorContents { int_contents: vec![-1, 127], ..Default::default() }))], vec![]), Ok((vec![("i", vec![2], Values::Int8(vec![-1, 127]))], Contents::Typed)));
        check(request(vec![input("u", "UINT8", &[1], Some(InferTensorContents { uint_contents: vec![255], ..Default::default() }))], vec![]), Ok((vec![("u", vec![1], Values::Uint8(vec![255]))], Contents::Typed)));
        check(request(vec![input("e", "FP32", &[0, 4], None)], vec![]), Ok((vec![("e", vec![0, 4], Values::Fp32(vec![]))], Contents::Typed)));
    }

    #[test]
    #[rustfmt::skip]
    fn typed_input_errors() {
        check(request(vec![input("x", "FP32", &[3], fp32(&[1.0, 2.0]))], vec![]), Err("input 'x': shape [3] has 3 elements but the FP32 contents hold 2"));
        check(request(vec![input("x", "FP32", &[-1], fp32(&[1.0]))], vec![]), Err("input 'x': shape [-1] has a negative dimension (-1)"));
        check(request(vec![input("x", "UINT16", &[1], None)], vec![]), Err("input 'x': datatype 'UINT16' is not supported; use BOOL, UINT8, INT8, INT32, INT64, FP16, FP32, FP64 or BYTES"));
        check(request(vec![input("x", "FP64", &[1], fp32(&[1.0]))], vec![]), Err("input 'x': FP64 data belongs in contents.fp64_contents, not contents.fp32_contents"));
        check(request(vec![input("x", "FP16", &[1], None)], vec![]), Err("input 'x': FP16 has no typed contents; send it in raw_input_contents"));
        check(request(vec![input("i", "INT8", &[1], Some(InferTensorContents { int_contents: vec![300], ..Default::default() }))], vec![]), Err("input 'i': 300 is out of range for INT8"));
        check(request(vec![input("x", "FP32", &[1 << 40, 1 << 40], None)], vec![]), Err("input 'x': shape [1099511627776, 1099511627776] is too large"));
    }

    #[test]
    #[rustfmt::skip]
    fn raw_inputs() {
        let two_floats = [1.0f32.to_le_bytes(), 2.0f32.to_le_bytes()].concat();
        check(request(vec![input("x", "FP32", &[2], None)], vec![two_floats.clone()]), Ok((vec![("x", vec![2], Values::Fp32(vec![1.0, 2.0]))], Contents::Raw)));
        check(request(vec![input("h", "FP16", &[1], None)], vec![vec![0x00, 0x3c]]), Ok((vec![("h", vec![1], Values::Fp16(vec![0x3c00]))], Contents::Raw)));
        let text = [&3u32.to_le_bytes()[..], b"abc"].concat();
        check(request(vec![input("text", "BYTES", &[1], None)], vec![text]), Ok((vec![("text", vec![1], Values::Bytes(vec![b"abc".to_vec()]))], Contents::Raw)));
        check(request(vec![input("x", "FP32", &[3], None)], vec![two_floats.clone()]), Err("input 'x': shape [3] has 3 elements but the FP32 contents hold 2"));
        check(request(vec![input("x", "FP32", &[1], None)], vec![vec![0, 0, 0]]), Err("input 'x': raw contents: 3 bytes of FP32 data is not a whole number of 4-byte elements"));
        check(request(vec![input("x", "FP32", &[2], None), input("y", "FP32", &[2], None)], vec![two_floats.clone()]), Err("raw_input_contents has 1 entries for 2 inputs; send one per input, in the order of inputs"));
        check(request(vec![input("x", "FP32", &[2], fp32(&[1.0, 2.0]))], vec![two_floats]), Err("input 'x' has contents while the request uses raw_input_contents; send either, not both"));
    }

    #[test]
    fn request_fields() {
        let mut parameters = std::collections::HashMap::new();
        parameters.insert(
            "flag".to_string(),
            InferParameter {
                parameter_choice: Some(ParameterChoice::BoolParam(true)),
            },
        );
        parameters.insert(
            "n".to_string(),
            InferParameter {
                parameter_choice: Some(ParameterChoice::Int64Param(3)),
            },
        );
        let message = ModelInferRequest {
            model_name: "m".into(),
            model_version: String::new(),
            id: "req-1".into(),
            parameters,
            outputs: vec![
                super::super::proto::model_infer_request::InferRequestedOutputTensor {
                    name: "label".into(),
                    parameters: Default::default(),
                },
            ],
            ..Default::default()
        };
        let (request, _) = infer_request(message).unwrap();
        assert_eq!(request.id.as_deref(), Some("req-1"));
        assert_eq!(request.version, None);
        assert_eq!(
            request.outputs,
            [RequestedOutput {
                name: "label".into(),
                binary: false
            }]
        );
        assert_eq!(
            Value::Object(request.parameters),
            serde_json::json!({"flag": true, "n": 3})
        );
    }

    /// The answer's (contents present per output, raw buffers) for `outputs` in `contents`.
    fn answer(outputs: Vec<Values>, contents: Contents) -> (Vec<bool>, Vec<Vec<u8>>) {
        let response = InferResponse {
            id: None,
            model_name: "m".into(),
            model_version: "1".into(),
            outputs: outputs
                .into_iter()
                .enumerate()
                .map(|(i, data)| Tensor {
                    name: format!("o{i}"),
                    shape: vec![data.len() as i64],
                    data,
                })
                .collect(),
        };
        let message = infer_response(response, contents);
        (
            message
                .outputs
                .iter()
                .map(|o| o.contents.is_some())
                .collect(),
            message.raw_output_contents,
        )
    }

    #[test]
    #[rustfmt::skip]
    fn answers_use_the_request_form() {
        assert_eq!(answer(vec![Values::Fp32(vec![1.0])], Contents::Typed), (vec![true], vec![]));
        assert_eq!(answer(vec![Values::Fp32(vec![1.0])], Contents::Raw), (vec![false], vec![1.0f32.to_le_bytes().to_vec()]));
        assert_eq!(answer(vec![Values::Int32(vec![1]), Values::Fp16(vec![0x3c00])], Contents::Typed), (vec![false, false], vec![1i32.to_le_bytes().to_vec(), vec![0x00, 0x3c]]));
    }

    #[test]
    #[rustfmt::skip]
    fn status_codes() {
        let check = |err: OipError, code: Code| assert_eq!(status(err).code(), code);
        check(OipError::NotFound("x".into()), Code::NotFound);
        check(OipError::Invalid("x".into()), Code::InvalidArgument);
        check(OipError::Unavailable("x".into()), Code::Unavailable);
        check(OipError::Overloaded { message: "x".into(), retry_after_secs: 1 }, Code::ResourceExhausted);
        check(OipError::Timeout("x".into()), Code::DeadlineExceeded);
        check(OipError::Internal("x".into()), Code::Internal);
        let overloaded = status(OipError::Overloaded { message: "full".into(), retry_after_secs: 2 });
        assert_eq!(overloaded.message(), "full");
        assert_eq!(overloaded.metadata().get("grpc-retry-pushback-ms").unwrap(), "2000");
    }
}
