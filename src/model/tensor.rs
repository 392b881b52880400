//! Tensor models (no tokenizer): `/invocations` requests mapped onto the graph's inputs and
//! its outputs mapped onto the answer exactly as `mlflow models serve` does for an ONNX model
//! (its scoring server, schema enforcement and `_OnnxModelWrapper.predict`):
//! `{"predictions": {output: values}}`, or one record per value for a data frame that no tensor
//! signature turns into tensors. `tests/it/conformance.rs` checks this against the real server.

use ort::session::{Session, SessionInputValue};
use ort::value::{Tensor, TensorElementType, ValueType};
use serde_json::Value;

use super::element::{ElementType, Values};
use super::{InferError, Model, TensorDesc};
use crate::protocol::{self, Data, Invocation};

/// A named tensor: shape plus row-major values.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Values,
}

/// How `mlflow models serve` shapes the answer to a request, which [`reply_for`] decides and
/// [`to_predictions`] follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `{"predictions": {"<output>": nested values}}` with every output, even when the graph
    /// has one: what MLflow's ONNX flavor returns when it runs on a dict or an array.
    Tensors,
    /// `{"predictions": [{"<output>": value, ...}, ...]}`: MLflow hands a data frame to the
    /// ONNX flavor unchanged when the model has no tensor signature, and the flavor answers
    /// with a data frame of every output flattened to one dimension, one record per value.
    Records,
}

/// What the model's `MLmodel` signature says about its inputs, which decides how MLflow maps
/// a data frame onto the graph (`mlflow.models.utils._enforce_tensor_schema`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Signature {
    /// Tensor specs with names: a data frame has one column per input, each cell one row of it.
    NamedTensors,
    /// One tensor spec without a name: a single column, or a row of scalars, is one row.
    UnnamedTensor,
    /// No signature (or a column signature): the frame reaches the flavor as it is.
    Other,
}

/// How MLflow answers a request to this model: a data frame that is not turned into tensors by
/// a tensor signature gets records back; everything else gets a dict of outputs.
pub fn reply_for(model: &Model, data: &Data) -> Reply {
    match (data, signature(model)) {
        (Data::Frame { .. }, Signature::Other) => Reply::Records,
        _ => Reply::Tensors,
    }
}

/// Builds the graph's inputs from an `/invocations` request, as MLflow's scoring server and
/// ONNX flavor (`_OnnxModelWrapper.predict`) map them:
/// - `{"inputs": {"x": [[...]]}}` (or `instances`): named tensors; names that are not inputs
///   are ignored when the signature names its tensors (MLflow warns and drops them) and
///   refused otherwise (ONNX Runtime refuses them);
/// - `{"inputs": [[...]]}`: the one input of a single-input graph;
/// - `{"instances": [{"x": [...]}, ...]}`: one record per row, turned into columns;
/// - a data frame, with a named tensor signature: the column named after each input, one cell
///   per row (a scalar, or a flat list reshaped to the input's fixed dimensions);
///   with one unnamed tensor: its one column, or the rows as a matrix; without a tensor
///   signature: the rows as a matrix for a single-input graph (`DataFrame.values`), and one
///   scalar column per input for a graph with several.
pub fn from_request(
    model: &Model,
    request: Invocation,
) -> Result<Vec<NamedTensor>, protocol::BadRequest> {
    map_request(&model.inputs, signature(model), request)
}

/// [`from_request`] from the graph's input descriptions alone, as for a model without a
/// signature: what the fuzzer (`fuzz/fuzz_targets/request.rs`) runs, with no ONNX Runtime.
pub fn tensors_for(
    inputs: &[TensorDesc],
    request: Invocation,
) -> Result<Vec<NamedTensor>, protocol::BadRequest> {
    map_request(inputs, Signature::Other, request)
}

