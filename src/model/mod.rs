//! A loaded, validated model: the ONNX Runtime sessions, the tokenizer, the labels and the
//! facts `/health` and `/v1/model` report. Everything here is blocking and runs on the
//! inference pool or the reload pipeline, never on the async runtime, except the tokenization
//! of a short request (`predict::tokenize`: tens of microseconds at most).
//!
//! - [`mlmodel`] parses the `MLmodel` file.
//! - [`load`] turns a model directory into a [`Model`], running the validation gate.
//! - [`runtime`] finds and loads the ONNX Runtime library.
//! - [`sessions`] builds a model's sessions, one per worker, on one shared copy of the weights.
//! - [`providers`] chooses where they run (`execution_providers`): a GPU, or the CPU, or why not.
//! - [`initializers`] reads the optimized graph's weights into the tensors the sessions share.
//! - [`padding`] cuts a batch of texts of different lengths into padded runs.
//! - [`bundle`] extracts `.zip` bundles safely.
//! - [`tensor`] runs models that take tensors rather than text.
//! - [`rfc3339`] formats the times a model (and the live status) reports.
//! - [`wordpiece`] tokenizes ASCII text for BERT-uncased tokenizers without `tokenizers`' bookkeeping.

pub mod bundle;
pub mod element;
mod error;
pub mod external;
pub mod initializers;
pub mod load;
pub mod mlmodel;
mod onnx_proto;
pub mod padding;
pub mod providers;
pub mod rfc3339;
pub mod runtime;
pub mod sessions;
pub mod tensor;
pub mod wordpiece;

use std::path::PathBuf;
use std::time::SystemTime;

use ort::session::SessionInputValue;
use ort::value::Tensor;
use serde::Serialize;

pub use error::{GoldenMiss, ModelError};
pub use load::{load, LoadOptions};
pub use mlmodel::MlModel;
pub use sessions::Slot;

/// Facts about a model that never change while it is live.
#[derive(Clone, Debug, Serialize)]
pub struct ModelInfo {
    /// Registered model name, or the directory name for local models.
    pub name: String,
    /// Registered version, or a content digest prefix for local models.
    pub version: String,
    /// The URI it was loaded from, as configured.
    pub source: String,
    /// The directory the files live in (in the cache for registry models).
    pub dir: PathBuf,
    /// Aliases pointing at this version when it was resolved.
    pub aliases: Vec<String>,
    /// MLflow 3 logged-model id, when known.
    pub model_id: Option<String>,
    /// Run id, when known.
    pub run_id: Option<String>,
    /// Per-file digests of the model directory.
    pub digests: Vec<FileDigest>,
    /// One digest over all files (sha256 of the sorted per-file list).
    pub digest: String,
    /// When this model finished loading.
    #[serde(with = "rfc3339")]
    pub loaded_at: SystemTime,
    /// For a bucket `MODEL_URI` that is a pointer object: the location it named when this
    /// version was resolved (`s3://models/sentiment/versions/2026-11-29T1700`).
    pub pointer_target: Option<String>,
}

/// The type of [`ModelInfo::digests`], so that users of a model need not import `files`.
pub use crate::files::FileDigest;

/// The shape and type of one graph input or output, for `/v1/model`.
#[derive(Clone, Debug, Serialize)]
pub struct TensorDesc {
    pub name: String,
    pub dtype: element::GraphType,
    pub shape: Vec<i64>,
}

/// A model that passed validation and can serve.
pub struct Model {
    pub info: ModelInfo,
    pub mlmodel: MlModel,
    pub inputs: Vec<TensorDesc>,
    pub outputs: Vec<TensorDesc>,
    pub task: Task,
    /// One session per inference worker (`Session::run` needs exclusive access), and the
    /// all-cores one with `adaptive_pool`, sharing one copy of the weights when they can.
    sessions: sessions::Sessions,
    /// The execution providers the sessions were built with: the device ones that started, or
    /// `[cpu]` (`providers.rs`). Shown in `/health` and `hotserve_model_info`.
    pub execution_providers: Vec<providers::ExecutionProvider>,
}

/// What the model does with its input.
pub enum Task {
    Text(Box<TextTask>),
    Tensor,
}

