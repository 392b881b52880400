//! The validation gate: turns a model directory into a [`Model`] or says exactly which file is
//! wrong and why. Shared by startup, `hotserve validate` and the reload pipeline, so a version
//! that would fail here never goes live.
//!
//! Steps: parse `MLmodel` -> find the ONNX file (external data next to it) -> build one ONNX
//! Runtime session per inference worker, on one shared copy of the weights (`sessions.rs`), on
//! the first of `execution_providers` that starts (`providers.rs`) -> find the tokenizer -> check the graph's inputs and outputs -> read labels -> warm up on the saved input example -> classify the golden examples.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use ort::session::Session;
use ort::value::{TensorElementType, ValueType};

use super::element::{ElementType, GraphType};
use super::error::{GoldenMiss, ModelError};
use super::mlmodel::MlModel;
use super::providers::{self, ExecutionProviders};
use super::runtime;
use super::sessions::SessionOptions;
use super::wordpiece::{self, FastBert};
use super::{argmax, FileDigest, Model, ModelInfo, Task, TensorDesc, TextTask};
use crate::files::{self, combined_digest};
use crate::protocol;

/// How to load a model; the identity fields come from the registry (or the directory name).
#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub name: String,
    /// `None`: use a digest prefix (local models).
    pub version: Option<String>,
    pub source: String,
    pub aliases: Vec<String>,
    pub model_id: Option<String>,
    pub run_id: Option<String>,
    /// Digests recorded while downloading; computed from the files when `None`.
    pub digests: Option<Vec<FileDigest>>,
    pub ort_dylib_path: Option<PathBuf>,
    /// Intra-op threads per session (0: ONNX Runtime's default).
    pub intra_op_threads: usize,
    /// Sessions to build (one per inference worker).
    pub sessions: usize,
    /// Build the sessions on one shared optimized copy of the weights (falls back to one copy
    /// per session, with a log line, for a graph whose optimized copy cannot be saved or loaded).
    pub share_weights: bool,
    /// Let the workers' sessions prepack weights for their kernels (see `sessions`).
    pub prepack_weights: bool,
    /// Intra-op threads of the extra all-cores session a lone batch runs on (0: none; see
    /// `Config::all_cores_threads`).
    pub all_cores_threads: usize,
    /// Tokens kept per text; 0 = `metadata.max_sequence_length` or 512.
    pub max_sequence_length: usize,
    /// Where the sessions run, in order of preference (`providers.rs`).
    pub execution_providers: ExecutionProviders,
    /// Where the optimized graph is kept for the next load of the same files (a cached
    /// version's directory; `None`: not kept).
    pub keep_optimized: Option<PathBuf>,
}

/// The largest files the gate reads whole, so that a hostile model cannot make it allocate
/// without bound: MLmodel and `config.json` are a few KiB in practice, input examples a few
/// KiB to MiB, tokenizers up to tens of MiB (large multilingual vocabularies).
pub(super) const MAX_MLMODEL_BYTES: u64 = 1 << 20;
const MAX_CONFIG_BYTES: u64 = 1 << 20;
const MAX_EXAMPLE_BYTES: u64 = 16 << 20;
const MAX_TOKENIZER_BYTES: u64 = 256 << 20;

/// Reads a whole file of at most `limit` bytes (checked before and while reading).
pub(super) fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, std::io::Error> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let too_large = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {limit} bytes, the most hotserve reads for this file"),
        )
    };
    if file.metadata()?.len() > limit {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_large());
    }
    Ok(bytes)
}

