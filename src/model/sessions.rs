//! The ONNX Runtime sessions of one model, one per inference worker, and the one copy of the
//! weights they share. A session per worker is needed (ONNX Runtime's `Run` is not safe to call
//! concurrently on one session), but built from the `.onnx` file each session held its own
//! weights: MiniLM stores int8 weights followed by casts, and constant folding materialises
//! ~88 MB of fp32 weights in every session (191 MiB resident with 1 worker, 484 with 4).
//! So the graph is optimized once, saved in ONNX Runtime's own format, read into one buffer
//! owned here, and every session is built on that buffer without copying its initializers
//! (`session.use_ort_model_bytes_for_initializers`): 4 workers then take what 1 took (192
//! MiB; `bench/memory_workers.sh`). ONNX Runtime's prepacking would give each session its own
//! prepacked copy again, so it is a setting (`prepack_weights`, off: it speeds up a lone
//! request by ~30% but full batches by ~2%). A graph that cannot be saved in that format
//! falls back to one session per worker from the file, as before, with one log line saying
//! why.
//!
//! With `adaptive_pool` a model has one more session on the same weights, whose intra-op
//! threads are every worker's ([`Slot::AllCores`]): the pool runs a batch on it when the batch
//! is the one prediction in progress and no other worker computes, so a lone request gets every core (half the latency
//! of one thread on MiniLM) while under load each worker runs its own one-thread session,
//! which batches better (`queue::runs_on_all_cores`). That session always prepacks its
//! weights: one prepacked copy per model (+40 MiB on MiniLM) for a third off a lone request.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use ort::environment::Environment;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::session::Session;

use super::load::ModelError;

/// How to build a model's sessions.
#[derive(Clone, Copy, Debug)]
pub struct SessionOptions {
    /// Sessions to build (one per inference worker), at least 1.
    pub count: usize,
    /// Intra-op threads per session (0: ONNX Runtime's default).
    pub intra_op_threads: usize,
    /// Build every session on one shared optimized copy of the graph.
    pub share_weights: bool,
    /// Let ONNX Runtime prepack weights for its kernels, one prepacked copy per session.
    pub prepack_weights: bool,
    /// Intra-op threads of one more session, the all-cores one a lone batch runs on (0: none).
    pub all_cores_threads: usize,
}

impl SessionOptions {
    /// Every session to build, as (intra-op threads, prepack weights): one per worker, then the
    /// all-cores session if there is one. That one always prepacks: it exists for the latency
    /// of a lone request, which prepacking cuts by a third on MiniLM (2.6 instead of 4.1 ms
    /// with two threads), and it is one copy per model, not per worker (+40 MiB on MiniLM).
    fn layouts(&self) -> Vec<(usize, bool)> {
        let mut layouts = vec![(self.intra_op_threads, self.prepack_weights); self.count.max(1)];
        if self.all_cores_threads > 0 {
            layouts.push((self.all_cores_threads, true));
        }
        layouts
    }
}

/// Which of a model's sessions runs a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// Inference worker `n`'s own session (`n % workers`).
    Worker(usize),
    /// The all-cores session (`adaptive_pool`), for a batch that is alone; worker 0's session
    /// when the model has none.
    AllCores,
}

impl From<usize> for Slot {
    fn from(worker: usize) -> Slot {
        Slot::Worker(worker)
    }
}

/// Where the sessions' weights live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightsLayout {
    /// One optimized ORT-format buffer shared by every session.
    Shared,
    /// Each session loaded the `.onnx` file and holds its own weights.
    PerSession,
}

/// A model's sessions and the buffer they may point into.
pub struct Sessions {
    /// One session per inference worker, each behind its own lock. Declared before `graph`:
    /// fields drop in declaration order, and shared sessions point into `graph`.
    sessions: Vec<Mutex<Session>>,
    /// The all-cores session, when `adaptive_pool` asked for one (see [`Slot::AllCores`]).
    all_cores: Option<Mutex<Session>>,
    /// The optimized graph in ORT format when the sessions share it (`Shared`). Never
    /// mutated, moved out or dropped while a session lives (see [`build_shared`]).
    graph: Option<Box<[u8]>>,
}

impl Sessions {
    /// Sessions built in the order of `options.layouts()`: the workers', then the all-cores one.
    fn new(
        mut sessions: Vec<Mutex<Session>>,
        options: &SessionOptions,
        graph: Option<Box<[u8]>>,
    ) -> Sessions {
        let all_cores = (options.all_cores_threads > 0)
            .then(|| sessions.pop())
            .flatten();
        Sessions {
            sessions,
            all_cores,
            graph,
        }
    }

    /// How many sessions there are (and so concurrent inference calls).
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Never true: a model has at least one session.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Where the weights live.
    pub fn layout(&self) -> WeightsLayout {
        match self.graph {
            Some(_) => WeightsLayout::Shared,
            None => WeightsLayout::PerSession,
        }
    }

