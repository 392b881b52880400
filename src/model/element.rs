//! Tensor element types ([`ElementType`]) and row-major values ([`Values`]): one set for every
//! place that handles tensors (the graph's inputs and outputs, `/invocations`, the Open
//! Inference Protocol over REST and gRPC, shadow comparisons), with their names in each
//! vocabulary (numpy-style, the protocol's), their raw little-endian form and JSON.

use ort::value::TensorElementType;
use serde_json::Value;

/// A tensor element type: what a graph declares (in the numpy-style names of MLflow
/// signatures and `/v1/model`: `float32`, ...), what the Open Inference Protocol names
/// (`FP32`, ...), and `BYTES` for the protocol's text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElementType {
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

impl ElementType {
    /// Every datatype, for messages and tests.
    pub const ALL: [ElementType; 9] = [
        ElementType::Bool,
        ElementType::Uint8,
        ElementType::Int8,
        ElementType::Int32,
        ElementType::Int64,
        ElementType::Fp16,
        ElementType::Fp32,
        ElementType::Fp64,
        ElementType::Bytes,
    ];

    /// The Open Inference Protocol's name: "BOOL", "UINT8", ..., "BYTES".
    pub fn oip_name(self) -> &'static str {
        match self {
            ElementType::Bool => "BOOL",
            ElementType::Uint8 => "UINT8",
            ElementType::Int8 => "INT8",
            ElementType::Int32 => "INT32",
            ElementType::Int64 => "INT64",
            ElementType::Fp16 => "FP16",
            ElementType::Fp32 => "FP32",
            ElementType::Fp64 => "FP64",
            ElementType::Bytes => "BYTES",
        }
    }

    /// The element type of an exact upper-case protocol name.
    pub fn from_oip_name(s: &str) -> Option<ElementType> {
        ElementType::ALL.into_iter().find(|d| d.oip_name() == s)
    }

    /// Bytes per element; `None` for BYTES (variable length).
    pub fn size(self) -> Option<usize> {
        match self {
            ElementType::Bool | ElementType::Uint8 | ElementType::Int8 => Some(1),
            ElementType::Fp16 => Some(2),
            ElementType::Int32 | ElementType::Fp32 => Some(4),
            ElementType::Int64 | ElementType::Fp64 => Some(8),
            ElementType::Bytes => None,
        }
    }

    /// The numpy-style name MLflow signatures and `/v1/model` use: `float32`, ...; `string`
    /// for BYTES.
    pub fn numpy_name(self) -> &'static str {
        match self {
            ElementType::Bool => "bool",
            ElementType::Uint8 => "uint8",
            ElementType::Int8 => "int8",
            ElementType::Int32 => "int32",
            ElementType::Int64 => "int64",
            ElementType::Fp16 => "float16",
            ElementType::Fp32 => "float32",
            ElementType::Fp64 => "float64",
            ElementType::Bytes => "string",
        }
    }

    /// The element type of a graph's tensor, when hotserve serves it (strings and the other
    /// integer and float widths it does not).
    pub fn of_onnx(ty: TensorElementType) -> Option<ElementType> {
        Some(match ty {
            TensorElementType::Bool => ElementType::Bool,
            TensorElementType::Uint8 => ElementType::Uint8,
            TensorElementType::Int8 => ElementType::Int8,
            TensorElementType::Int32 => ElementType::Int32,
            TensorElementType::Int64 => ElementType::Int64,
            TensorElementType::Float16 => ElementType::Fp16,
            TensorElementType::Float32 => ElementType::Fp32,
            TensorElementType::Float64 => ElementType::Fp64,
            _ => return None,
        })
    }
}

/// Row-major values of one element type: what a graph takes and returns, what the protocols
/// carry.
#[derive(Clone, Debug, PartialEq)]
pub enum Values {
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

impl Values {
    pub fn element_type(&self) -> ElementType {
        match self {
            Values::Bool(_) => ElementType::Bool,
            Values::Uint8(_) => ElementType::Uint8,
            Values::Int8(_) => ElementType::Int8,
            Values::Int32(_) => ElementType::Int32,
            Values::Int64(_) => ElementType::Int64,
            Values::Fp16(_) => ElementType::Fp16,
            Values::Fp32(_) => ElementType::Fp32,
            Values::Fp64(_) => ElementType::Fp64,
            Values::Bytes(_) => ElementType::Bytes,
        }
    }

    /// How many elements.
    pub fn len(&self) -> usize {
        match self {
            Values::Bool(v) => v.len(),
            Values::Uint8(v) => v.len(),
            Values::Int8(v) => v.len(),
            Values::Int32(v) => v.len(),
            Values::Int64(v) => v.len(),
            Values::Fp16(v) => v.len(),
            Values::Fp32(v) => v.len(),
            Values::Fp64(v) => v.len(),
            Values::Bytes(v) => v.len(),
        }
    }