/// Loads and validates the model in `dir`. Blocking: call from a blocking thread.
pub fn load(dir: &Path, options: &LoadOptions) -> Result<Model, ModelError> {
    let mlmodel_path = dir.join("MLmodel");
    let text = read_bounded(&mlmodel_path, MAX_MLMODEL_BYTES)
        .and_then(|bytes| {
            String::from_utf8(bytes)
                .map_err(|err| std::io::Error::new(std::io::ErrorKind::InvalidData, err))
        })
        .map_err(|err| match ModelError::read(&mlmodel_path, err) {
            ModelError::File { path, why } => ModelError::File {
                path,
                why: format!("{why}; a model directory must contain an MLmodel file as mlflow.onnx.save_model writes it"),
            },
            other => other,
        })?;
    let mlmodel = MlModel::parse(&text).map_err(|source| ModelError::MlModel {
        path: mlmodel_path.clone(),
        source,
    })?;

    let onnx_path = named_path(dir, "flavors.onnx.data", &mlmodel.onnx_file)?;
    if !onnx_path.is_file() {
        return Err(ModelError::file(
            &onnx_path,
            "named by flavors.onnx.data in MLmodel but missing",
        ));
    }
    let runtime = runtime::init(options.ort_dylib_path.as_deref())?;
    let session_options = SessionOptions {
        count: options.sessions,
        intra_op_threads: options.intra_op_threads,
        share_weights: options.share_weights,
        prepack_weights: options.prepack_weights,
        all_cores_threads: options.all_cores_threads,
        keep_optimized: options.keep_optimized.clone(),
    };
    let (mut sessions, execution_providers) = providers::build(
        &runtime.environment,
        &onnx_path,
        &session_options,
        &options.execution_providers,
    )?;
    let first = sessions.first();
    let inputs = describe(first.inputs());
    let outputs = describe(first.outputs());

    let tokenizer_path = find_tokenizer(dir, &mlmodel)?;
    let task = match tokenizer_path {
        Some(path) => Task::Text(Box::new(text_task(
            dir, &path, &onnx_path, &mlmodel, first, options,
        )?)),
        None => {
            if inputs.iter().any(|i| i.name == "input_ids") {
                return Err(ModelError::file(
                    dir,
                    "the graph takes input_ids but there is no tokenizer.json (looked at metadata.tokenizer, tokenizer.json and tokenizer/tokenizer.json)",
                ));
            }
            Task::Tensor
        }
    };

    let digests = match &options.digests {
        Some(digests) => digests.clone(),
        None => files::digest_dir(dir)?,
    };
    let digest = combined_digest(&digests);
    let version = options
        .version
        .clone()
        .unwrap_or_else(|| format!("local-{}", &digest[..12]));
    let model = Model {
        info: ModelInfo {
            name: options.name.clone(),
            version,
            source: options.source.clone(),
            dir: dir.to_path_buf(),
            aliases: options.aliases.clone(),
            model_id: options.model_id.clone().or(mlmodel.model_id.clone()),
            run_id: options.run_id.clone().or(mlmodel.run_id.clone()),
            digests,
            digest,
            loaded_at: SystemTime::now(),
            pointer_target: None,
        },
        mlmodel,
        inputs,
        outputs,
        task,
        sessions,
        execution_providers,
    };
    warm_up(&model, dir)?;
    check_golden(&model)?;
    Ok(model)
}

fn describe(outlets: &[ort::value::Outlet]) -> Vec<TensorDesc> {
    outlets
        .iter()
        .map(|outlet| match outlet.dtype() {
            ValueType::Tensor { ty, shape, .. } => TensorDesc {
                name: outlet.name().to_string(),
                dtype: match ElementType::of_onnx(*ty) {
                    Some(element) => GraphType::Served(element),
                    None => GraphType::Unserved(unserved_name(*ty).to_string()),
                },
                shape: shape.to_vec(),
            },
            other => TensorDesc {
                name: outlet.name().to_string(),
                dtype: GraphType::Unserved(format!("{other:?}")),
                shape: Vec::new(),
            },
        })
        .collect()
}

/// The numpy-style name of an element type hotserve does not serve, as MLflow signatures
/// spell it.
fn unserved_name(ty: TensorElementType) -> &'static str {
    match ty {
        TensorElementType::Int16 => "int16",
        TensorElementType::Uint16 => "uint16",
        TensorElementType::Uint32 => "uint32",
        TensorElementType::Uint64 => "uint64",
        TensorElementType::String => "string",
        TensorElementType::Bfloat16 => "bfloat16",
        _ => "other",
    }
}

