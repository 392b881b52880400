//! The `MLmodel` file: the parts of MLflow's model description that hotserve reads. Parsing is
//! pure (text in, struct out) so it is unit-tested against files as MLflow 2.x and 3.x write them.

use serde::Deserialize;

/// What hotserve needs from an `MLmodel` file.
#[derive(Clone, Debug, Default)]
pub struct MlModel {
    /// The `onnx` flavor's `data`: the ONNX file, relative to the model directory.
    pub onnx_file: String,
    /// `onnx_version` of the flavor, when present.
    pub onnx_version: Option<String>,
    /// `mlflow_version` that wrote the file.
    pub mlflow_version: Option<String>,
    /// MLflow 3 logged-model id (`model_id`), when present.
    pub model_id: Option<String>,
    /// `run_id`, when present.
    pub run_id: Option<String>,
    /// The signature, with MLflow's JSON-in-YAML strings decoded.
    pub signature: Option<Signature>,
    /// `saved_input_example_info.serving_input_path` (MLflow >= 2.15), else None.
    pub serving_input_path: Option<String>,
    /// `metadata.labels`.
    pub labels: Option<Vec<String>>,
    /// `metadata.tokenizer`: the tokenizer file relative to the model directory.
    pub tokenizer: Option<String>,
    /// `metadata.golden`: examples a version must classify correctly before it may go live.
    pub golden: Vec<GoldenExample>,
    /// `metadata.max_sequence_length`.
    pub max_sequence_length: Option<usize>,
    /// `metadata.output_type`: `logits` or `probabilities`; guessed from the output when absent.
    pub output_type: Option<String>,
    /// The whole `metadata` mapping, for `/v1/model`.
    pub metadata: serde_json::Value,
}

/// A model signature: input and output schemas as MLflow writes them (JSON lists).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Signature {
    pub inputs: serde_json::Value,
    pub outputs: serde_json::Value,
    pub params: serde_json::Value,
}

/// One `metadata.golden` entry.
#[derive(Clone, Debug, Deserialize, serde::Serialize, PartialEq)]
pub struct GoldenExample {
    pub text: String,
    pub label: String,
}