fn map_request(
    inputs: &[TensorDesc],
    signature: Signature,
    request: Invocation,
) -> Result<Vec<NamedTensor>, protocol::BadRequest> {
    let bad = |message: String| protocol::BadRequest::invalid(message);
    let input_names = || inputs.iter().map(|i| i.name.as_str()).collect::<Vec<_>>();
    let one_input = |value: Value| -> Result<Vec<Feed>, protocol::BadRequest> {
        match inputs {
            [input] => Ok(vec![Feed::whole(&input.name, value)]),
            _ => Err(bad(format!(
                "this model takes {} named tensors {:?}; send {{\"inputs\": {{\"name\": [[...]]}}}}",
                inputs.len(),
                input_names()
            ))),
        }
    };
    let mut feeds: Vec<Feed> = match request.data {
        Data::Tensor(Value::Object(object)) => object
            .into_iter()
            .map(|(name, value)| Feed::whole(&name, value))
            .collect(),
        Data::Tensor(Value::Array(items))
            if !items.is_empty() && items.iter().all(Value::is_object) =>
        {
            records_to_columns(items)
        }
        Data::Tensor(value @ Value::Array(_)) => one_input(value)?,
        Data::Tensor(other) => {
            return Err(bad(format!(
                "this model takes tensors {:?}; send {{\"inputs\": {{\"name\": [[...]]}}}}, not {}",
                input_names(),
                protocol::kind(&other)
            )))
        }
        Data::Frame { columns, rows } => match signature {
            Signature::NamedTensors => frame_columns(inputs, &columns, rows)?,
            Signature::UnnamedTensor if columns.len() == 1 => {
                let cells = rows.into_iter().filter_map(|row| row.into_iter().next());
                let mut feeds = one_input(Value::Array(cells.collect()))?;
                feeds[0].reshape = true;
                feeds
            }
            Signature::UnnamedTensor => one_input(matrix(rows))?,
            Signature::Other if inputs.len() == 1 => one_input(matrix(rows))?,
            Signature::Other => frame_scalar_columns(inputs, &columns, rows)?,
        },
    };
    if signature == Signature::NamedTensors {
        feeds.retain(|feed| inputs.iter().any(|input| input.name == feed.name));
    }
    let mut named: Vec<(String, Value)> = Vec::with_capacity(feeds.len());
    for feed in feeds {
        let value = match inputs.iter().find(|input| input.name == feed.name) {
            Some(input) if feed.reshape => reshape_rows(feed.value, &input.shape)
                .map_err(|why| bad(format!("input '{}': {why}", feed.name)))?,
            _ => feed.value,
        };
        named.push((feed.name, value));
    }
    let mut tensors = Vec::new();
    for input in inputs {
        let position = named
            .iter()
            .position(|(name, _)| name == &input.name)
            .ok_or_else(|| bad(format!("missing input '{}'", input.name)))?;
        let (name, value) = named.swap_remove(position);
        let (shape, values) =
            flatten(&value).map_err(|why| bad(format!("input '{name}': {why}")))?;
        if shape.len() != input.shape.len()
            || shape
                .iter()
                .zip(&input.shape)
                .any(|(&got, &want)| want >= 0 && got as i64 != want)
        {
            return Err(bad(format!(
                "input '{name}' has shape {shape:?}; the model expects {:?} (-1 = any)",
                input.shape
            )));
        }
        let data = match input.dtype.served() {
            Some(ElementType::Fp32) => Values::Fp32(values.iter().map(|&v| v as f32).collect()),
            Some(ElementType::Fp64) => Values::Fp64(values),
            Some(ElementType::Int64) => Values::Int64(
                integers(&values).map_err(|why| bad(format!("input '{name}': {why}")))?,
            ),
            Some(ElementType::Int32) => Values::Int32(
                integers(&values)
                    .map_err(|why| bad(format!("input '{name}': {why}")))?
                    .into_iter()
                    .map(|v| v as i32)
                    .collect(),
            ),
            _ => {
                return Err(bad(format!(
                    "input '{name}' has type {}, which hotserve does not serve",
                    input.dtype.name()
                )))
            }
        };
        tensors.push(NamedTensor { name, shape, data });
    }
    if let Some((extra, _)) = named.first() {
        return Err(bad(format!("unknown input '{extra}'")));
    }
    Ok(tensors)
}

/// One graph input's value as the request gave it.
struct Feed {
    /// The input it is for.
    name: String,
    /// Nested lists of numbers.
    value: Value,
    /// It is a data-frame column of per-row cells: reshape each row to the input's dimensions.
    reshape: bool,
}

impl Feed {
    fn whole(name: &str, value: Value) -> Feed {
        Feed {
            name: name.to_string(),
            value,
            reshape: false,
        }
    }
}