/// `metadata.tokenizer`, else `tokenizer.json`, else `tokenizer/tokenizer.json`.
fn find_tokenizer(dir: &Path, mlmodel: &MlModel) -> Result<Option<PathBuf>, ModelError> {
    if let Some(named) = &mlmodel.tokenizer {
        let path = named_path(dir, "metadata.tokenizer", named)?;
        return if path.is_file() {
            Ok(Some(path))
        } else {
            Err(ModelError::file(
                &path,
                "named by metadata.tokenizer in MLmodel but missing",
            ))
        };
    }
    Ok(["tokenizer.json", "tokenizer/tokenizer.json"]
        .iter()
        .map(|candidate| dir.join(candidate))
        .find(|path| path.is_file()))
}

fn text_task(
    dir: &Path,
    tokenizer_path: &Path,
    onnx_path: &Path,
    mlmodel: &MlModel,
    session: &Session,
    options: &LoadOptions,
) -> Result<TextTask, ModelError> {
    let graph_error = |why: String| ModelError::Graph {
        path: onnx_path.to_path_buf(),
        why,
    };
    let tokenizer_bytes = read_bounded(tokenizer_path, MAX_TOKENIZER_BYTES)
        .map_err(|err| ModelError::read(tokenizer_path, err))?;
    let mut tokenizer = parse_tokenizer(tokenizer_path, tokenizer_bytes)?;
    let max_len = match options.max_sequence_length {
        0 => mlmodel.max_sequence_length.unwrap_or(512),
        n => n,
    }
    .max(2);
    // Each batch is padded to its own longest text (never to a fixed length, whatever the
    // file says), and the tokenizer truncates so special tokens such as [SEP] survive.
    tokenizer.with_padding(None);
    tokenizer
        .with_truncation(Some(tokenizers::TruncationParams {
            max_length: max_len,
            ..Default::default()
        }))
        .map_err(|err| ModelError::file(tokenizer_path, err))?;
    let pad_id = tokenizer
        .get_padding()
        .map(|p| p.pad_id)
        .or_else(|| tokenizer.token_to_id("[PAD]"))
        .or_else(|| tokenizer.token_to_id("<pad>"))
        .unwrap_or(0);

    let mut ids_type = None;
    let mut uses_token_type_ids = false;
    let mut has_mask = false;
    for input in session.inputs() {
        let ty = match input.dtype() {
            ValueType::Tensor { ty, shape, .. } if shape.len() == 2 => *ty,
            other => {
                return Err(graph_error(format!(
                "input '{}' is {other:?}; text inputs must be [batch, sequence] integer tensors",
                input.name()
            )))
            }
        };
        if ty != TensorElementType::Int64 && ty != TensorElementType::Int32 {
            return Err(graph_error(format!(
                "input '{}' is {}; expected int64 (or int32)",
                input.name(),
                ElementType::of_onnx(ty).map_or(unserved_name(ty), ElementType::numpy_name)
            )));
        }
        match input.name() {
            "input_ids" => ids_type = Some(ty),
            "attention_mask" => has_mask = true,
            "token_type_ids" => uses_token_type_ids = true,
            other => {
                return Err(graph_error(format!(
                    "unexpected input '{other}'; a text model takes input_ids, attention_mask and optionally token_type_ids"
                )))
            }
        }
    }
    let Some(ids_type) = ids_type else {
        return Err(graph_error("no input named input_ids".into()));
    };
    if !has_mask {
        return Err(graph_error("no input named attention_mask".into()));
    }

    let preferred = ["logits", "probabilities", "probs", "scores", "output"];
    let outputs = session.outputs();
    let output = preferred
        .iter()
        .find_map(|name| outputs.iter().find(|o| o.name() == *name))
        .or_else(|| outputs.first())
        .ok_or_else(|| graph_error("the graph has no outputs".into()))?;
    let width = match output.dtype() {
        ValueType::Tensor {
            ty: TensorElementType::Float32,
            shape,
            ..
        } if shape.len() == 2 => shape[1],
        other => {
            return Err(graph_error(format!(
                "output '{}' is {other:?}; expected float32 [batch, num_labels]",
                output.name()
            )))
        }
    };
    let output_is_logits = match mlmodel.output_type.as_deref() {
        Some("probabilities") => false,
        Some(_) => true,
        None => !output.name().starts_with("prob"),
    };

    let labels = match &mlmodel.labels {
        Some(labels) => labels.clone(),
        None => labels_from_config(dir)?
            .unwrap_or_else(|| (0..width.max(0)).map(|i| format!("LABEL_{i}")).collect()),
    };
    if labels.len() < 2 {
        return Err(ModelError::file(
            &dir.join("MLmodel"),
            format!(
                "{} labels; a classifier needs at least 2 (set metadata.labels, or the graph's output needs a fixed width)",
                labels.len()
            ),
        ));
    }
    if width > 0 && width as usize != labels.len() {
        return Err(graph_error(format!(
            "output '{}' has {width} columns but MLmodel lists {} labels",
            output.name(),
            labels.len()
        )));
    }
    let fast = fast_path(&tokenizer, mlmodel);
    Ok(TextTask {
        tokenizer,
        fast,
        labels,
        max_len,
        uses_token_type_ids,
        ids_are_i32: ids_type == TensorElementType::Int32,
        output: output.name().to_string(),
        output_is_logits,
        pad_id,
    })
}

