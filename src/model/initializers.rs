//! The weights of an optimized graph, read once into ONNX Runtime tensors that every session of
//! the model is given as *shared initializers* (ONNX Runtime's `AddInitializer`).
//!
//! ONNX Runtime saves the optimized graph as a small `.onnx` file whose large initializers live
//! in one external data file (`session.optimized_model_external_initializers_file_name`). This
//! module reads the graph's top-level initializer list (names, types, shapes, and where each one
//! lies in the data file) and copies each numeric one into a tensor over a buffer of ours.
//! Shared initializers are what ONNX Runtime shares prepacked weights for: with one
//! `PrepackedWeightsContainer` per model, every session reuses the first one's prepacked copy.
//!
//! Only the few fields needed are decoded from `onnx.proto` (`onnx_proto.rs`). An initializer of another type (strings, booleans, sub-byte types) or inline is
//! not shared: ONNX Runtime reads it from the files as for any model.

use std::fmt::Debug;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

use ort::value::{DynValue, PrimitiveTensorElementType, Tensor, TensorElementType};
use prost::Message;

use super::onnx_proto::{ModelProto, TensorProto};

/// One initializer to share: its name in the graph and its tensor, which every session holds.
pub struct Initializer {
    pub name: String,
    pub value: Arc<DynValue>,
}

/// Reads the external initializers of the graph at `onnx_path` (its data files are resolved
/// next to it, as ONNX Runtime resolves them) into tensors. The error says what is wrong.
pub fn read(onnx_path: &Path) -> Result<Vec<Initializer>, String> {
    let bytes = std::fs::read(onnx_path)
        .map_err(|err| format!("cannot read {}: {err}", onnx_path.display()))?;
    let model = ModelProto::decode(bytes.as_slice())
        .map_err(|err| format!("{} is not an ONNX model: {err}", onnx_path.display()))?;
    let dir = onnx_path.parent().unwrap_or(Path::new("."));
    let mut files: Vec<(String, File)> = Vec::new();
    let mut shared = Vec::new();
    for tensor in model.graph.map(|g| g.initializer).unwrap_or_default() {
        let Some(located) = Located::of(&tensor)? else {
            continue;
        };
        let file = match files.iter_mut().position(|(name, _)| *name == located.file) {
            Some(at) => &mut files[at].1,
            None => {
                // Only a plain file name next to the graph: never a path out of the scratch
                // directory ONNX Runtime wrote it in.
                if Path::new(&located.file).file_name() != Some(located.file.as_ref()) {
                    return Err(format!("{}: data file {:?}", tensor.name, located.file));
                }
                let path = dir.join(&located.file);
                let file = File::open(&path)
                    .map_err(|err| format!("cannot open {}: {err}", path.display()))?;
                files.push((located.file.clone(), file));
                &mut files.last_mut().expect("just pushed").1
            }
        };
        let value = located
            .read(file)
            .map_err(|err| format!("initializer {}: {err}", tensor.name))?;
        shared.push(Initializer {
            name: tensor.name,
            value: Arc::new(value),
        });
    }
    Ok(shared)
}

/// An external initializer of a type ONNX Runtime can be handed as a plain buffer.
struct Located {
    element: TensorElementType,
    dims: Vec<i64>,
    file: String,
    offset: u64,
    length: usize,
}

impl Located {
    /// `None` for an initializer that is not shared (inline, or of a type kept out).
    fn of(tensor: &TensorProto) -> Result<Option<Located>, String> {
        let Some(element) = element_type(tensor.data_type) else {
            return Ok(None);
        };
        if tensor.data_location != 1 {
            return Ok(None);
        }
        let entry = |key: &str| {
            tensor
                .external_data
                .iter()
                .find(|entry| entry.key == key)
                .map(|entry| entry.value.as_str())
        };
        let number = |key: &str| -> Result<Option<u64>, String> {
            entry(key)
                .map(|value| {
                    value
                        .parse::<u64>()
                        .map_err(|_| format!("{}: external data {key} {value:?}", tensor.name))
                })
                .transpose()
        };
        let file = entry("location")
            .ok_or_else(|| format!("{}: external data without a location", tensor.name))?;
        let elements = tensor.dims.iter().try_fold(1usize, |count, &dim| {
            usize::try_from(dim)
                .ok()
                .and_then(|dim| count.checked_mul(dim))
        });
        let expected = elements
            .and_then(|count| element.byte_size(count))
            .ok_or_else(|| format!("{}: shape {:?}", tensor.name, tensor.dims))?;
        let length = number("length")?.map_or(Ok(expected), |length| {
            usize::try_from(length).map_err(|_| format!("{}: length {length}", tensor.name))
        })?;
        if length != expected {
            return Err(format!(
                "{}: {length} bytes of data for shape {:?} of {element:?}",
                tensor.name, tensor.dims
            ));
        }
        Ok(Some(Located {
            element,
            dims: tensor.dims.clone(),
            file: file.to_owned(),
            offset: number("offset")?.unwrap_or(0),
            length,
        }))
    }