    /// No elements at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Zeros (`false`) of `element` (none for BYTES).
    pub fn zeros(element: ElementType, count: usize) -> Option<Values> {
        Some(match element {
            ElementType::Bool => Values::Bool(vec![false; count]),
            ElementType::Uint8 => Values::Uint8(vec![0; count]),
            ElementType::Int8 => Values::Int8(vec![0; count]),
            ElementType::Int32 => Values::Int32(vec![0; count]),
            ElementType::Int64 => Values::Int64(vec![0; count]),
            ElementType::Fp16 => Values::Fp16(vec![0; count]),
            ElementType::Fp32 => Values::Fp32(vec![0.0; count]),
            ElementType::Fp64 => Values::Fp64(vec![0.0; count]),
            ElementType::Bytes => return None,
        })
    }

    /// No NaN or infinity in it.
    pub fn all_finite(&self) -> bool {
        match self {
            Values::Fp32(v) => v.iter().all(|x| x.is_finite()),
            Values::Fp64(v) => v.iter().all(|x| x.is_finite()),
            Values::Fp16(v) => v.iter().all(|&x| half::f16::from_bits(x).is_finite()),
            Values::Bool(_)
            | Values::Uint8(_)
            | Values::Int8(_)
            | Values::Int32(_)
            | Values::Int64(_)
            | Values::Bytes(_) => true,
        }
    }

    /// Every value as JSON (numbers, booleans; text for BYTES, lossily).
    pub fn to_json(&self) -> Vec<Value> {
        fn list<T: Copy>(v: &[T], f: impl Fn(T) -> Value) -> Vec<Value> {
            v.iter().map(|&x| f(x)).collect()
        }
        match self {
            Values::Bool(v) => list(v, Value::from),
            Values::Uint8(v) => list(v, Value::from),
            Values::Int8(v) => list(v, Value::from),
            Values::Int32(v) => list(v, Value::from),
            Values::Int64(v) => list(v, Value::from),
            Values::Fp16(v) => list(v, |x| Value::from(half::f16::from_bits(x).to_f64())),
            Values::Fp32(v) => list(v, |x| Value::from(x as f64)),
            Values::Fp64(v) => list(v, Value::from),
            Values::Bytes(v) => v
                .iter()
                .map(|e| Value::from(String::from_utf8_lossy(e).into_owned()))
                .collect(),
        }
    }

    /// Every number as `f64` (BOOL as 0 and 1); `None` for BYTES.
    pub fn to_f64s(&self) -> Option<Vec<f64>> {
        fn list<T: Copy>(v: &[T], f: impl Fn(T) -> f64) -> Option<Vec<f64>> {
            Some(v.iter().map(|&x| f(x)).collect())
        }
        match self {
            Values::Bool(v) => list(v, |x| f64::from(u8::from(x))),
            Values::Uint8(v) => list(v, f64::from),
            Values::Int8(v) => list(v, f64::from),
            Values::Int32(v) => list(v, f64::from),
            Values::Int64(v) => list(v, |x| x as f64),
            Values::Fp16(v) => list(v, |x| half::f16::from_bits(x).to_f64()),
            Values::Fp32(v) => list(v, f64::from),
            Values::Fp64(v) => Some(v.clone()),
            Values::Bytes(_) => None,
        }
    }

    /// Little-endian raw bytes as Triton's binary extension and gRPC `raw_*_contents` carry
    /// them (BYTES: each element prefixed by its u32 little-endian length).
    pub fn to_raw(&self) -> Vec<u8> {
        fn flat<const N: usize, T: Copy>(v: &[T], le: impl Fn(T) -> [u8; N]) -> Vec<u8> {
            v.iter().flat_map(|&x| le(x)).collect()
        }
        match self {
            Values::Bool(v) => v.iter().map(|&b| u8::from(b)).collect(),
            Values::Uint8(v) => v.clone(),
            Values::Int8(v) => flat(v, i8::to_le_bytes),
            Values::Int32(v) => flat(v, i32::to_le_bytes),
            Values::Int64(v) => flat(v, i64::to_le_bytes),
            Values::Fp16(v) => flat(v, u16::to_le_bytes),
            Values::Fp32(v) => flat(v, f32::to_le_bytes),
            Values::Fp64(v) => flat(v, f64::to_le_bytes),
            Values::Bytes(v) => {
                let mut out = Vec::with_capacity(v.iter().map(|e| e.len() + 4).sum());
                for element in v {
                    out.extend_from_slice(&(element.len() as u32).to_le_bytes());
                    out.extend_from_slice(element);
                }
                out
            }
        }
    }

