//! The ONNX Runtime sessions of one model, one per inference worker, and the one copy of the
//! weights they share. A session per worker is needed (ONNX Runtime's `Run` is not safe to call
//! concurrently on one session), but built from the `.onnx` file each session held its own
//! weights: MiniLM stores int8 weights followed by casts, and constant folding materialises
//! ~88 MB of fp32 weights in every session (191 MiB resident with 1 worker, 484 with 4).
//!
//! So the graph is optimized once and saved as an `.onnx` file with its weights in an external
//! file; [`initializers`] reads those weights into tensors of ours, and every session is built
//! on the optimized graph with them as *shared initializers* (ONNX Runtime's `AddInitializer`):
//! one copy of the weights whatever the number of workers (`bench/memory_workers.sh`). The
//! sessions also share one `PrepackedWeightsContainer`: ONNX Runtime prepacks a weight for its
//! kernel (MLAS's packed GEMM layout) once, and every other session that prepacks the same
//! weight uses that copy; ONNX Runtime shares prepacked weights only for shared initializers,
//! which is why the weights are handed over this way. Prepacking makes a lone short request on
//! one thread almost twice as fast on MiniLM (6.1 instead of 11.4 ms; a batch of 32 gains a
//! few percent, `examples/prepack.rs`), at the cost of one more copy of the weights per model,
//! not per worker.
//!
//! If a kernel cannot share what it prepacks, ONNX Runtime refuses the container and the
//! sessions are built on the shared weights without it ([`WeightsLayout::Shared`]): each
//! session that prepacks then holds its own copy, so `prepack_weights: false` keeps the
//! memory of one copy there. A graph that cannot be saved, or whose saved copy does not load,
//! falls back to one session per worker from the file ([`WeightsLayout::PerSession`]); each
//! fallback logs one line saying why.
//!
//! With `adaptive_pool` a model has one more session on the same weights, whose intra-op
//! threads are every worker's ([`Slot::AllCores`]): the pool runs a batch on it when the batch
//! is the one prediction in progress and no other worker computes, so a lone request gets
//! every core (half the latency of one thread on MiniLM) while under load each worker runs its
//! own one-thread session, which batches better (`queue::runs_on_all_cores`). That session
//! always prepacks.
//!
//! On a GPU (`execution_providers`, `providers.rs`) none of this applies and the sessions are
//! built by [`build_on_devices`]: at most [`DEVICE_SESSIONS`] per model, each from the file.
//! The shared optimized graph is the CPU provider's (its fused kernels and layouts are the CPU's,
//! and a graph saved with every optimization runs well only on the provider it was optimized
//! for), shared initializers save host memory only (ONNX Runtime copies them to the device for
//! every session), prepacking is a CPU kernel's, and an all-cores session is about CPU cores.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use ort::environment::Environment;
use ort::ep::ExecutionProviderDispatch;
use ort::session::builder::{GraphOptimizationLevel, PrepackedWeights, SessionBuilder};
use ort::session::Session;

use super::error::ModelError;
use super::initializers::{self, Initializer};

/// The most sessions a model has on a device, whatever `inference_workers` says. A GPU runs one
/// kernel stream per session and batches within a call; one session per worker would hold one
/// copy of the weights and one memory arena per worker in device memory, and workers beyond the
/// sessions' number share them (each waits for its session's lock, as any worker would for the
/// device). Two let one batch's host work (inputs in, outputs out, the nodes ONNX Runtime keeps
/// on the CPU) overlap the other's kernels. `bench/gpu.sh` measures it on a GPU.
pub const DEVICE_SESSIONS: usize = 2;

/// How to build a model's sessions.
#[derive(Clone, Debug)]
pub struct SessionOptions {
    /// Sessions to build (one per inference worker), at least 1.
    pub count: usize,
    /// Intra-op threads per session (0: ONNX Runtime's default).
    pub intra_op_threads: usize,
    /// Build every session on one shared optimized copy of the graph.
    pub share_weights: bool,
    /// Let the workers' sessions prepack weights for their kernels (one prepacked copy shared
    /// by every session, or one per session where ONNX Runtime cannot share them).
    pub prepack_weights: bool,
    /// Intra-op threads of one more session, the all-cores one a lone batch runs on (0: none).
    pub all_cores_threads: usize,
    /// Where the optimized graph is kept between loads of this model file (`None`: a temporary
    /// directory, removed once the sessions are built); see [`build_shared`].
    pub keep_optimized: Option<PathBuf>,
}

impl SessionOptions {
    /// Every session to build, as (intra-op threads, prepack weights): one per worker, then the
    /// all-cores session if there is one. That one always prepacks: it exists for the latency
    /// of a lone request, which prepacking cuts by a third on MiniLM (2.6 instead of 4.1 ms
    /// with two threads), and it is one session per model, not per worker.
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
    /// One copy of the optimized weights shared by every session, and one copy of the weights
    /// ONNX Runtime prepacked for its kernels, shared too.
    SharedPrepacked,
    /// One copy of the optimized weights shared by every session; a session that prepacks
    /// holds its own prepacked copy.
    Shared,
    /// Each session loaded the `.onnx` file and holds its own weights.
    PerSession,
}