fn signature(model: &Model) -> Signature {
    let Some(Value::Array(inputs)) = model.mlmodel.signature.as_ref().map(|s| &s.inputs) else {
        return Signature::Other;
    };
    let tensors = !inputs.is_empty() && inputs.iter().all(|i| i["type"] == "tensor");
    let named = inputs.iter().all(|i| i["name"].is_string());
    match (tensors, named) {
        (true, true) => Signature::NamedTensors,
        (true, false) if inputs.len() == 1 => Signature::UnnamedTensor,
        _ => Signature::Other,
    }
}

/// `[{"a": 1, "b": 2}, {"a": 3, "b": 4}]` -> `a: [1, 3]`, `b: [2, 4]`, as MLflow reads
/// `instances` (`parse_instances_data`). A record without a key leaves a null in its column.
fn records_to_columns(records: Vec<Value>) -> Vec<Feed> {
    let mut columns: Vec<(String, Vec<Value>)> = Vec::new();
    let count = records.len();
    for (row, record) in records.into_iter().enumerate() {
        let Value::Object(object) = record else {
            continue;
        };
        for (key, value) in object {
            let index = match columns.iter().position(|(name, _)| *name == key) {
                Some(index) => index,
                None => {
                    columns.push((key, vec![Value::Null; count]));
                    columns.len() - 1
                }
            };
            columns[index].1[row] = value;
        }
    }
    columns
        .into_iter()
        .map(|(name, values)| Feed::whole(&name, Value::Array(values)))
        .collect()
}

/// A frame's rows as one matrix (`DataFrame.values`).
fn matrix(rows: Vec<Vec<Value>>) -> Value {
    Value::Array(rows.into_iter().map(Value::Array).collect())
}

/// The column of each graph input, cells to be reshaped per row; other columns are ignored.
fn frame_columns(
    inputs: &[TensorDesc],
    columns: &[String],
    rows: Vec<Vec<Value>>,
) -> Result<Vec<Feed>, protocol::BadRequest> {
    let mut feeds = frame_scalar_columns(inputs, columns, rows)?;
    for feed in &mut feeds {
        feed.reshape = true;
    }
    Ok(feeds)
}

/// The column named after each graph input, as it is (`data[name].values`).
fn frame_scalar_columns(
    inputs: &[TensorDesc],
    columns: &[String],
    rows: Vec<Vec<Value>>,
) -> Result<Vec<Feed>, protocol::BadRequest> {
    let mut indices = Vec::with_capacity(inputs.len());
    for input in inputs {
        match columns.iter().position(|c| *c == input.name) {
            Some(index) => indices.push((input.name.as_str(), index)),
            None => {
                let names: Vec<&str> = inputs.iter().map(|i| i.name.as_str()).collect();
                return Err(protocol::BadRequest::invalid(format!(
                    "missing input '{}'; a data frame for this model has a column per input {names:?} and a row per example (the request has columns {columns:?})",
                    input.name
                )));
            }
        }
    }
    Ok(indices
        .into_iter()
        .map(|(name, index)| {
            let cells = rows
                .iter()
                .map(|row| row.get(index).cloned().unwrap_or(Value::Null))
                .collect();
            Feed::whole(name, Value::Array(cells))
        })
        .collect())
}