/// The fast BERT tokenizer ([`wordpiece`]) for `tokenizer`, when it has that shape and gives
/// the same ids as `tokenizer` on the golden examples and [`wordpiece::CHECK_TEXTS`]; a model
/// whose tokenizer disagrees keeps only `tokenizers` (cheap insurance against a difference the
/// shape check missed).
fn fast_path(tokenizer: &tokenizers::Tokenizer, mlmodel: &MlModel) -> Option<FastBert> {
    let fast = FastBert::from_tokenizer(tokenizer)?;
    let texts = mlmodel.golden.iter().map(|g| g.text.as_str());
    match texts
        .chain(wordpiece::CHECK_TEXTS.iter().copied())
        .find(|text| !fast.agrees_with(tokenizer, text))
    {
        None => Some(fast),
        Some(text) => {
            tracing::info!(
                text,
                "the fast BERT tokenizer disagrees with tokenizers on this text; using tokenizers only"
            );
            None
        }
    }
}

/// Labels from a Hugging Face `config.json` `id2label`, when present.
fn labels_from_config(dir: &Path) -> Result<Option<Vec<String>>, ModelError> {
    let path = dir.join("config.json");
    let bytes = match read_bounded(&path, MAX_CONFIG_BYTES) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(ModelError::read(&path, err)),
    };
    let text = String::from_utf8_lossy(&bytes);
    let config: serde_json::Value = serde_json::from_str(&text)
        .map_err(|err| ModelError::file(&path, format!("not valid JSON: {err}")))?;
    let Some(map) = config.get("id2label").and_then(|m| m.as_object()) else {
        return Ok(None);
    };
    let mut pairs = Vec::new();
    for (id, label) in map {
        let id: usize = id
            .parse()
            .map_err(|_| ModelError::file(&path, format!("id2label key '{id}' is not a number")))?;
        let label = label
            .as_str()
            .ok_or_else(|| ModelError::file(&path, format!("id2label[{id}] is not a string")))?;
        pairs.push((id, label.to_string()));
    }
    pairs.sort();
    if pairs.iter().enumerate().any(|(i, (id, _))| i != *id) {
        return Err(ModelError::file(
            &path,
            "id2label ids must be 0..N without gaps",
        ));
    }
    Ok(Some(pairs.into_iter().map(|(_, label)| label).collect()))
}