/// A model's sessions. The shared weights are kept alive by the sessions themselves (ort
/// holds every initializer and the prepacked-weights container a session was built with).
pub struct Sessions {
    /// One session per inference worker, each behind its own lock.
    sessions: Vec<Mutex<Session>>,
    /// The all-cores session, when `adaptive_pool` asked for one (see [`Slot::AllCores`]).
    all_cores: Option<Mutex<Session>>,
    layout: WeightsLayout,
}

impl Sessions {
    /// Sessions built in the order of `options.layouts()`: the workers', then the all-cores one.
    fn new(
        mut sessions: Vec<Mutex<Session>>,
        options: &SessionOptions,
        layout: WeightsLayout,
    ) -> Sessions {
        let all_cores = (options.all_cores_threads > 0)
            .then(|| sessions.pop())
            .flatten();
        Sessions {
            sessions,
            all_cores,
            layout,
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
        self.layout
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
    Ok(Sessions::new(sessions, options, WeightsLayout::PerSession))
}

/// Optimizes the graph once into `scratch` (an `.onnx` file and the external file of its
/// weights, removed before returning), reads the weights into tensors ([`initializers`]) and
/// builds every session on them as shared initializers, with one prepacked-weights container:
/// each session that prepacks reuses what the first one prepacked. If ONNX Runtime refuses the
/// container (a kernel that cannot share what it prepacks), the sessions are built on the
/// shared weights without it. The error says why the weights cannot be shared at all; the
/// caller falls back to [`build_per_session`].
pub fn build_shared(
    environment: &Environment,
    onnx_path: &Path,
    options: &SessionOptions,
    scratch: &Path,
) -> Result<Sessions, String> {
    if let Some(kept) = &options.keep_optimized {
        if let Some(optimized) = kept_graph(kept, onnx_path) {
            match on_optimized(environment, onnx_path, options, &optimized) {
                Ok(sessions) => return Ok(sessions),
                Err(why) => {
                    tracing::warn!(dir = %kept.display(), "the optimized graph kept from an earlier load cannot be used ({why}); optimizing again");
                    let _ = std::fs::remove_dir_all(kept);
                }
            }
        }
        if let Some(optimized) = keep_graph(environment, onnx_path, kept) {
            return on_optimized(environment, onnx_path, options, &optimized);
        }
    }
    let dir = tempfile::Builder::new()
        .prefix(".hotserve-optimized-")
        .tempdir_in(scratch)
        .map_err(|err| {
            format!(
                "cannot create a temporary directory in {}: {err}",
                scratch.display()
            )
        })?;
    let optimized = dir.path().join("model.onnx");
    optimize(environment, onnx_path, &optimized)?;
    on_optimized(environment, onnx_path, options, &optimized)
}

/// Saves `onnx_path`'s graph, optimized, at `optimized` (its weights in `weights.bin` beside).
fn optimize(environment: &Environment, onnx_path: &Path, optimized: &Path) -> Result<(), String> {
    // The optimizing session is thrown away once it has saved the graph: it is never run, so
    // it neither prepacks nor needs more than one thread. Every initializer of 64 bytes or
    // more goes to the external file, which is what `initializers::read` shares.
    builder(
        environment,
        1,
        &[
            ("session.disable_prepacking", "1"),
            (
                "session.optimized_model_external_initializers_file_name",
                "weights.bin",
            ),
            (
                "session.optimized_model_external_initializers_min_size_in_bytes",
                "64",
            ),
        ],
    )?
    .with_optimized_model_path(optimized)
    .map_err(|err| err.to_string())?
    .commit_from_file(onnx_path)
    .map_err(|err| format!("saving the optimized graph failed: {err}"))?;
    Ok(())
}

/// What identifies the graph a kept optimized copy was made from: ONNX Runtime's version and
/// the model file's size and modification time (a cached version's files never change; a new
/// download is a new directory).
fn graph_stamp(onnx_path: &Path) -> Option<String> {
    let meta = std::fs::metadata(onnx_path).ok()?;
    let modified = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    let runtime = crate::model::runtime::get().map_or("", |r| r.version.as_str());
    Some(format!(
        "onnxruntime {runtime}\n{} bytes\nmodified {}.{:09}\n",
        meta.len(),
        modified.as_secs(),
        modified.subsec_nanos()
    ))
}

/// The optimized graph kept in `kept` for `onnx_path`, if it was made from this very file by
/// this ONNX Runtime.
fn kept_graph(kept: &Path, onnx_path: &Path) -> Option<PathBuf> {
    let stamp = std::fs::read_to_string(kept.join(STAMP)).ok()?;
    let optimized = kept.join("model.onnx");
    (Some(stamp) == graph_stamp(onnx_path) && optimized.is_file()).then_some(optimized)
}

/// Optimizes `onnx_path` into `kept` (in a temporary directory beside it, renamed into place
/// with its stamp, so a crash leaves no half copy that looks whole); `None` when it cannot be
/// kept (the caller optimizes into a temporary directory instead).
fn keep_graph(environment: &Environment, onnx_path: &Path, kept: &Path) -> Option<PathBuf> {
    let stamp = graph_stamp(onnx_path)?;
    let parent = kept.parent()?;
    // What a load interrupted by a crash left (loads of a model never run at once).
    for entry in std::fs::read_dir(parent).ok()?.flatten() {
        if entry.file_name().to_string_lossy().starts_with(OPTIMIZING) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    let staging = tempfile::Builder::new()
        .prefix(OPTIMIZING)
        .tempdir_in(parent)
        .ok()?;
    optimize(environment, onnx_path, &staging.path().join("model.onnx")).ok()?;
    std::fs::write(staging.path().join(STAMP), stamp).ok()?;
    let _ = std::fs::remove_dir_all(kept);
    std::fs::rename(staging.keep(), kept).ok()?;
    Some(kept.join("model.onnx"))
}

/// The prefix of the directory a graph is optimized in before it is kept.
const OPTIMIZING: &str = ".hotserve-optimizing-";

/// The file beside a kept optimized graph that says what it was made from.
const STAMP: &str = "made-from";

/// Every session on the optimized graph at `optimized` (see [`build_shared`]).
fn on_optimized(
    environment: &Environment,
    onnx_path: &Path,
    options: &SessionOptions,
    optimized: &Path,
) -> Result<Sessions, String> {
    let shared = initializers::read(optimized)?;

    let container = PrepackedWeights::new();
    let layouts = options.layouts();
    match build_on_shared(environment, optimized, &shared, &layouts, Some(&container)) {
        Ok(sessions) => Ok(Sessions::new(
            sessions,
            options,
            WeightsLayout::SharedPrepacked,
        )),
        Err(why) => {
            tracing::warn!(
                path = %onnx_path.display(),
                "the sessions of this model cannot share ONNX Runtime's prepacked weights \
                 ({why}); they share the weights, and each session that prepacks holds its \
                 own prepacked copy (prepack_weights: false keeps one copy of the weights)"
            );
            let sessions = build_on_shared(environment, optimized, &shared, &layouts, None)?;
            Ok(Sessions::new(sessions, options, WeightsLayout::Shared))
        }
    }
}

/// One session per `layouts` entry (intra-op threads, prepack) on the optimized graph at
/// `optimized`, given the `shared` weights and, if any, the prepacked-weights `container`. The
/// graph is optimized already, so these sessions do not optimize it again.
fn build_on_shared(
    environment: &Environment,
    optimized: &Path,
    shared: &[Initializer],
    layouts: &[(usize, bool)],
    container: Option<&PrepackedWeights>,
) -> Result<Vec<Mutex<Session>>, String> {
    let mut sessions = Vec::with_capacity(layouts.len());
    for &(threads, prepack) in layouts {
        let prepacking = if prepack { "0" } else { "1" };
        let mut session = builder(
            environment,
            threads,
            &[("session.disable_prepacking", prepacking)],
        )?
        .with_optimization_level(GraphOptimizationLevel::Disable)
        .map_err(|err| err.to_string())?;
        for Initializer { name, value } in shared {
            session = session
                .with_initializer(name, Arc::clone(value))
                .map_err(|err| err.to_string())?;
        }
        if let Some(container) = container {
            session = session
                .with_prepacked_weights(container)
                .map_err(|err| err.to_string())?;
        }
        let session = session
            .commit_from_file(optimized)
            .map_err(|err| format!("the optimized graph does not load: {err}"))?;
        sessions.push(Mutex::new(session));
    }
    Ok(sessions)
}

/// Builds `min(count, DEVICE_SESSIONS)` sessions for the graph at `onnx_path`, each from the file
/// with `devices` registered in order (each with its error returned, never ignored), one
/// intra-op thread and no spinning: the CPU only feeds the device and runs the few nodes no
/// device provider takes, so its threads should neither multiply nor spin while the device
/// computes. No all-cores session. The error is ONNX Runtime's: a provider that cannot be
/// registered (its libraries missing), or a session that does not start on it (no device).
pub fn build_on_devices(
    environment: &Environment,
    onnx_path: &Path,
    count: usize,
    devices: &[ExecutionProviderDispatch],
) -> Result<Sessions, String> {
    let mut sessions = Vec::new();
    for _ in 0..count.clamp(1, DEVICE_SESSIONS) {
        let mut session = builder(
            environment,
            1,
            &[
                ("session.intra_op.allow_spinning", "0"),
                ("session.inter_op.allow_spinning", "0"),
            ],
        )?;
        for device in devices {
            device
                .register(&mut session)
                .map_err(|err| format!("cannot register {}: {err}", device.name()))?;
        }
        let session = session
            .commit_from_file(onnx_path)
            .map_err(|err| format!("the session does not start: {err}"))?;
        sessions.push(Mutex::new(session));
    }
    Ok(Sessions {
        sessions,
        all_cores: None,
        layout: WeightsLayout::PerSession,
    })
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
