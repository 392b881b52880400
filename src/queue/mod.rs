//! Where a request waits: the bounded inference queue and the pool of inference workers that
//! drain it in dynamic batches.
//!
//! Requests arrive already tokenized (`predict::tokenize`: inline when short, else on tokio's
//! blocking pool), so batching can respect a token budget. [`Pool::classify`] splits a request
//! into jobs of at most `max_batch_size` texts and refuses at once with
//! [`PoolError::QueueFull`] when the queue holds `queue_capacity` texts (a model below its fair
//! share of it still gets in, `policy::admits`). Each worker is a dedicated OS thread with its own ONNX
//! Runtime session; it takes the oldest job (of another configured model than the last
//! batch's, when one is waiting: several models share the queue, `policy::first_job`), adds more jobs
//! *for the same model* (a batch never mixes models or versions) until the batch is full, over
//! its token budget, or `max_batch_delay` has passed, drops jobs whose client has gone or whose
//! deadline has passed, and runs it (the model cuts a batch of very different lengths into
//! padded runs, `model::padding`). A batch that is alone (the one prediction in progress, no
//! other worker computing) runs on its model's all-cores session when it has one
//! (`adaptive_pool`), and the other workers take nothing until it ends, so the cores are never
//! oversubscribed (`policy::runs_on_all_cores`). Workers never run on the async runtime, and a panic
//! inside inference fails only that batch's requests.
//!
//! Beside the queue is a low-priority lane for background work (shadow copies of live
//! requests, [`Pool::offer_background`]): a piece of work is accepted only while a worker is
//! idle and no live job waits (`policy::may_run_background`), else it is refused at once (the caller
//! counts it as dropped), and a worker takes it only when no live job is waiting. It never
//! holds a client's answer; it can delay a live job that arrives while it runs by at most
//! its own duration.
//!
//! The files: the pool's API (here), what waits in the queue (`job.rs`: one kind of work per
//! job, each with a reply channel of its own answer's type), the worker threads (`worker.rs`)
//! and every decision they take, pure and table-tested (`policy.rs`).

mod job;
mod policy;
mod worker;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::access;
use crate::metrics::{Metrics, ModelMetrics};
use crate::model::tensor::NamedTensor;
use crate::model::{Encoded, InferError, Model, Scores};
use job::{Job, Queue, Shared, Work};
use policy::{admits, may_run_background, wakes_for};

/// A prediction in progress ([`Pool::begin`]); counted until dropped.
pub struct InProgress<'a>(&'a AtomicUsize);

impl Drop for InProgress<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Batching and sizing knobs (from [`crate::config::Config`]).
#[derive(Clone, Debug)]
pub struct PoolConfig {
    pub workers: usize,
    pub max_batch_size: usize,
    pub max_batch_delay: Duration,
    pub max_batch_tokens: usize,
    pub queue_capacity: usize,
}

/// Why a submission or a job failed.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("the inference queue is full ({capacity} texts); retry shortly")]
    QueueFull { capacity: usize },
    #[error("the request waited longer than its deadline in the inference queue")]
    DeadlineExceeded,
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Infer(#[from] InferError),
    #[error("inference panicked: {0}")]
    Panicked(String),
}

/// Which configured model a job is for, in the queue's fairness and batch-time bookkeeping:
/// one per configured model, made once ([`ModelKey::new`]) and kept as long as the model is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ModelKey(u64);

impl ModelKey {
    /// A key no other model has.
    pub fn new() -> ModelKey {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        ModelKey(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

impl Default for ModelKey {
    fn default() -> ModelKey {
        ModelKey::new()
    }
}

/// Whom a submission is for: the configured model (its key and metrics) and the version the
/// request took (`Live::current`, once per request).
#[derive(Clone, Copy)]
pub struct For<'a> {
    pub key: ModelKey,
    pub model: &'a Arc<Model>,
    pub metrics: &'a Arc<ModelMetrics>,
}

/// Low-priority work for an idle worker; it gets the worker's index (its session number).
pub type Background = Box<dyn FnOnce(usize) + Send>;

/// The inference pool. Dropping it does not stop the workers; call [`Pool::shutdown`].
pub struct Pool {
    shared: Arc<Shared>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

impl Pool {
    /// Starts `config.workers` inference threads.
    pub fn start(config: PoolConfig, metrics: Arc<Metrics>) -> Pool {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::new()),
            available: Condvar::new(),
            in_progress: AtomicUsize::new(0),
            config,
            metrics,
        });
        let workers = (0..shared.config.workers)
            .map(|index| {
                let shared = shared.clone();
                std::thread::Builder::new()
                    .name(format!("hotserve-infer-{index}"))
                    .spawn(move || worker::worker(index, &shared))
                    .expect("spawning an inference thread")
            })
            .collect();
        Pool {
            shared,
            workers: Mutex::new(workers),
        }
    }