/// Runs the saved input example (or a fixed sentence / zeros) and checks the output.
fn warm_up(model: &Model, dir: &Path) -> Result<(), ModelError> {
    let example = match &model.mlmodel.serving_input_path {
        Some(name) => {
            let path = named_path(dir, "serving_input_path", name)?;
            match read_bounded(&path, MAX_EXAMPLE_BYTES) {
                Ok(bytes) => Some(
                    protocol::parse_invocation(&bytes, protocol::ContentType::Json).map_err(
                        |err| {
                            ModelError::file(
                                &path,
                                format!("cannot be parsed as a scoring request: {err}"),
                            )
                        },
                    )?,
                ),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
                Err(err) => return Err(ModelError::read(&path, err)),
            }
        }
        None => None,
    };
    match &model.task {
        Task::Text(task) => {
            // A text model's example may hold texts, or (as MLflow saves it for ONNX graphs)
            // token tensors; only texts can be replayed through the tokenizer.
            let texts = match example.map(|request| request.texts()) {
                Some(Ok(texts)) if !texts.is_empty() => texts,
                _ => vec!["hotserve warm-up".to_string()],
            };
            let encoded = texts
                .iter()
                .map(|t| model.encode(t))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ModelError::Warmup(e.to_string()))?;
            let refs: Vec<_> = encoded.iter().collect();
            for slot in model.slots() {
                let scores = model
                    .classify(slot, &refs)
                    .map_err(|e| ModelError::Warmup(e.to_string()))?;
                if scores.len() != texts.len()
                    || scores.iter().any(|s| s.0.len() != task.labels.len())
                {
                    return Err(ModelError::Warmup("the output has the wrong shape".into()));
                }
                if scores.iter().flat_map(|s| &s.0).any(|p| !p.is_finite()) {
                    return Err(ModelError::Warmup(
                        "the output holds NaN or infinite values".into(),
                    ));
                }
            }
            Ok(())
        }
        Task::Tensor => {
            let tensors = match example {
                Some(request) => super::tensor::from_request(model, request)
                    .map_err(|e| ModelError::Warmup(format!("serving input example: {e}")))?,
                None => super::tensor::zeros_like_inputs(model),
            };
            for slot in model.slots() {
                let outputs = model
                    .run_tensors(slot, tensors.clone())
                    .map_err(|e| ModelError::Warmup(e.to_string()))?;
                if outputs.iter().any(|t| !t.data.all_finite()) {
                    return Err(ModelError::Warmup(
                        "the output holds NaN or infinite values".into(),
                    ));
                }
            }
            Ok(())
        }
    }
}

/// Every `metadata.golden` example must get its label.
fn check_golden(model: &Model) -> Result<(), ModelError> {
    let golden = &model.mlmodel.golden;
    if golden.is_empty() {
        return Ok(());
    }
    let unchecked = |why: String| ModelError::GoldenUnchecked { why };
    let Some(task) = model.text() else {
        return Err(unchecked(
            "golden examples need a text model with a tokenizer; remove metadata.golden from \
             a tensor model"
                .into(),
        ));
    };
    let encoded = golden
        .iter()
        .map(|g| model.encode(&g.text))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| unchecked(e.to_string()))?;
    let refs: Vec<_> = encoded.iter().collect();
    let scores = model
        .classify(0, &refs)
        .map_err(|e| unchecked(e.to_string()))?;
    let misses: Vec<GoldenMiss> = golden
        .iter()
        .zip(&scores)
        .filter_map(|(example, scores)| {
            let (best, probability) = argmax(&scores.0);
            let got = &task.labels[best];
            (got != &example.label).then(|| GoldenMiss {
                text: example.text.clone(),
                expected: example.label.clone(),
                got: got.clone(),
                probability,
            })
        })
        .collect();
    if misses.is_empty() {
        Ok(())
    } else {
        Err(ModelError::Golden { misses })
    }
}

/// Parses a `tokenizer.json`. The tokenizers crate panics on some malformed files (an
/// `expect` in its decoder deserializer, found by `fuzz/`, target `tokenizer`), so a panic is
/// a refusal like any other parse error.
fn parse_tokenizer(path: &Path, bytes: Vec<u8>) -> Result<tokenizers::Tokenizer, ModelError> {
    let refuse =
        |why: String| ModelError::file(path, format!("not a Hugging Face tokenizer.json: {why}"));
    match std::panic::catch_unwind(|| tokenizers::Tokenizer::from_bytes(bytes)) {
        Ok(Ok(tokenizer)) => Ok(tokenizer),
        Ok(Err(err)) => Err(refuse(err.to_string())),
        Err(_) => Err(refuse(
            "the tokenizers library could not read it (it panicked); re-save it with \
             tokenizer.save_pretrained()"
                .into(),
        )),
    }
}