/// A text classifier: tokenizer in, label probabilities out.
pub struct TextTask {
    pub tokenizer: tokenizers::Tokenizer,
    /// The fast path for BERT-uncased tokenizers ([`wordpiece`]), when this one has that shape
    /// and agreed with `tokenizer` at load; tried first, `tokenizer` when it declines.
    pub fast: Option<wordpiece::FastBert>,
    pub labels: Vec<String>,
    /// Longest token sequence kept per text.
    pub max_len: usize,
    /// The graph wants `token_type_ids` too.
    pub uses_token_type_ids: bool,
    /// Integer type of the id inputs (int64, or int32 for some exports).
    pub ids_are_i32: bool,
    /// The output holding logits or probabilities.
    pub output: String,
    /// Apply softmax to the output (it holds logits).
    pub output_is_logits: bool,
    pub pad_id: u32,
}

/// A tokenized text ready for batching.
#[derive(Clone, Debug)]
pub struct Encoded {
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
}

/// Label probabilities for one text.
#[derive(Clone, Debug, PartialEq)]
pub struct Scores(pub Vec<f32>);

/// Why one inference call failed. Cloned to every request of a batch that failed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum InferError {
    /// The caller's input does not fit the model (a 400).
    #[error("{0}")]
    BadInput(String),
    /// ONNX Runtime failed on input that should have worked (a 500).
    #[error("inference failed: {0}")]
    Runtime(String),
}

impl From<ort::Error> for InferError {
    fn from(err: ort::Error) -> Self {
        InferError::Runtime(err.to_string())
    }
}

impl Model {
    /// The text task, or `None` for tensor models.
    pub fn text(&self) -> Option<&TextTask> {
        match &self.task {
            Task::Text(text) => Some(text),
            Task::Tensor => None,
        }
    }

    /// How many sessions (and so concurrent inference calls) this model has.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Whether `text` takes the fast tokenizer ([`wordpiece`]): microseconds, not tens of them.
    pub fn tokenizes_fast(&self, text: &str) -> bool {
        self.text()
            .and_then(|task| task.fast.as_ref())
            .is_some_and(|fast| fast.accepts(text))
    }

    /// Tokenizes one text, truncated to the model's maximum length. Blocking; cheap for short
    /// texts, which `predict::tokenize` runs on the async runtime (longer ones on the blocking
    /// pool).
    pub fn encode(&self, text: &str) -> Result<Encoded, InferError> {
        let task = self
            .text()
            .ok_or_else(|| InferError::BadInput("this model takes tensors, not text".into()))?;
        let fast = task.fast.as_ref().and_then(|fast| fast.encode(text));
        let (mut ids, mut type_ids) = match fast {
            Some(encoded) => encoded,
            None => {
                let encoding = task
                    .tokenizer
                    .encode_fast(text, true)
                    .map_err(|err| InferError::BadInput(format!("cannot tokenize text: {err}")))?;
                (
                    encoding.get_ids().to_vec(),
                    encoding.get_type_ids().to_vec(),
                )
            }
        };
        if ids.is_empty() {
            // A graph cannot pool an empty sequence; feed one padding token instead.
            ids.push(task.pad_id);
            type_ids.push(0);
        }
        ids.truncate(task.max_len);
        type_ids.truncate(task.max_len);
        Ok(Encoded { ids, type_ids })
    }

    /// Classifies a batch on the session of `slot` and returns probabilities per text, in
    /// order. Texts of very different lengths are run in several padded runs ([`padding`]):
    /// sorted by length, cut where padding would cost more than one more run.
    pub fn classify(
        &self,
        slot: impl Into<Slot>,
        batch: &[&Encoded],
    ) -> Result<Vec<Scores>, InferError> {
        let slot = slot.into();
        let mut order: Vec<usize> = (0..batch.len()).collect();
        order.sort_by_key(|&i| batch[i].ids.len());
        let lengths: Vec<usize> = order.iter().map(|&i| batch[i].ids.len()).collect();
        let ends = padding::plan(&lengths, padding::RUN_OVERHEAD_TOKENS);
        if ends.len() <= 1 {
            return self.classify_padded(slot, batch);
        }
        let mut scores = vec![Scores(Vec::new()); batch.len()];
        let mut start = 0;
        for end in ends {
            let run: Vec<&Encoded> = order[start..end].iter().map(|&i| batch[i]).collect();
            for (&i, score) in order[start..end]
                .iter()
                .zip(self.classify_padded(slot, &run)?)
            {
                scores[i] = score;
            }
            start = end;
        }
        Ok(scores)
    }