    /// Queues texts for classification; the answer has one [`Scores`] per text, in order.
    /// The texts are split into jobs of at most `max_batch_size`. Fails at once when the queue
    /// is full.
    pub async fn classify(
        &self,
        target: For<'_>,
        texts: Vec<Encoded>,
        deadline: Instant,
    ) -> Result<Vec<Scores>, PoolError> {
        let chunk = self.shared.config.max_batch_size;
        let mut receivers = Vec::new();
        // Looked up before the queue's lock, which the workers contend for.
        let trace = crate::telemetry::current();
        let wake = {
            let mut queue = self.shared.lock();
            self.admit(&queue, target.key, texts.len())?;
            let mut texts = texts;
            while !texts.is_empty() {
                let rest = texts.split_off(chunk.min(texts.len()));
                let (reply, receiver) = oneshot::channel();
                self.push(
                    &mut queue,
                    target,
                    Work::Classify { texts, reply },
                    deadline,
                    trace.clone(),
                );
                receivers.push(receiver);
                texts = rest;
            }
            wakes_idle_worker(&queue, target.key)
        };
        if wake {
            self.wake(receivers.len());
        }
        let mut scores = Vec::new();
        for receiver in receivers {
            let (part, ran) = receiver.await.map_err(|_| PoolError::ShuttingDown)??;
            access::note_batch(ran.batch, ran.waited);
            scores.extend(part);
        }
        Ok(scores)
    }

    /// Queues one tensor-model call (never batched with others).
    pub async fn run_tensors(
        &self,
        target: For<'_>,
        inputs: Vec<NamedTensor>,
        deadline: Instant,
    ) -> Result<Vec<NamedTensor>, PoolError> {
        let (reply, receiver) = oneshot::channel();
        let trace = crate::telemetry::current();
        let wake = {
            let mut queue = self.shared.lock();
            self.admit(&queue, target.key, 1)?;
            self.push(
                &mut queue,
                target,
                Work::Tensors { inputs, reply },
                deadline,
                trace,
            );
            wakes_idle_worker(&queue, target.key)
        };
        if wake {
            self.wake(1);
        }
        let (outputs, ran) = receiver.await.map_err(|_| PoolError::ShuttingDown)??;
        access::note_batch(ran.batch, ran.waited);
        Ok(outputs)
    }

    /// Offers low-priority `work`: accepted (true) only while a worker is idle and no live job
    /// waits; refused at once otherwise, so the caller can count it as dropped.
    pub fn offer_background(&self, work: Background) -> bool {
        {
            let mut queue = self.shared.lock();
            if queue.closed
                || !may_run_background(queue.jobs.len(), queue.idle, queue.background.len())
            {
                return false;
            }
            queue.background.push_back(work);
        }
        self.shared.available.notify_all();
        true
    }

    /// Marks a prediction in progress until the returned guard drops; `predict.rs` takes one
    /// per request before tokenizing. A batch runs on all cores only while it is the one
    /// prediction in progress: a queue that is empty for a moment between the requests of a
    /// busy server (small models spend most of a request outside inference) is not idleness.
    pub fn begin(&self) -> InProgress<'_> {
        self.shared.in_progress.fetch_add(1, Ordering::Relaxed);
        InProgress(&self.shared.in_progress)
    }

    /// Texts waiting in the queue.
    pub fn depth(&self) -> usize {
        self.shared.lock().texts
    }

    /// Stops taking work; workers finish what is queued, then exit. Blocks until they have.
    pub fn shutdown(&self) {
        self.shared.lock().closed = true;
        self.shared.available.notify_all();
        let workers = std::mem::take(&mut *self.workers.lock().unwrap_or_else(|p| p.into_inner()));
        for handle in workers {
            let _ = handle.join();
        }
    }

    /// Lets `texts` more texts of the model `key` in, or says the queue is full for it.
    fn admit(&self, queue: &Queue, key: ModelKey, texts: usize) -> Result<(), PoolError> {
        if queue.closed {
            return Err(PoolError::ShuttingDown);
        }
        let capacity = self.shared.config.queue_capacity;
        let own = queue.by_model.get(&key).copied().unwrap_or(0);
        let models = queue.by_model.len() + usize::from(own == 0);
        if !admits(queue.texts, own, models, capacity, texts) {
            return Err(PoolError::QueueFull { capacity });
        }
        Ok(())
    }

    /// Queues `work`; `trace` is the request's sampled span context, if any.
    fn push(
        &self,
        queue: &mut Queue,
        target: For<'_>,
        work: Work,
        deadline: Instant,
        trace: Option<opentelemetry::Context>,
    ) {
        queue.push(Job {
            key: target.key,
            model: target.model.clone(),
            metrics: target.metrics.clone(),
            work,
            enqueued: Instant::now(),
            deadline,
            trace,
        });
        self.shared
            .metrics
            .queue_depth
            .store(queue.texts as i64, Ordering::Relaxed);
    }

    fn wake(&self, jobs: usize) {
        if jobs == 1 {
            self.shared.available.notify_one();
        } else {
            self.shared.available.notify_all();
        }
    }
}

/// Whether a job of the model `key`, just queued, should wake an idle worker
/// (`policy::wakes_for`): not when a worker is about to come back from a short batch and this
/// model's batches are short too.
fn wakes_idle_worker(queue: &Queue, key: ModelKey) -> bool {
    wakes_for(queue.short_running, queue.last_batch.get(&key).copied())
}