    /// The inverse of [`Values::to_raw`]; an error names what is wrong (length not a multiple
    /// of the element size, truncated BYTES, a BOOL byte that is neither 0 nor 1).
    pub fn from_raw(datatype: ElementType, raw: &[u8]) -> Result<Values, String> {
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
                    datatype.oip_name()
                ));
            }
        }
        Ok(match datatype {
            ElementType::Bool => Values::Bool(
                raw.iter()
                    .map(|&b| match b {
                        0 => Ok(false),
                        1 => Ok(true),
                        other => Err(format!("a BOOL element is byte {other}; use 0 or 1")),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            ElementType::Uint8 => Values::Uint8(raw.to_vec()),
            ElementType::Int8 => Values::Int8(chunks(raw, i8::from_le_bytes)),
            ElementType::Int32 => Values::Int32(chunks(raw, i32::from_le_bytes)),
            ElementType::Int64 => Values::Int64(chunks(raw, i64::from_le_bytes)),
            ElementType::Fp16 => Values::Fp16(chunks(raw, u16::from_le_bytes)),
            ElementType::Fp32 => Values::Fp32(chunks(raw, f32::from_le_bytes)),
            ElementType::Fp64 => Values::Fp64(chunks(raw, f64::from_le_bytes)),
            ElementType::Bytes => {
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
                Values::Bytes(elements)
            }
        })
    }
}

/// A graph tensor's element type as hotserve sees it: one it serves, or the name of one it
/// does not (`string`, `int16`, a sequence or map, ...), shown as it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GraphType {
    Served(ElementType),
    Unserved(String),
}

impl GraphType {
    /// The element type, when hotserve serves it.
    pub fn served(&self) -> Option<ElementType> {
        match self {
            GraphType::Served(element) => Some(*element),
            GraphType::Unserved(_) => None,
        }
    }

    /// The numpy-style name (`float32`), or the unserved type's own.
    pub fn name(&self) -> &str {
        match self {
            GraphType::Served(element) => element.numpy_name(),
            GraphType::Unserved(name) => name,
        }
    }
}

impl From<&str> for GraphType {
    /// The graph type a numpy-style name names (`float32`: served; `int16`: not).
    fn from(name: &str) -> GraphType {
        let served = ElementType::ALL
            .into_iter()
            .filter(|element| *element != ElementType::Bytes)
            .find(|element| element.numpy_name() == name);
        match served {
            Some(element) => GraphType::Served(element),
            None => GraphType::Unserved(name.to_string()),
        }
    }
}

impl serde::Serialize for GraphType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oip_names_round_trip() {
        for datatype in ElementType::ALL {
            assert_eq!(
                ElementType::from_oip_name(datatype.oip_name()),
                Some(datatype)
            );
        }
        assert_eq!(ElementType::from_oip_name("fp32"), None);
        assert_eq!(ElementType::from_oip_name("FLOAT32"), None);
    }

    #[test]
    #[rustfmt::skip]
    fn raw_round_trips() {
        let check = |data: Values, raw: &[u8]| {
            assert_eq!(data.to_raw(), raw, "{data:?}");
            assert_eq!(Values::from_raw(data.element_type(), raw), Ok(data.clone()), "{data:?}");
        };
        check(Values::Bool(vec![true, false]), &[1, 0]);
        check(Values::Uint8(vec![7, 255]), &[7, 255]);
        check(Values::Int8(vec![-1, 2]), &[255, 2]);
        check(Values::Int32(vec![1, -2]), &[1, 0, 0, 0, 254, 255, 255, 255]);
        check(Values::Int64(vec![258]), &[2, 1, 0, 0, 0, 0, 0, 0]);
        check(Values::Fp16(vec![0x3c00]), &[0x00, 0x3c]);
        check(Values::Fp32(vec![1.0]), &[0, 0, 0x80, 0x3f]);
        check(Values::Fp64(vec![-2.0]), &[0, 0, 0, 0, 0, 0, 0, 0xc0]);
        check(Values::Bytes(vec![b"ab".to_vec(), vec![]]), &[2, 0, 0, 0, b'a', b'b', 0, 0, 0, 0]);
        check(Values::Bytes(vec![]), &[]);
    }

    #[test]
    #[rustfmt::skip]
    fn bad_raw_data_is_named() {
        let check = |datatype: ElementType, raw: &[u8], expected: &str| {
            assert_eq!(Values::from_raw(datatype, raw), Err(expected.to_string()), "{datatype:?}");
        };
        check(ElementType::Fp32, &[0, 0, 0], "3 bytes of FP32 data is not a whole number of 4-byte elements");
        check(ElementType::Bool, &[2], "a BOOL element is byte 2; use 0 or 1");
        check(ElementType::Bytes, &[1, 0], "BYTES element 0 is truncated: 2 bytes left, its length takes 4");
        check(ElementType::Bytes, &[3, 0, 0, 0, b'a'], "BYTES element 0 says 3 bytes but 1 are left");
    }

    #[test]
    fn graph_types_name_themselves() {
        assert_eq!(GraphType::Served(ElementType::Fp32).name(), "float32");
        assert_eq!(GraphType::Unserved("int16".into()).name(), "int16");
        assert_eq!(
            serde_json::to_value(GraphType::Served(ElementType::Int64)).unwrap(),
            serde_json::json!("int64")
        );
        for element in ElementType::ALL {
            let zeros = Values::zeros(element, 2);
            assert_eq!(
                zeros.as_ref().map(Values::element_type),
                (element != ElementType::Bytes).then_some(element)
            );
        }
    }
}