    /// A tensor over a buffer of ours, filled from `file` (ONNX Runtime takes as shared
    /// initializers only tensors whose buffer the caller owns).
    fn read(&self, file: &mut File) -> Result<DynValue, String> {
        match self.element {
            TensorElementType::Float32 => self.read_as::<f32>(file),
            TensorElementType::Uint8 => self.read_as::<u8>(file),
            TensorElementType::Int8 => self.read_as::<i8>(file),
            TensorElementType::Uint16 => self.read_as::<u16>(file),
            TensorElementType::Int16 => self.read_as::<i16>(file),
            TensorElementType::Int32 => self.read_as::<i32>(file),
            TensorElementType::Int64 => self.read_as::<i64>(file),
            TensorElementType::Float16 => self.read_as::<half::f16>(file),
            TensorElementType::Float64 => self.read_as::<f64>(file),
            TensorElementType::Uint32 => self.read_as::<u32>(file),
            TensorElementType::Uint64 => self.read_as::<u64>(file),
            TensorElementType::Bfloat16 => self.read_as::<half::bf16>(file),
            other => Err(format!("{other:?} is not read as a shared initializer")),
        }
    }

    /// [`Located::read`] for one element type: `T` must be a plain number type, for which
    /// every bit pattern is a value (so not `bool`).
    fn read_as<T>(&self, file: &mut File) -> Result<DynValue, String>
    where
        T: PrimitiveTensorElementType + Copy + Default + Debug + 'static,
    {
        let mut data = vec![T::default(); self.length / std::mem::size_of::<T>()];
        // SAFETY: `data` owns `length` initialized bytes (`of` checked `length` against the
        // shape and element size), `T` is a plain number type whose every bit pattern is a
        // value, and this byte view is dropped before `data` is used again.
        let bytes =
            unsafe { std::slice::from_raw_parts_mut(data.as_mut_ptr().cast::<u8>(), self.length) };
        file.seek(SeekFrom::Start(self.offset))
            .and_then(|_| file.read_exact(bytes))
            .map_err(|err| format!("reading {} bytes at {}: {err}", self.length, self.offset))?;
        Tensor::from_array((self.dims.clone(), data))
            .map(|tensor| tensor.into_dyn())
            .map_err(|err| err.to_string())
    }
}

/// The element type of ONNX's `TensorProto.DataType` code, for the types stored as plain
/// little-endian arrays; `None` for the others (strings, booleans, sub-byte and 8-bit float
/// types), and for every type on a big-endian machine.
fn element_type(code: i32) -> Option<TensorElementType> {
    if cfg!(target_endian = "big") {
        return None;
    }
    Some(match code {
        1 => TensorElementType::Float32,
        2 => TensorElementType::Uint8,
        3 => TensorElementType::Int8,
        4 => TensorElementType::Uint16,
        5 => TensorElementType::Int16,
        6 => TensorElementType::Int32,
        7 => TensorElementType::Int64,
        10 => TensorElementType::Float16,
        11 => TensorElementType::Float64,
        12 => TensorElementType::Uint32,
        13 => TensorElementType::Uint64,
        16 => TensorElementType::Bfloat16,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::onnx_proto::StringStringEntryProto;

    fn external(name: &str, data_type: i32, dims: &[i64], entries: &[(&str, &str)]) -> TensorProto {
        TensorProto {
            dims: dims.to_vec(),
            data_type,
            name: name.into(),
            external_data: entries
                .iter()
                .map(|(key, value)| StringStringEntryProto {
                    key: (*key).into(),
                    value: (*value).into(),
                })
                .collect(),
            data_location: 1,
        }
    }

    #[test]
    fn an_external_initializer_is_located_and_checked_against_its_shape() {
        let located = Located::of(&external(
            "w",
            1,
            &[2, 3],
            &[("location", "w.bin"), ("offset", "64"), ("length", "24")],
        ))
        .unwrap()
        .expect("shared");
        assert_eq!(
            (located.file.as_str(), located.offset, located.length),
            ("w.bin", 64, 24)
        );

        let wrong_length = external("w", 1, &[2, 3], &[("location", "w.bin"), ("length", "20")]);
        assert!(Located::of(&wrong_length).is_err());
        let no_location = external("w", 1, &[2], &[("offset", "0")]);
        assert!(Located::of(&no_location).is_err());
        let negative = external("w", 1, &[-1], &[("location", "w.bin")]);
        assert!(Located::of(&negative).is_err());
    }

    #[test]
    fn inline_and_string_initializers_are_not_shared() {
        let mut inline = external("w", 1, &[2], &[]);
        inline.data_location = 0;
        assert!(Located::of(&inline).unwrap().is_none());
        let strings = external("s", 8, &[2], &[("location", "w.bin")]);
        assert!(Located::of(&strings).unwrap().is_none());
    }
}