/// Gives each row of a data-frame column (a scalar or a flat list) the input's dimensions
/// after the batch one, as MLflow does (`_reshape_and_cast_pandas_column_values`: stack the
/// rows, reshape to `(-1, fixed dims...)`). Rows whose length does not fit are refused, and so
/// are cells holding nested lists (MLflow accepts only scalars and lists of scalars there).
fn reshape_rows(column: Value, shape: &[i64]) -> Result<Value, String> {
    let Value::Array(rows) = column else {
        return Ok(column);
    };
    let Some(row_shape) = shape
        .get(1..)
        .filter(|dims| dims.iter().all(|&d| d >= 0))
        .map(|dims| dims.iter().map(|&d| d as usize).collect::<Vec<_>>())
    else {
        return Ok(Value::Array(rows));
    };
    let per_row: usize = row_shape.iter().product();
    rows.into_iter()
        .enumerate()
        .map(|(index, row)| {
            let cells = match row {
                Value::Array(items) if items.iter().any(Value::is_array) => {
                    return Err(format!(
                        "row {index} holds nested lists; a data-frame cell is a number or a flat list of numbers (send {{\"inputs\": ...}} for nested tensors)"
                    ))
                }
                Value::Array(items) => items,
                scalar => vec![scalar],
            };
            if cells.len() != per_row {
                return Err(format!(
                    "row {index} has {} values; each row must have {per_row} to fit the shape {shape:?}",
                    cells.len()
                ));
            }
            Ok(nest(&row_shape, &cells))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

/// Zero-filled inputs with every dynamic dimension set to 1, for warm-up.
pub fn zeros_like_inputs(model: &Model) -> Vec<NamedTensor> {
    model
        .inputs
        .iter()
        .map(|input| {
            let shape: Vec<usize> = input
                .shape
                .iter()
                .map(|&d| if d < 0 { 1 } else { d as usize })
                .collect();
            let count = shape.iter().product();
            let data = input
                .dtype
                .served()
                .and_then(|element| Values::zeros(element, count))
                .unwrap_or_else(|| Values::Fp32(vec![0.0; count]));
            NamedTensor {
                name: input.name.clone(),
                shape,
                data,
            }
        })
        .collect()
}

/// Runs the session and returns every output that is a tensor of a supported type.
pub fn run(
    model: &Model,
    session: &mut Session,
    inputs: Vec<NamedTensor>,
) -> Result<Vec<NamedTensor>, InferError> {
    let values: Vec<(String, SessionInputValue<'_>)> = inputs
        .into_iter()
        .map(|t| {
            let value: SessionInputValue<'_> = match t.data {
                Values::Fp32(v) => Tensor::from_array((t.shape, v))?.into(),
                Values::Fp64(v) => Tensor::from_array((t.shape, v))?.into(),
                Values::Int64(v) => Tensor::from_array((t.shape, v))?.into(),
                Values::Int32(v) => Tensor::from_array((t.shape, v))?.into(),
                Values::Int8(v) => Tensor::from_array((t.shape, v))?.into(),
                Values::Uint8(v) => Tensor::from_array((t.shape, v))?.into(),
                Values::Bool(v) => Tensor::from_array((t.shape, v))?.into(),
                Values::Fp16(v) => {
                    let v: Vec<half::f16> = v.into_iter().map(half::f16::from_bits).collect();
                    Tensor::from_array((t.shape, v))?.into()
                }
                Values::Bytes(_) => {
                    return Err(InferError::Runtime(format!(
                        "input '{}' is text (BYTES); the graph takes numbers",
                        t.name
                    )))
                }
            };
            Ok((t.name, value))
        })
        .collect::<Result<_, InferError>>()?;
    let outputs = session.run(values)?;
    let mut result = Vec::new();
    for desc in &model.outputs {
        let Some(value) = outputs.get(&desc.name) else {
            continue;
        };
        let ty = match value.dtype() {
            ValueType::Tensor { ty, .. } => *ty,
            _ => continue,
        };
        let (shape, data) = match ty {
            TensorElementType::Float32 => {
                let (s, d) = value.try_extract_tensor::<f32>()?;
                (s.to_vec(), Values::Fp32(d.to_vec()))
            }
            TensorElementType::Float64 => {
                let (s, d) = value.try_extract_tensor::<f64>()?;
                (s.to_vec(), Values::Fp64(d.to_vec()))
            }
            TensorElementType::Int64 => {
                let (s, d) = value.try_extract_tensor::<i64>()?;
                (s.to_vec(), Values::Int64(d.to_vec()))
            }
            TensorElementType::Int32 => {
                let (s, d) = value.try_extract_tensor::<i32>()?;
                (s.to_vec(), Values::Int32(d.to_vec()))
            }
            TensorElementType::Int8 => {
                let (s, d) = value.try_extract_tensor::<i8>()?;
                (s.to_vec(), Values::Int8(d.to_vec()))
            }
            TensorElementType::Uint8 => {
                let (s, d) = value.try_extract_tensor::<u8>()?;
                (s.to_vec(), Values::Uint8(d.to_vec()))
            }
            TensorElementType::Bool => {
                let (s, d) = value.try_extract_tensor::<bool>()?;
                (s.to_vec(), Values::Bool(d.to_vec()))
            }
            TensorElementType::Float16 => {
                let (s, d) = value.try_extract_tensor::<half::f16>()?;
                (
                    s.to_vec(),
                    Values::Fp16(d.iter().map(|x| x.to_bits()).collect()),
                )
            }
            _ => continue,
        };
        result.push(NamedTensor {
            name: desc.name.clone(),
            shape: shape.into_iter().map(|d| d.max(0) as usize).collect(),
            data,
        });
    }
    Ok(result)
}

/// The `predictions` of an answer, shaped as `mlflow models serve` shapes it (see [`Reply`]).
/// A records answer needs every output to flatten to the same length, as pandas does when
/// MLflow builds the data frame; otherwise the request is refused, naming the lengths.
pub fn to_predictions(
    outputs: &[NamedTensor],
    reply: Reply,
) -> Result<Value, protocol::BadRequest> {
    match reply {
        Reply::Tensors => Ok(Value::Object(
            outputs
                .iter()
                .map(|t| (t.name.clone(), nest(&t.shape, &t.data.to_json())))
                .collect(),
        )),
        Reply::Records => {
            let columns: Vec<(&str, Vec<Value>)> = outputs
                .iter()
                .map(|t| (t.name.as_str(), t.data.to_json()))
                .collect();
            let length = columns.first().map_or(0, |(_, values)| values.len());
            if columns.iter().any(|(_, values)| values.len() != length) {
                let lengths: Vec<String> = columns
                    .iter()
                    .map(|(name, values)| format!("{name}: {}", values.len()))
                    .collect();
                return Err(protocol::BadRequest::invalid(format!(
                    "a data frame answer has one value of each output per record, but the outputs flatten to different lengths ({}); send {{\"inputs\": {{...}}}} to get every output whole",
                    lengths.join(", ")
                )));
            }
            Ok(Value::Array(
                (0..length)
                    .map(|row| {
                        Value::Object(
                            columns
                                .iter()
                                .map(|(name, values)| (name.to_string(), values[row].clone()))
                                .collect(),
                        )
                    })
                    .collect(),
            ))
        }
    }
}

fn nest(shape: &[usize], flat: &[Value]) -> Value {
    match shape {
        [] => flat.first().cloned().unwrap_or(Value::Null),
        [_] => Value::Array(flat.to_vec()),
        [first, rest @ ..] => {
            let stride: usize = rest.iter().product();
            Value::Array(
                (0..*first)
                    .map(|i| nest(rest, flat.get(i * stride..(i + 1) * stride).unwrap_or(&[])))
                    .collect(),
            )
        }
    }
}

/// A rectangular nested list of numbers -> (shape, row-major values).
fn flatten(value: &Value) -> Result<(Vec<usize>, Vec<f64>), String> {
    fn walk(
        value: &Value,
        depth: usize,
        shape: &mut Vec<usize>,
        out: &mut Vec<f64>,
    ) -> Result<(), String> {
        match value {
            Value::Array(items) => {
                if depth > 8 {
                    return Err("nested more than 8 levels deep".into());
                }
                if shape.len() == depth {
                    // A new dimension after numbers were read: a list where a sibling was a
                    // number (`[1, []]`), which would give a shape that lies about the values.
                    if !out.is_empty() {
                        return Err("mixes numbers and lists at the same level".into());
                    }
                    shape.push(items.len());
                } else if shape.get(depth) != Some(&items.len()) {
                    return Err(
                        "rows have different lengths (the tensor must be rectangular)".into(),
                    );
                }
                items
                    .iter()
                    .try_for_each(|item| walk(item, depth + 1, shape, out))
            }
            Value::Number(n) => {
                if shape.len() != depth {
                    return Err("mixes numbers and lists at the same level".into());
                }
                out.push(n.as_f64().ok_or("a number out of range")?);
                Ok(())
            }
            other => Err(format!("expected numbers, found {}", protocol::kind(other))),
        }
    }
    let mut shape = Vec::new();
    let mut out = Vec::new();
    walk(value, 0, &mut shape, &mut out)?;
    Ok((shape, out))
}

fn integers(values: &[f64]) -> Result<Vec<i64>, String> {
    values
        .iter()
        .map(|&v| {
            if v.fract() == 0.0 && v.abs() < 9.0e15 {
                Ok(v as i64)
            } else {
                Err(format!("{v} is not an integer"))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn flatten_shapes() {
        let cases = [
            (
                json!([[1, 2], [3, 4]]),
                Ok((vec![2, 2], vec![1.0, 2.0, 3.0, 4.0])),
            ),
            (json!([1.5]), Ok((vec![1], vec![1.5]))),
            (json!([]), Ok((vec![0], vec![]))),
            (
                json!([[1], [2, 3]]),
                Err("rows have different lengths (the tensor must be rectangular)".to_string()),
            ),
            (
                json!([[1], 2]),
                Err("mixes numbers and lists at the same level".to_string()),
            ),
            // Found by fuzz/ (target `request`): an empty list after a number used to
            // pass with shape [2, 0] and one value.
            (
                json!([1, []]),
                Err("mixes numbers and lists at the same level".to_string()),
            ),
            (
                json!([[1], [[]]]),
                Err("mixes numbers and lists at the same level".to_string()),
            ),
            (
                json!(["a"]),
                Err("expected numbers, found a string".to_string()),
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(flatten(&input), expected, "{input}");
        }
    }

    #[test]
    fn nest_round_trips() {
        let flat: Vec<Value> = (0..6).map(Value::from).collect();
        assert_eq!(nest(&[2, 3], &flat), json!([[0, 1, 2], [3, 4, 5]]));
        assert_eq!(nest(&[6], &flat), json!([0, 1, 2, 3, 4, 5]));
    }

    #[test]
    fn data_frame_cells_take_the_input_dimensions() {
        let check = |column: Value, shape: &[i64], expected: Result<Value, &str>| {
            let got = reshape_rows(column.clone(), shape);
            match expected {
                Ok(want) => assert_eq!(got, Ok(want), "{column} to {shape:?}"),
                Err(fragment) => assert!(
                    got.as_ref().is_err_and(|e| e.contains(fragment)),
                    "{column} to {shape:?}: {got:?}"
                ),
            }
        };
        check(json!([3, -2]), &[-1, 1], Ok(json!([[3], [-2]])));
        check(json!([3, -2]), &[-1], Ok(json!([3, -2])));
        check(
            json!([[1, 2], [3, 4]]),
            &[-1, 2],
            Ok(json!([[1, 2], [3, 4]])),
        );
        check(
            json!([[[1, 2], [3, 4]]]),
            &[-1, 4],
            Err("row 0 holds nested lists"),
        );
        check(
            json!([[1, 2, 3, 4]]),
            &[-1, 2, 2],
            Ok(json!([[[1, 2], [3, 4]]])),
        );
        // A dynamic dimension after the batch one: the cells stay as they are.
        check(json!([[1, 2, 3]]), &[-1, -1], Ok(json!([[1, 2, 3]])));
        check(
            json!([[1, 2, 3]]),
            &[-1, 4],
            Err("row 0 has 3 values; each row must have 4"),
        );
        check(
            json!([5]),
            &[-1, 2],
            Err("row 0 has 1 values; each row must have 2"),
        );
    }

    #[test]
    fn instances_records_become_columns() {
        let feeds = records_to_columns(vec![json!({"a": [1, 2], "b": 3}), json!({"b": 4})]);
        let columns: Vec<(String, Value)> = feeds.into_iter().map(|f| (f.name, f.value)).collect();
        assert_eq!(
            columns,
            vec![
                ("a".to_string(), json!([[1, 2], null])),
                ("b".to_string(), json!([3, 4])),
            ]
        );
    }

    #[test]
    fn answers_take_mlflow_shapes() {
        let outputs = [
            NamedTensor {
                name: "sum".into(),
                shape: vec![2, 2],
                data: Values::Fp32(vec![1.0, 2.0, 3.0, 4.0]),
            },
            NamedTensor {
                name: "twice".into(),
                shape: vec![2, 1],
                data: Values::Int64(vec![6, -4]),
            },
        ];
        assert_eq!(
            to_predictions(&outputs, Reply::Tensors),
            Ok(json!({"sum": [[1.0, 2.0], [3.0, 4.0]], "twice": [[6], [-4]]}))
        );
        assert_eq!(
            to_predictions(&outputs[..1], Reply::Records),
            Ok(json!([{"sum": 1.0}, {"sum": 2.0}, {"sum": 3.0}, {"sum": 4.0}]))
        );
        assert_eq!(
            to_predictions(&outputs[..1], Reply::Tensors),
            Ok(json!({"sum": [[1.0, 2.0], [3.0, 4.0]]}))
        );
        let err = to_predictions(&outputs, Reply::Records).unwrap_err();
        assert!(
            err.message.contains("(sum: 4, twice: 2)"),
            "{}",
            err.message
        );
    }

    #[test]
    fn integers_must_be_whole() {
        assert_eq!(integers(&[1.0, -2.0]), Ok(vec![1, -2]));
        assert!(integers(&[1.5]).is_err());
    }
}
