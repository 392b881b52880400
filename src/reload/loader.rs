//! The model-loading thread and the retirement of replaced models.
//!
//! glibc gives each thread its own malloc arena and rarely returns freed arena memory to the
//! system. If every reload built its ONNX Runtime sessions on a different blocking thread, each
//! swap would leave the old model's memory stranded in another arena and resident memory would
//! grow by about one model per reload (measured: +130 MiB per swap with a MiniLM model). So
//! every load runs on one long-lived thread, and a replaced model is dropped on that same
//! thread once its last in-flight request has finished, followed by `malloc_trim`, so its
//! memory is reused by the next load or handed back to the system. Large blocks (the weights)
//! always get their own mappings ([`pin_mmap_threshold`]), which are returned whole.

use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::model::Model;

type Task = Box<dyn FnOnce() + Send>;

/// Why work handed to the loading thread produced no result.
#[derive(Debug, thiserror::Error)]
pub enum LoaderError {
    /// The work panicked (a bug in hotserve or in ONNX Runtime's bindings); the thread lives on.
    #[error("loading the model panicked; this is a bug, please report it with the logs")]
    Panicked,
    /// The loading thread is gone, so no model can be loaded until a restart.
    #[error("the model-loading thread is gone; restart hotserve")]
    Gone,
}

fn sender() -> &'static mpsc::Sender<Task> {
    static SENDER: OnceLock<mpsc::Sender<Task>> = OnceLock::new();
    SENDER.get_or_init(|| {
        let (sender, receiver) = mpsc::channel::<Task>();
        std::thread::Builder::new()
            .name("hotserve-loader".into())
            .spawn(move || {
                for task in receiver {
                    task();
                }
            })
            .expect("spawning the model-loading thread");
        sender
    })
}

/// Runs `work` on the loading thread and waits for its result without blocking the runtime.
pub async fn run<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, LoaderError> {
    let (reply, receiver) = tokio::sync::oneshot::channel();
    let task: Task = Box::new(move || {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
        let _ = reply.send(result);
    });
    sender().send(task).map_err(|_| LoaderError::Gone)?;
    match receiver.await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(_)) => Err(LoaderError::Panicked),
        Err(_) => Err(LoaderError::Gone),
    }
}

/// Frees a replaced model in the background once no request holds it any more.
pub fn retire(model: Arc<Model>) {
    tokio::spawn(release(model, PATIENCE));
}

/// How long a replaced model waits for its last requests before it is dropped anyway (the
/// memory is then freed when those requests finish, on whatever thread they run).
pub const PATIENCE: Duration = Duration::from_secs(120);

/// Waits until no request holds `model` (at most `patience`), then drops it on the loading
/// thread and returns free heap memory to the system.
pub async fn release(model: Arc<Model>, patience: Duration) {
    let started = Instant::now();
    while Arc::strong_count(&model) > 1 && started.elapsed() < patience {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let version = model.info.version.clone();
    let _ = run(move || {
        drop(model);
        trim_heap();
    })
    .await;
    tracing::debug!(%version, "replaced model freed");
}

/// Fixes glibc's mmap threshold at its default, 128 KiB. `main` calls it first, before the
/// process starts any other thread (and so before the first model is loaded). glibc otherwise
/// raises the threshold to the size of any mmapped block freed (up to 32 MiB), so after the
/// first reload a model's weights (a hundred buffers of ~1-10 MiB on MiniLM) land in the heap
/// instead of mappings of their own, and the heap keeps part of them when they are freed:
/// MiniLM with 4 workers went 196 -> ~225 MiB over 14 reloads, and 193 -> 203 MiB with the
/// threshold fixed (`bench/README.md`, "Memory per inference worker"). A freed mapping goes
/// back to the system at once.
pub fn pin_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt sets a parameter of glibc's allocator under its main arena's lock;
        // called before any other thread exists, nothing reads the parameter meanwhile.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        }
    }
}

/// The bytes glibc's allocator has handed out and not taken back, in every arena and in
/// mappings of their own (`mallinfo2`): what a model's load adds to it is the model's memory
/// (`budget.rs`). 0 where the allocator is not glibc's.
pub fn allocated_bytes() -> u64 {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 reads glibc's counters under each arena's lock; it is thread-safe.
        let info = unsafe { libc::mallinfo2() };
        (info.uordblks + info.hblkhd) as u64
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        0
    }
}

/// Asks glibc to return free memory from every arena to the system.
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only walks glibc's own heap structures; it is thread-safe.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}