/// Why an `MLmodel` file was rejected.
#[derive(Debug, thiserror::Error)]
pub enum MlModelError {
    #[error("is not valid YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("has no onnx flavor (flavors: {0}); hotserve serves models saved with mlflow.onnx")]
    NoOnnxFlavor(String),
    #[error("onnx flavor has no 'data' naming the ONNX file")]
    NoOnnxData,
    #[error("{field} is malformed: {why}")]
    Malformed { field: &'static str, why: String },
    /// Brackets nested deeper than any MLmodel needs. The YAML scanner takes time quadratic in
    /// the nesting of flow collections (`[[[[...`: 40,000 levels take seconds, a megabyte of
    /// them most of an hour), so such a file is refused before it is parsed.
    #[error("nests [ ] or {{ }} {depth} levels deep (at most {MAX_FLOW_DEPTH}); this is not an MLmodel file that MLflow writes")]
    TooDeep { depth: usize },
}

/// The deepest nesting of flow collections (`[...]`, `{...}`) accepted in an MLmodel file.
/// MLflow writes two or three levels.
const MAX_FLOW_DEPTH: usize = 64;

/// Checks that flow collections nest at most [`MAX_FLOW_DEPTH`] deep, in one linear pass that
/// skips quoted scalars and comments (MLflow keeps JSON signatures in quoted strings). A quote
/// opens a scalar only where a node can begin (after `:`, `-`, `[`, `{`, `,`, `?` or at the
/// start of a line), as in YAML; elsewhere (`don't`) it is an ordinary character.
fn check_nesting(text: &str) -> Result<(), MlModelError> {
    let mut depth = 0usize;
    // The last character that is not a space on this line (`None`: only spaces so far), and
    // the character just before the current one.
    let mut last: Option<char> = None;
    let mut previous = '\n';
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let node_start = matches!(last, None | Some(':' | '-' | '[' | '{' | ',' | '?'));
        let after_space = previous.is_whitespace();
        previous = c;
        match c {
            '\n' => {
                last = None;
                continue;
            }
            ' ' | '\t' | '\r' => continue,
            '#' if after_space => {
                for inner in chars.by_ref() {
                    if inner == '\n' {
                        break;
                    }
                }
                last = None;
                previous = '\n';
                continue;
            }
            '\'' if node_start => {
                // '' inside a single-quoted scalar is an escaped quote.
                while let Some(inner) = chars.next() {
                    if inner == '\'' {
                        if chars.peek() == Some(&'\'') {
                            chars.next();
                        } else {
                            break;
                        }
                    }
                }
            }
            '"' if node_start => {
                while let Some(inner) = chars.next() {
                    match inner {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
            }
            '[' | '{' => {
                depth += 1;
                if depth > MAX_FLOW_DEPTH {
                    return Err(MlModelError::TooDeep { depth });
                }
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        last = Some(c);
    }
    Ok(())
}

#[derive(Deserialize)]
struct RawMlModel {
    #[serde(default)]
    flavors: serde_yaml::Mapping,
    mlflow_version: Option<String>,
    model_id: Option<String>,
    run_id: Option<String>,
    signature: Option<RawSignature>,
    saved_input_example_info: Option<RawInputExample>,
    metadata: Option<serde_yaml::Value>,
}

#[derive(Deserialize)]
struct RawSignature {
    inputs: Option<String>,
    outputs: Option<String>,
    params: Option<String>,
}

#[derive(Deserialize)]
struct RawInputExample {
    serving_input_path: Option<String>,
}

#[derive(Deserialize)]
struct RawOnnxFlavor {
    data: Option<String>,
    /// A string as MLflow writes it, but YAML may read `1.19` as a number.
    onnx_version: Option<serde_yaml::Value>,
}

#[derive(Deserialize, Default)]
struct RawMetadata {
    labels: Option<Vec<String>>,
    tokenizer: Option<String>,
    #[serde(default)]
    golden: Vec<GoldenExample>,
    max_sequence_length: Option<usize>,
    output_type: Option<String>,
}

impl MlModel {
    /// Parses the text of an `MLmodel` file.
    pub fn parse(text: &str) -> Result<MlModel, MlModelError> {
        check_nesting(text)?;
        let raw: RawMlModel = serde_yaml::from_str(text)?;
        let onnx = raw.flavors.get("onnx").cloned().ok_or_else(|| {
            let names: Vec<String> = raw
                .flavors
                .keys()
                .filter_map(|k| k.as_str().map(str::to_string))
                .collect();
            MlModelError::NoOnnxFlavor(if names.is_empty() {
                "none".into()
            } else {
                names.join(", ")
            })
        })?;
        let onnx: RawOnnxFlavor =
            serde_yaml::from_value(onnx).map_err(|err| MlModelError::Malformed {
                field: "flavors.onnx",
                why: err.to_string(),
            })?;
        let onnx_file = onnx.data.ok_or(MlModelError::NoOnnxData)?;

        let metadata_value = raw.metadata.unwrap_or(serde_yaml::Value::Null);
        let metadata: RawMetadata = if metadata_value.is_null() {
            RawMetadata::default()
        } else {
            serde_yaml::from_value(metadata_value.clone()).map_err(|err| {
                MlModelError::Malformed {
                    field: "metadata",
                    why: err.to_string(),
                }
            })?
        };
        if let Some(output_type) = &metadata.output_type {
            if output_type != "logits" && output_type != "probabilities" {
                return Err(MlModelError::Malformed {
                    field: "metadata.output_type",
                    why: format!("'{output_type}' is neither logits nor probabilities"),
                });
            }
        }
        let signature = raw
            .signature
            .map(|s| -> Result<Signature, MlModelError> {
                Ok(Signature {
                    inputs: decode_schema("signature.inputs", s.inputs)?,
                    outputs: decode_schema("signature.outputs", s.outputs)?,
                    params: decode_schema("signature.params", s.params)?,
                })
            })
            .transpose()?;
        Ok(MlModel {
            onnx_file,
            onnx_version: onnx.onnx_version.map(|v| match v {
                serde_yaml::Value::String(s) => s,
                other => serde_yaml::to_string(&other)
                    .unwrap_or_default()
                    .trim()
                    .to_string(),
            }),
            mlflow_version: raw.mlflow_version,
            model_id: raw.model_id,
            run_id: raw.run_id,
            signature,
            serving_input_path: raw
                .saved_input_example_info
                .and_then(|i| i.serving_input_path),
            labels: metadata.labels,
            tokenizer: metadata.tokenizer,
            golden: metadata.golden,
            max_sequence_length: metadata.max_sequence_length,
            output_type: metadata.output_type,
            metadata: serde_json::to_value(&metadata_value).unwrap_or(serde_json::Value::Null),
        })
    }
}

/// MLflow stores each schema as a JSON string inside the YAML.
fn decode_schema(
    field: &'static str,
    text: Option<String>,
) -> Result<serde_json::Value, MlModelError> {
    match text {
        None => Ok(serde_json::Value::Null),
        Some(text) if text.trim() == "null" => Ok(serde_json::Value::Null),
        Some(text) => serde_json::from_str(&text).map_err(|err| MlModelError::Malformed {
            field,
            why: err.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn nesting_is_bounded_before_parsing() {
        let check = |text: &str, deep: bool| {
            let result = check_nesting(text);
            assert_eq!(result.is_err(), deep, "{text:?}: {result:?}");
        };
        let brackets = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        check(&format!("a: {}", brackets(64)), false);
        check(&format!("a: {}", brackets(65)), true);
        check(&format!("a: '{}'", "[".repeat(1000)), false);
        check(&format!("a: \"{}\"", "{".repeat(1000)), false);
        check(&format!("a: \"\\\"{}\"", "[".repeat(1000)), false);
        check(&format!("a: 'it''s {}'", "[".repeat(1000)), false);
        check(&format!("# {}\na: 1", "[".repeat(1000)), false);
        check(&format!("a: 1 # {}", "[".repeat(1000)), false);
        // A quote inside a plain scalar opens nothing, so it cannot hide what follows.
        check(&format!("a: don't\nb: {}", "[".repeat(1000)), true);
        check(&format!("a: x#y{}", "[".repeat(1000)), true);
        check(&format!("- [{}", "{".repeat(100)), true);
    }

    #[test]
    fn the_fixture_mlmodels_are_not_too_deep() {
        for fixture in ["sentiment", "sentiment_v2", "tensor_model"] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures")
                .join(fixture)
                .join("MLmodel");
            let text = std::fs::read_to_string(&path).unwrap();
            check_nesting(&text).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        }
    }
    use super::*;

    /// An MLmodel as `mlflow.onnx.log_model` in MLflow 3 writes it, plus hotserve metadata.
    const MLFLOW3: &str = r#"
artifact_path: /tmp/mlruns/1/models/m-0b7d2c5e/artifacts
flavors:
  onnx:
    code: null
    data: model.onnx
    onnx_version: 1.19.0
    providers:
    - CUDAExecutionProvider
    - CPUExecutionProvider
  python_function:
    data: model.onnx
    env:
      conda: conda.yaml
      virtualenv: python_env.yaml
    loader_module: mlflow.onnx
    python_version: 3.11.7
is_signature_from_type_hint: false
metadata:
  labels:
  - NEGATIVE
  - POSITIVE
  tokenizer: tokenizer.json
  golden:
  - text: I love this
    label: POSITIVE
mlflow_version: 3.4.0
model_id: m-0b7d2c5e
model_size_bytes: 12345
model_uuid: m-0b7d2c5e
prompts: null
run_id: 5f0c3b
saved_input_example_info:
  artifact_path: input_example.json
  serving_input_path: serving_input_example.json
  type: dataframe
  pandas_orient: split
signature:
  inputs: '[{"type": "string", "name": "text", "required": true}]'
  outputs: '[{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 2]}, "name": "logits"}]'
  params: null
type_hint_from_example: false
utc_time_created: '2025-09-01 12:00:00.000000'
"#;

    #[test]
    fn parses_mlflow3_onnx_model() {
        let model = MlModel::parse(MLFLOW3).unwrap();
        assert_eq!(model.onnx_file, "model.onnx");
        assert_eq!(model.model_id.as_deref(), Some("m-0b7d2c5e"));
        assert_eq!(
            model.labels,
            Some(vec!["NEGATIVE".into(), "POSITIVE".into()])
        );
        assert_eq!(model.tokenizer.as_deref(), Some("tokenizer.json"));
        assert_eq!(
            model.serving_input_path.as_deref(),
            Some("serving_input_example.json")
        );
        assert_eq!(
            model.golden,
            vec![GoldenExample {
                text: "I love this".into(),
                label: "POSITIVE".into()
            }]
        );
        let signature = model.signature.unwrap();
        assert_eq!(signature.inputs[0]["name"], "text");
        assert!(signature.params.is_null());
    }

    #[test]
    fn minimal_model_without_metadata() {
        let model = MlModel::parse("flavors:\n  onnx:\n    data: m.onnx\n").unwrap();
        assert_eq!(model.onnx_file, "m.onnx");
        assert!(model.labels.is_none() && model.golden.is_empty() && model.signature.is_none());
    }

    fn check_error(text: &str, expected: &str) {
        let err = MlModel::parse(text).unwrap_err().to_string();
        assert!(
            err.contains(expected),
            "{err:?} should contain {expected:?}"
        );
    }

    #[test]
    fn rejections() {
        check_error(
            "flavors:\n  sklearn:\n    pickled_model: m.pkl\n",
            "has no onnx flavor (flavors: sklearn)",
        );
        check_error("flavors: {}\n", "has no onnx flavor (flavors: none)");
        check_error("flavors:\n  onnx:\n    onnx_version: 1.19\n", "no 'data'");
        check_error("flavors: [", "not valid YAML");
        check_error(
            "flavors:\n  onnx:\n    data: m.onnx\nmetadata:\n  labels: 3\n",
            "metadata is malformed",
        );
        check_error(
            "flavors:\n  onnx:\n    data: m.onnx\nmetadata:\n  output_type: odds\n",
            "neither logits",
        );
        check_error(
            "flavors:\n  onnx:\n    data: m.onnx\nsignature:\n  inputs: '[{'\n",
            "signature.inputs is malformed",
        );
    }
}
