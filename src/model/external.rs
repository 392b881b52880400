//! The files an ONNX graph keeps its weights in (external data: `model.onnx` plus a `*.data`
//! file, as `mlflow.onnx.save_model` writes large models), read from the graph itself: the
//! `location` of every initializer stored outside it, in the main graph and in the graphs of
//! control-flow nodes. A zip bundle extracts exactly these beside the graph (`bundle.rs`).
//!
//! Only the fields needed are decoded from `onnx.proto` (`onnx_proto.rs`).

use prost::Message;

#[cfg(test)]
use super::onnx_proto::{AttributeProto, NodeProto, StringStringEntryProto};
use super::onnx_proto::{GraphProto, ModelProto, TensorProto};

/// The data files the graph in `onnx` names, relative to it, each once, in the order first
/// named; the error says why the bytes are not an ONNX model.
pub fn external_files(onnx: &[u8]) -> Result<Vec<String>, String> {
    let model = ModelProto::decode(onnx).map_err(|err| format!("not an ONNX model: {err}"))?;
    let mut files = Vec::new();
    if let Some(graph) = &model.graph {
        collect(graph, &mut files);
    }
    Ok(files)
}

fn collect(graph: &GraphProto, files: &mut Vec<String>) {
    let tensor = |tensor: &TensorProto, files: &mut Vec<String>| {
        for entry in &tensor.external_data {
            if entry.key == "location" && !files.contains(&entry.value) {
                files.push(entry.value.clone());
            }
        }
    };
    for initializer in &graph.initializer {
        tensor(initializer, files);
    }
    for node in &graph.node {
        for attribute in &node.attribute {
            for t in attribute.t.iter().chain(&attribute.tensors) {
                tensor(t, files);
            }
            for g in attribute.g.iter().map(|g| &**g).chain(&attribute.graphs) {
                collect(g, files);
            }
        }
    }
}

/// A graph whose initializers keep their data at `locations`: a test's input.
#[cfg(test)]
pub(crate) fn graph_with_external_data(locations: &[&str]) -> Vec<u8> {
    let initializer = locations
        .iter()
        .map(|location| tests::external(location))
        .collect();
    let graph = GraphProto {
        node: vec![],
        initializer,
    };
    ModelProto { graph: Some(graph) }.encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn external(location: &str) -> TensorProto {
        TensorProto {
            external_data: vec![
                StringStringEntryProto {
                    key: "location".into(),
                    value: location.into(),
                },
                StringStringEntryProto {
                    key: "offset".into(),
                    value: "0".into(),
                },
            ],
            ..TensorProto::default()
        }
    }

    #[test]
    fn every_location_once_in_graphs_and_subgraphs() {
        let branch = GraphProto {
            node: vec![],
            initializer: vec![external("weights.data"), external("branch.data")],
        };
        let model = ModelProto {
            graph: Some(GraphProto {
                node: vec![NodeProto {
                    attribute: vec![AttributeProto {
                        t: Some(external("const.data")),
                        g: Some(Box::new(branch)),
                        tensors: vec![],
                        graphs: vec![],
                    }],
                }],
                initializer: vec![external("weights.data"), TensorProto::default()],
            }),
        };
        assert_eq!(
            external_files(&model.encode_to_vec()).unwrap(),
            ["weights.data", "const.data", "branch.data"]
        );
        assert_eq!(external_files(&[]).unwrap(), Vec::<String>::new());
        assert!(external_files(b"not a graph at all")
            .unwrap_err()
            .starts_with("not an ONNX model"));
    }
}
