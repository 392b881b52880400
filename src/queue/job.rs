//! What waits in the queue: [`Job`]s (one kind of work each, with a reply channel of that
//! kind's answer), the [`Queue`] they wait in with its counters, and the state the pool's
//! threads share ([`Shared`]).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::{Background, ModelKey, PoolConfig, PoolError};
use crate::metrics::{Metrics, ModelMetrics};
use crate::model::tensor::NamedTensor;
use crate::model::{Encoded, Model, Scores};

/// One request's part, waiting for a worker.
pub(super) struct Job {
    /// Which configured model it is for (metrics, fairness between models).
    pub key: ModelKey,
    /// The version it runs on: a batch only takes jobs of the very same `Arc<Model>`.
    pub model: Arc<Model>,
    /// The metrics of the configured model (`model` label).
    pub metrics: Arc<ModelMetrics>,
    pub work: Work,
    pub enqueued: Instant,
    pub deadline: Instant,
    /// The request's span, when traces are on and it is sampled: its worker adds the
    /// request's queue and inference spans (`telemetry::record_batch`).
    pub trace: Option<opentelemetry::Context>,
}

/// Where a job's answer goes: its value and how it ran, or why it failed.
pub(super) type Reply<T> = oneshot::Sender<Result<(T, Ran), PoolError>>;

/// How a job ran, for the access log: the batch it ran in and how long it waited for it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ran {
    /// Texts (or tensor calls) in its batch, its own included.
    pub batch: usize,
    /// From queued to taken by a worker.
    pub waited: Duration,
}

/// What a job computes, with the channel its answer goes back on.
pub(super) enum Work {
    /// Texts of a text model: one [`Scores`] per text, in order. Batched with others.
    Classify {
        texts: Vec<Encoded>,
        reply: Reply<Vec<Scores>>,
    },
    /// One call of a tensor model: its outputs. Never batched with others.
    Tensors {
        inputs: Vec<NamedTensor>,
        reply: Reply<Vec<NamedTensor>>,
    },
}

impl Job {
    /// Texts it counts for in the queue (`queue_capacity`, batch sizes).
    pub fn texts(&self) -> usize {
        match &self.work {
            Work::Classify { texts, .. } => texts.len(),
            Work::Tensors { .. } => 1,
        }
    }

    /// Its longest text in tokens (0 for tensors).
    pub fn longest(&self) -> usize {
        match &self.work {
            Work::Classify { texts, .. } => texts.iter().map(|t| t.ids.len()).max().unwrap_or(0),
            Work::Tensors { .. } => 0,
        }
    }

    /// Whether it may join a batch started by `first`: texts of the same model version.
    pub fn joins(&self, first: &Job) -> bool {
        matches!(
            (&self.work, &first.work),
            (Work::Classify { .. }, Work::Classify { .. })
        ) && Arc::ptr_eq(&self.model, &first.model)
    }

    /// Whether its client has gone (nobody waits for the answer).
    pub fn abandoned(&self) -> bool {
        match &self.work {
            Work::Classify { reply, .. } => reply.is_closed(),
            Work::Tensors { reply, .. } => reply.is_closed(),
        }
    }

    /// Answers it with `err`.
    pub fn fail(self, err: PoolError) {
        match self.work {
            Work::Classify { reply, .. } => {
                let _ = reply.send(Err(err));
            }
            Work::Tensors { reply, .. } => {
                let _ = reply.send(Err(err));
            }
        }
    }
}

/// The jobs waiting, and what the workers and the admission decide by.
pub(super) struct Queue {
    pub jobs: VecDeque<Job>,
    /// Texts waiting (what `queue_capacity` bounds).
    pub texts: usize,
    /// Workers waiting for work; a busy worker leaves them a fair share of the queue.
    pub idle: usize,
    /// Workers that have taken a batch and not finished computing it
    /// (`policy::runs_on_all_cores`).
    pub computing: usize,
    /// Workers running a batch expected to be short (`policy::SHORT_BATCH`).
    pub short_running: usize,
    /// How long the last batch of each configured model took (`policy::wakes_for`).
    pub last_batch: HashMap<ModelKey, Duration>,
    /// A batch is running on its model's all-cores session: the other workers' cores are in
    /// use by it, so they take nothing until it ends.
    pub all_cores_busy: bool,
    pub closed: bool,
    /// The configured model the last batch was started for (`policy::first_job`).
    pub last_served: Option<ModelKey>,
    /// Texts waiting per configured model (`policy::admits`); models with none are absent.
    pub by_model: HashMap<ModelKey, usize>,
    /// The low-priority lane (`policy::may_run_background`).
    pub background: VecDeque<Background>,
}

impl Queue {
    pub fn new() -> Queue {
        Queue {
            jobs: VecDeque::new(),
            texts: 0,
            idle: 0,
            computing: 0,
            short_running: 0,
            last_batch: HashMap::new(),
            all_cores_busy: false,
            closed: false,
            last_served: None,
            by_model: HashMap::new(),
            background: VecDeque::new(),
        }
    }

    pub fn push(&mut self, job: Job) {
        self.texts += job.texts();
        *self.by_model.entry(job.key).or_default() += job.texts();
        self.jobs.push_back(job);
    }

    /// Takes the job at `index` out of the queue.
    pub fn take(&mut self, index: usize) -> Option<Job> {
        let job = self.jobs.remove(index)?;
        self.texts -= job.texts();
        if let Some(own) = self.by_model.get_mut(&job.key) {
            *own -= job.texts();
            if *own == 0 {
                self.by_model.remove(&job.key);
            }
        }
        Some(job)
    }
}

/// What the pool and its workers share.
pub(super) struct Shared {
    pub queue: Mutex<Queue>,
    pub available: Condvar,
    /// Predictions in progress anywhere between a transport and its answer (`Pool::begin`):
    /// whether a batch is really alone, not just alone in the queue for a moment.
    pub in_progress: AtomicUsize,
    pub config: PoolConfig,
    pub metrics: Arc<Metrics>,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}