    /// The first session, for reading the graph's inputs and outputs.
    pub fn first(&mut self) -> &Session {
        self.sessions[0]
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether there is an all-cores session.
    pub fn has_all_cores(&self) -> bool {
        self.all_cores.is_some()
    }

    /// The session of `slot`, locked.
    pub fn lock(&self, slot: Slot) -> MutexGuard<'_, Session> {
        let slot = match (slot, &self.all_cores) {
            (Slot::AllCores, Some(session)) => session,
            (Slot::AllCores, None) => &self.sessions[0],
            (Slot::Worker(worker), _) => &self.sessions[worker % self.sessions.len()],
        };
        // A panic while holding the lock cannot leave a session half-updated in a way that
        // matters to the next caller (ONNX Runtime owns the state), so poisoning is ignored.
        slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Builds `options.count` sessions for the graph at `onnx_path`: on one shared copy of the
/// weights when asked and possible, else one per session from the file.
pub fn build(
    environment: &Environment,
    onnx_path: &Path,
    options: &SessionOptions,
) -> Result<Sessions, ModelError> {
    build_in(environment, onnx_path, options, &std::env::temp_dir())
}

/// [`build`], writing the optimized graph's temporary file in `scratch`.
pub fn build_in(
    environment: &Environment,
    onnx_path: &Path,
    options: &SessionOptions,
    scratch: &Path,
) -> Result<Sessions, ModelError> {
    if options.share_weights {
        match build_shared(environment, onnx_path, options, scratch) {
            Ok(sessions) => return Ok(sessions),
            Err(why) => tracing::warn!(
                path = %onnx_path.display(),
                "the inference workers of this model cannot share one copy of its weights \
                 ({why}); each worker loads its own copy, which takes more memory"
            ),
        }
    }
    build_per_session(environment, onnx_path, options)
}

/// One session per worker, each from the file (each with its own weights).
pub fn build_per_session(
    environment: &Environment,
    onnx_path: &Path,
    options: &SessionOptions,
) -> Result<Sessions, ModelError> {
    let sessions = options
        .layouts()
        .into_iter()
        // Sessions from the file prepack anyway (ONNX Runtime's default): they own their weights.
        .map(|(threads, _)| {
            builder(environment, threads, &[])?
                .commit_from_file(onnx_path)
                .map(Mutex::new)
                .map_err(|err| err.to_string())
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|why| ModelError::Session {
            path: onnx_path.to_path_buf(),
            why,
        })?;
    Ok(Sessions::new(sessions, options, None))
}

/// Optimizes the graph once into an ORT-format file in `scratch` (removed before returning),
/// reads it into one buffer and builds every session on that buffer. The error says why the
/// weights cannot be shared; the caller falls back to [`build_per_session`].
pub fn build_shared(
    environment: &Environment,
    onnx_path: &Path,
    options: &SessionOptions,
    scratch: &Path,
) -> Result<Sessions, String> {
    let optimized = tempfile::Builder::new()
        .prefix(".hotserve-optimized-")
        .suffix(".ort")
        .tempfile_in(scratch)
        .map_err(|err| {
            format!(
                "cannot create a temporary file in {}: {err}",
                scratch.display()
            )
        })?;
    // The optimizing session is thrown away once it has saved the graph: it is never run, so
    // it neither prepacks nor needs more than one thread.
    builder(
        environment,
        1,
        &[
            ("session.disable_prepacking", "1"),
            ("session.save_model_format", "ORT"),
        ],
    )?
    .with_optimized_model_path(optimized.path())
    .map_err(|err| err.to_string())?
    .commit_from_file(onnx_path)
    .map_err(|err| format!("saving it in ONNX Runtime's format failed: {err}"))?;
    let graph: Box<[u8]> = std::fs::read(optimized.path())
        .map_err(|err| format!("cannot read {}: {err}", optimized.path().display()))?
        .into_boxed_slice();
    drop(optimized);
    if graph.is_empty() {
        return Err("ONNX Runtime saved an empty graph".into());
    }

    let mut sessions = Vec::new();
    for (threads, prepack) in options.layouts() {
        let prepacking = if prepack { "0" } else { "1" };
        // SAFETY (ort cannot check this, so there is no `unsafe` block to hang it on): with
        // the two `use_ort_model_bytes` entries ONNX Runtime keeps pointers into `graph`
        // instead of copying the weights. `graph` is a heap buffer that never moves or
        // changes; it is stored in the same `Sessions` as these sessions, declared after
        // them, so it is dropped after the last of them; `Sessions` gives no way to take
        // either out. ort's `commit_from_memory_directly` does the same but returns a
        // borrowing `InMemorySession`, which can be neither stored next to its buffer nor
        // handed out as the `&mut Session` the run paths take.
        let session = builder(
            environment,
            threads,
            &[
                ("session.disable_prepacking", prepacking),
                ("session.use_ort_model_bytes_directly", "1"),
                ("session.use_ort_model_bytes_for_initializers", "1"),
            ],
        )?
        .commit_from_memory(&graph)
        .map_err(|err| format!("the saved graph does not load: {err}"))?;
        sessions.push(Mutex::new(session));
    }
    Ok(Sessions::new(sessions, options, Some(graph)))
}

/// A session builder with hotserve's fixed choices (every graph optimization, one inter-op
/// thread, `intra_op_threads` with 0 for ONNX Runtime's default) and ONNX Runtime `entries`.
fn builder(
    environment: &Environment,
    intra_op_threads: usize,
    entries: &[(&str, &str)],
) -> Result<SessionBuilder, String> {
    let text = |err: &dyn std::fmt::Display| err.to_string();
    let mut builder = Session::builder(environment)
        .map_err(|e| text(&e))?
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(|e| text(&e))?
        .with_inter_threads(1)
        .map_err(|e| text(&e))?;
    if intra_op_threads > 0 {
        builder = builder
            .with_intra_threads(intra_op_threads)
            .map_err(|e| text(&e))?;
    }
    for (key, value) in entries {
        builder = builder
            .with_config_entry(key, value)
            .map_err(|e| text(&e))?;
    }
    Ok(builder)
}