/// `dir/relative` for a path that `MLmodel` names in `field`; it must stay inside `dir`.
fn named_path(dir: &Path, field: &str, relative: &str) -> Result<PathBuf, ModelError> {
    // People write `./tokenizer.json` in hand-edited MLmodel files; it means the same file.
    files::confine(relative.strip_prefix("./").unwrap_or(relative))
        .map(|inside| dir.join(inside))
        .map_err(|why| {
            ModelError::file(
                &dir.join("MLmodel"),
                format!(
                    "{field} '{relative}' is not a plain path inside the model directory \
                     ({why}); name the file relative to MLmodel, e.g. model.onnx"
                ),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_named_in_mlmodel_stay_inside() {
        let check = |relative: &str, expected: Result<&str, &str>| match (
            named_path(Path::new("/m"), "metadata.tokenizer", relative),
            expected,
        ) {
            (Ok(got), Ok(want)) => assert_eq!(got, PathBuf::from(want), "{relative:?}"),
            (Err(err), Err(want)) => assert_eq!(err.to_string(), want, "{relative:?}"),
            (got, want) => panic!("{relative:?}: got {got:?}, expected {want:?}"),
        };
        check("model.onnx", Ok("/m/model.onnx"));
        check("tok/tokenizer.json", Ok("/m/tok/tokenizer.json"));
        check(
            "../tokenizer.json",
            Err(
                "/m/MLmodel: metadata.tokenizer '../tokenizer.json' is not a plain path inside \
                 the model directory ('..' segments are not allowed); name the file relative to \
                 MLmodel, e.g. model.onnx",
            ),
        );
        check("./tokenizer.json", Ok("/m/tokenizer.json"));
        check(
            "tok/./tokenizer.json",
            Err(
                "/m/MLmodel: metadata.tokenizer 'tok/./tokenizer.json' is not a plain path \
                 inside the model directory ('.' segments are not allowed); name the file \
                 relative to MLmodel, e.g. model.onnx",
            ),
        );
        check(
            "/etc/passwd",
            Err(
                "/m/MLmodel: metadata.tokenizer '/etc/passwd' is not a plain path inside the \
                 model directory (absolute paths are not allowed); name the file relative to \
                 MLmodel, e.g. model.onnx",
            ),
        );
    }

    #[test]
    fn tokenizers_that_panic_the_parser_are_refused() {
        // Found by fuzz/ (target `tokenizer`): a malformed `decoder` made tokenizers panic.
        let path = Path::new("/m/tokenizer.json");
        for text in [
            r#"{"model": {"type": "WordLevel", "vocab": {}, "unk_token": "x"}, "decoder": 1}"#,
            include_str!("../../tests/fixtures/fuzz/tokenizer-decoder-panic.json"),
        ] {
            let err = parse_tokenizer(path, text.as_bytes().to_vec()).unwrap_err();
            assert!(
                err.to_string()
                    .contains("not a Hugging Face tokenizer.json"),
                "{err}"
            );
        }
    }

    #[test]
    fn golden_failures_name_each_example_and_what_to_do() {
        let miss = |text: &str, expected: &str, got: &str, probability: f32| GoldenMiss {
            text: text.into(),
            expected: expected.into(),
            got: got.into(),
            probability,
        };
        let err = ModelError::Golden {
            misses: vec![
                miss("great film", "POSITIVE", "NEGATIVE", 0.9123),
                miss("awful", "NEGATIVE", "POSITIVE", 0.6),
            ],
        };
        assert_eq!(
            err.to_string(),
            "golden examples failed (metadata.golden in MLmodel): 'great film' expected \
             POSITIVE but got NEGATIVE (0.912); 'awful' expected NEGATIVE but got POSITIVE \
             (0.600); this version does not classify its own examples as its author required, \
             so it was not loaded: retrain or fix the model, or correct metadata.golden if the \
             examples are wrong"
        );
        let err = ModelError::GoldenUnchecked {
            why: "cannot tokenize text: x".into(),
        };
        assert_eq!(
            err.to_string(),
            "golden examples could not be checked (metadata.golden in MLmodel): cannot \
             tokenize text: x"
        );
    }
}
