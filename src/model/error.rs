//! Why a model directory was rejected ([`ModelError`]): every message names the file and what
//! is wrong, and [`ModelError::blames_version`] tells a version's own fault from this
//! machine's. Apart from the gate (`load.rs`) so that the sessions (`sessions.rs`) and the gate
//! share it without importing each other.

use std::fmt;
use std::path::{Path, PathBuf};

use super::mlmodel::MlModelError;
use super::runtime::RuntimeError;
use crate::files::DigestError;

/// Why a model directory was rejected. Every message names the file and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file is missing, unreadable or wrong; `why` says which and what to do.
    #[error("{path}: {why}")]
    File { path: PathBuf, why: String },
    /// `MLmodel` does not parse or lacks what a servable model needs.
    #[error("{path}: {source}")]
    MlModel {
        path: PathBuf,
        #[source]
        source: MlModelError,
    },
    /// The ONNX Runtime library cannot be found or loaded.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// ONNX Runtime refused the graph.
    #[error("{path}: ONNX Runtime cannot load the graph: {why}")]
    Session { path: PathBuf, why: String },
    /// None of `execution_providers` can run the graph on this machine, and the list does not
    /// end with `cpu` (`providers.rs`): this machine's fault, not the version's.
    #[error(
        "{path}: cannot run on execution_providers {wanted}: {why}; install the GPU build of \
         ONNX Runtime (scripts/setup.sh gpu) and point ORT_DYLIB_PATH at its \
         libonnxruntime.so, check the device and its driver (nvidia-smi), or end \
         execution_providers with cpu to run on the CPU when the device cannot"
    )]
    Provider {
        path: PathBuf,
        /// The `execution_providers` list, as configured.
        wanted: String,
        /// Each provider that was tried and why it could not start.
        why: String,
    },
    /// The graph's inputs or outputs are not those of a text classifier.
    #[error("{path}: the graph does not fit a text classifier: {why}")]
    Graph { path: PathBuf, why: String },
    /// The model directory could not be read to compute its digest.
    #[error(transparent)]
    Digest(#[from] DigestError),
    /// Inference on the saved input example (or a stand-in) failed or gave unusable output.
    #[error("warm-up inference failed: {0}")]
    Warmup(String),
    /// Some `metadata.golden` examples did not get their label: the model's author said this
    /// version must classify them correctly, so it may not go live.
    #[error(
        "golden examples failed (metadata.golden in MLmodel): {}; this version does not \
         classify its own examples as its author required, so it was not loaded: retrain or \
         fix the model, or correct metadata.golden if the examples are wrong",
        misses.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    )]
    Golden {
        /// Every example that got the wrong label, in `metadata.golden` order.
        misses: Vec<GoldenMiss>,
    },
    /// The golden examples could not be run at all: a tensor model, or inference failed.
    #[error("golden examples could not be checked (metadata.golden in MLmodel): {why}")]
    GoldenUnchecked { why: String },
    /// A file of the model could not be read for a reason of this machine's (permissions, an
    /// I/O error, memory), not because of its content.
    #[error(
        "{path}: cannot be read: {source}; check the permissions and the disk of the model cache"
    )]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One `metadata.golden` example that got the wrong label.
#[derive(Clone, Debug, PartialEq)]
pub struct GoldenMiss {
    /// The example's text.
    pub text: String,
    /// The label `metadata.golden` requires.
    pub expected: String,
    /// The label the model chose.
    pub got: String,
    /// The probability the model gave `got`.
    pub probability: f32,
}

impl fmt::Display for GoldenMiss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "'{}' expected {} but got {} ({:.3})",
            self.text, self.expected, self.got, self.probability
        )
    }
}

impl ModelError {
    pub(super) fn file(path: &Path, why: impl ToString) -> ModelError {
        ModelError::File {
            path: path.to_path_buf(),
            why: why.to_string(),
        }
    }

    /// A failed read of `path`: the version's fault when the file is missing or its content
    /// is wrong (too large, not UTF-8), this machine's otherwise.
    pub(super) fn read(path: &Path, err: std::io::Error) -> ModelError {
        use std::io::ErrorKind;
        match err.kind() {
            ErrorKind::NotFound | ErrorKind::InvalidData | ErrorKind::UnexpectedEof => {
                ModelError::file(path, err)
            }
            _ => ModelError::Io {
                path: path.to_path_buf(),
                source: err,
            },
        }
    }

    /// Names the files under `to` instead of `from`: a local model is checked in its copy in
    /// the cache, and its errors should name the directory the user knows.
    pub fn rebase(&mut self, from: &Path, to: &Path) {
        let path = match self {
            ModelError::File { path, .. }
            | ModelError::MlModel { path, .. }
            | ModelError::Session { path, .. }
            | ModelError::Provider { path, .. }
            | ModelError::Graph { path, .. }
            | ModelError::Io { path, .. } => path,
            ModelError::Digest(err) => &mut err.path,
            ModelError::Runtime(_)
            | ModelError::Warmup(_)
            | ModelError::Golden { .. }
            | ModelError::GoldenUnchecked { .. } => return,
        };
        if let Ok(relative) = path.strip_prefix(from) {
            *path = to.join(relative);
        }
    }

    /// Whether the failure is the version's own (its files, graph, tokenizer, outputs or
    /// golden examples), so that it may never go live and its cached copy may be removed.
    /// False for what is wrong with this machine: the ONNX Runtime library, its execution
    /// providers, reading the disk.
    pub fn blames_version(&self) -> bool {
        match self {
            ModelError::Runtime(_)
            | ModelError::Provider { .. }
            | ModelError::Digest(_)
            | ModelError::Io { .. } => false,
            ModelError::File { .. }
            | ModelError::MlModel { .. }
            | ModelError::Session { .. }
            | ModelError::Graph { .. }
            | ModelError::Warmup(_)
            | ModelError::Golden { .. }
            | ModelError::GoldenUnchecked { .. } => true,
        }
    }
}