    /// Runs one batch padded to its longest text on the session of `slot`.
    fn classify_padded(&self, slot: Slot, batch: &[&Encoded]) -> Result<Vec<Scores>, InferError> {
        let task = self
            .text()
            .ok_or_else(|| InferError::BadInput("this model takes tensors, not text".into()))?;
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let rows = batch.len();
        let width = batch.iter().map(|e| e.ids.len()).max().unwrap_or(1).max(1);
        let mut ids = vec![task.pad_id as i64; rows * width];
        let mut mask = vec![0i64; rows * width];
        let mut type_ids = vec![0i64; rows * width];
        for (row, encoded) in batch.iter().enumerate() {
            let start = row * width;
            for (col, (&id, &type_id)) in encoded.ids.iter().zip(&encoded.type_ids).enumerate() {
                ids[start + col] = id as i64;
                mask[start + col] = 1;
                type_ids[start + col] = type_id as i64;
            }
        }
        let shape = [rows, width];
        let mut inputs: Vec<(&str, SessionInputValue<'_>)> = vec![
            ("input_ids", id_tensor(shape, ids, task.ids_are_i32)?),
            ("attention_mask", id_tensor(shape, mask, task.ids_are_i32)?),
        ];
        if task.uses_token_type_ids {
            inputs.push((
                "token_type_ids",
                id_tensor(shape, type_ids, task.ids_are_i32)?,
            ));
        }
        let mut session = self.sessions.lock(slot);
        let outputs = session.run(inputs)?;
        let output = outputs.get(&task.output).ok_or_else(|| {
            InferError::Runtime(format!("the graph returned no '{}'", task.output))
        })?;
        let (out_shape, values) = output.try_extract_tensor::<f32>()?;
        let labels = task.labels.len();
        if out_shape.len() != 2 || out_shape[0] as usize != rows || out_shape[1] as usize != labels
        {
            return Err(InferError::Runtime(format!(
                "output '{}' has shape {:?}; expected [{rows}, {labels}]",
                task.output,
                &out_shape[..]
            )));
        }
        Ok(values
            .chunks(labels)
            .map(|row| {
                if task.output_is_logits {
                    Scores(softmax(row))
                } else {
                    Scores(row.to_vec())
                }
            })
            .collect())
    }

    /// Runs a tensor model on named inputs, on the session of `slot`.
    pub fn run_tensors(
        &self,
        slot: impl Into<Slot>,
        inputs: Vec<tensor::NamedTensor>,
    ) -> Result<Vec<tensor::NamedTensor>, InferError> {
        tensor::run(self, &mut self.sessions.lock(slot.into()), inputs)
    }

    /// Where this model's weights live: shared by its sessions, or one copy per session.
    pub fn weights_layout(&self) -> sessions::WeightsLayout {
        self.sessions.layout()
    }

    /// Every session's slot: the workers', then the all-cores one if the model has it (the
    /// gate warms each up).
    pub fn slots(&self) -> Vec<Slot> {
        let mut slots: Vec<Slot> = (0..self.sessions.len()).map(Slot::Worker).collect();
        if self.sessions.has_all_cores() {
            slots.push(Slot::AllCores);
        }
        slots
    }

    /// Whether a lone batch can run on an all-cores session (`adaptive_pool`).
    pub fn has_all_cores(&self) -> bool {
        self.sessions.has_all_cores()
    }
}

fn id_tensor(
    shape: [usize; 2],
    values: Vec<i64>,
    as_i32: bool,
) -> Result<SessionInputValue<'static>, InferError> {
    Ok(if as_i32 {
        let values: Vec<i32> = values.into_iter().map(|v| v as i32).collect();
        Tensor::from_array((shape, values))?.into()
    } else {
        Tensor::from_array((shape, values))?.into()
    })
}

/// Index and value of the largest score; the first one on a tie.
pub fn argmax(scores: &[f32]) -> (usize, f32) {
    scores
        .iter()
        .copied()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, p)| {
            if p > best.1 {
                (i, p)
            } else {
                best
            }
        })
}

/// Numerically stable softmax.
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|&x| (x - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_is_stable_and_normalised() {
        let probs = softmax(&[1000.0, 1000.0]);
        assert_eq!(probs, vec![0.5, 0.5]);
        let probs = softmax(&[0.0, (3.0f32).ln()]);
        assert!((probs[1] - 0.75).abs() < 1e-6);
    }

    #[test]
    fn argmax_picks_the_first_largest() {
        let check = |scores: &[f32], expected: (usize, f32)| {
            assert_eq!(argmax(scores), expected, "{scores:?}")
        };
        check(&[0.1, 0.7, 0.2], (1, 0.7));
        check(&[0.5, 0.5], (0, 0.5));
        check(&[-3.0, -1.0], (1, -1.0));
    }
}
