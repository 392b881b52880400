//! Where a request waits: the bounded inference queue and the pool of inference workers that
//! drain it in dynamic batches.
//!
//! Requests arrive already tokenized (`predict::tokenize`: inline when short, else on tokio's
//! blocking pool), so batching can respect a token budget. [`Pool::classify`] splits a request
//! into jobs of at most `max_batch_size` texts and refuses at once with
//! [`PoolError::QueueFull`] when the queue holds `queue_capacity` texts (a model below its fair
//! share of it still gets in, `admits`). Each worker is a dedicated OS thread with its own ONNX
//! Runtime session; it takes the oldest job (of another configured model than the last
//! batch's, when one is waiting: several models share the queue, `first_job`), adds more jobs
//! *for the same model* (a batch never mixes models or versions) until the batch is full, over
//! its token budget, or `max_batch_delay` has passed, drops jobs whose client has gone or whose
//! deadline has passed, and runs it (the model cuts a batch of very different lengths into
//! padded runs, `model::padding`). A batch that is alone (the one prediction in progress, no
//! other worker computing) runs on its model's all-cores session when it has one
//! (`adaptive_pool`), and the other workers take nothing until it ends, so the cores are never
//! oversubscribed ([`runs_on_all_cores`]). Workers never run on the async runtime, and a panic
//! inside inference fails only that batch's requests.
//!
//! Beside the queue is a low-priority lane for background work (shadow copies of live
//! requests, [`Pool::offer_background`]): a piece of work is accepted only while a worker is
//! idle and no live job waits (`may_run_background`), else it is refused at once (the caller
//! counts it as dropped), and a worker takes it only when no live job is waiting. It never
//! holds a client's answer; it can delay a live job that arrives while it runs by at most
//! its own duration.

use std::collections::{HashMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::metrics::{Metrics, ModelMetrics};
use crate::model::tensor::NamedTensor;
use crate::model::{Encoded, InferError, Model, Scores, Slot};

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

/// What a job computes.
enum Work {
    Classify(Vec<Encoded>),
    Tensors(Vec<NamedTensor>),
}

/// A job's answer.
pub enum Answer {
    Scores(Vec<Scores>),
    Tensors(Vec<NamedTensor>),
}

type Reply = oneshot::Sender<Result<Answer, PoolError>>;

/// Low-priority work for an idle worker; it gets the worker's index (its session number).
pub type Background = Box<dyn FnOnce(usize) + Send>;

/// What a worker takes next.
enum Next {
    /// A batch, which session of its model runs it, and whether it is expected to be short.
    Batch(Vec<Job>, Slot, bool),
    Background(Background),
}

/// A batch a worker has finished, reported when it comes back for more.
struct Done {
    /// The configured model it ran for ([`Job::served_as`]).
    served_as: usize,
    /// How long it took.
    took: Duration,
    /// It was counted in [`Queue::short_running`].
    short: bool,
}

/// A batch expected to take less than this is short: a job queued meanwhile waits for the
/// worker running it rather than waking an idle one ([`wakes_idle_worker`]). Waking a sleeping
/// thread and putting it back to sleep costs about this much, in CPU and in latency; with a
/// small model most of a request's time went into these wake-ups (`bench/README.md`, "Where a
/// request's time goes").
const SHORT_BATCH: Duration = Duration::from_micros(200);

struct Job {
    model: Arc<Model>,
    /// The metrics of the configured model the job is for (`model` label).
    metrics: Arc<ModelMetrics>,
    work: Work,
    reply: Reply,
    enqueued: Instant,
    deadline: Instant,
}

impl Job {
    /// Which configured model the job is for (its metrics are one per configured model).
    fn served_as(&self) -> usize {
        model_key(&self.metrics)
    }

    fn texts(&self) -> usize {
        match &self.work {
            Work::Classify(texts) => texts.len(),
            Work::Tensors(_) => 1,
        }
    }

    fn longest(&self) -> usize {
        match &self.work {
            Work::Classify(texts) => texts.iter().map(|t| t.ids.len()).max().unwrap_or(0),
            Work::Tensors(_) => 0,
        }
    }
}

struct Queue {
    jobs: VecDeque<Job>,
    /// Texts waiting (what `queue_capacity` bounds).
    texts: usize,
    /// Workers waiting for work; a busy worker leaves them a fair share of the queue.
    idle: usize,
    /// Workers that have taken a batch and not finished computing it (see
    /// [`runs_on_all_cores`]).
    computing: usize,
    /// Workers running a batch expected to be short ([`SHORT_BATCH`]).
    short_running: usize,
    /// How long the last batch of each configured model took (see [`wakes_idle_worker`]).
    last_batch: HashMap<usize, Duration>,
    /// A batch is running on its model's all-cores session: the other workers' cores are in
    /// use by it, so they take nothing until it ends (see [`runs_on_all_cores`]).
    all_cores_busy: bool,
    closed: bool,
    /// The configured model the last batch was started for (see [`first_job`]).
    last_served: Option<usize>,
    /// Texts waiting per configured model (see [`admits`]); models with none are absent.
    by_model: HashMap<usize, usize>,
    /// The low-priority lane (see [`may_run_background`]).
    background: VecDeque<Background>,
}

impl Queue {
    fn push(&mut self, job: Job) {
        self.texts += job.texts();
        *self.by_model.entry(job.served_as()).or_default() += job.texts();
        self.jobs.push_back(job);
    }

    /// Takes the job at `index` out of the queue.
    fn take(&mut self, index: usize) -> Option<Job> {
        let job = self.jobs.remove(index)?;
        self.texts -= job.texts();
        let model = job.served_as();
        if let Some(own) = self.by_model.get_mut(&model) {
            *own -= job.texts();
            if *own == 0 {
                self.by_model.remove(&model);
            }
        }
        Some(job)
    }
}

struct Shared {
    queue: Mutex<Queue>,
    available: Condvar,
    /// Predictions in progress anywhere between a transport and its answer ([`Pool::begin`]):
    /// whether a batch is really alone, not just alone in the queue for a moment.
    in_progress: AtomicUsize,
    config: PoolConfig,
    metrics: Arc<Metrics>,
}

/// The inference pool. Dropping it does not stop the workers; call [`Pool::shutdown`].
pub struct Pool {
    shared: Arc<Shared>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

impl Pool {
    /// Starts `config.workers` inference threads.
    pub fn start(config: PoolConfig, metrics: Arc<Metrics>) -> Pool {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
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
            }),
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
                    .spawn(move || worker(index, &shared))
                    .expect("spawning an inference thread")
            })
            .collect();
        Pool {
            shared,
            workers: Mutex::new(workers),
        }
    }

    /// Queues texts for classification with `model`, counted in `metrics`; the answer has one
    /// [`Scores`] per text, in order. Fails at once when the queue is full.
    pub async fn classify(
        &self,
        model: &Arc<Model>,
        metrics: &Arc<ModelMetrics>,
        texts: Vec<Encoded>,
        deadline: Instant,
    ) -> Result<Vec<Scores>, PoolError> {
        let chunk = self.shared.config.max_batch_size;
        let mut receivers = Vec::new();
        let wake = {
            let mut queue = self.lock();
            self.admit(&queue, metrics, texts.len())?;
            let mut texts = texts;
            while !texts.is_empty() {
                let rest = texts.split_off(chunk.min(texts.len()));
                let (reply, receiver) = oneshot::channel();
                let work = Work::Classify(texts);
                self.push(&mut queue, (model, metrics), work, reply, deadline);
                receivers.push(receiver);
                texts = rest;
            }
            wakes_idle_worker(&queue, metrics)
        };
        if wake {
            self.wake(receivers.len());
        }
        let mut scores = Vec::new();
        for receiver in receivers {
            match receiver.await.map_err(|_| PoolError::ShuttingDown)?? {
                Answer::Scores(part) => scores.extend(part),
                Answer::Tensors(_) => unreachable!("classify jobs answer with scores"),
            }
        }
        Ok(scores)
    }

    /// Queues one tensor-model call (never batched with others), counted in `metrics`.
    pub async fn run_tensors(
        &self,
        model: &Arc<Model>,
        metrics: &Arc<ModelMetrics>,
        inputs: Vec<NamedTensor>,
        deadline: Instant,
    ) -> Result<Vec<NamedTensor>, PoolError> {
        let (reply, receiver) = oneshot::channel();
        let wake = {
            let mut queue = self.lock();
            self.admit(&queue, metrics, 1)?;
            let work = Work::Tensors(inputs);
            self.push(&mut queue, (model, metrics), work, reply, deadline);
            wakes_idle_worker(&queue, metrics)
        };
        if wake {
            self.wake(1);
        }
        match receiver.await.map_err(|_| PoolError::ShuttingDown)?? {
            Answer::Tensors(outputs) => Ok(outputs),
            Answer::Scores(_) => unreachable!("tensor jobs answer with tensors"),
        }
    }

    /// Offers low-priority `work`: accepted (true) only while a worker is idle and no live job
    /// waits; refused at once otherwise, so the caller can count it as dropped.
    pub fn offer_background(&self, work: Background) -> bool {
        {
            let mut queue = self.lock();
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
        self.lock().texts
    }

    /// Stops taking work; workers finish what is queued, then exit. Blocks until they have.
    pub fn shutdown(&self) {
        self.lock().closed = true;
        self.shared.available.notify_all();
        let workers = std::mem::take(&mut *self.workers.lock().unwrap_or_else(|p| p.into_inner()));
        for handle in workers {
            let _ = handle.join();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.shared.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn admit(
        &self,
        queue: &Queue,
        metrics: &Arc<ModelMetrics>,
        texts: usize,
    ) -> Result<(), PoolError> {
        if queue.closed {
            return Err(PoolError::ShuttingDown);
        }
        let capacity = self.shared.config.queue_capacity;
        let model = model_key(metrics);
        let own = queue.by_model.get(&model).copied().unwrap_or(0);
        let models = queue.by_model.len() + usize::from(own == 0);
        if !admits(queue.texts, own, models, capacity, texts) {
            return Err(PoolError::QueueFull { capacity });
        }
        Ok(())
    }

    fn push(
        &self,
        queue: &mut Queue,
        (model, metrics): (&Arc<Model>, &Arc<ModelMetrics>),
        work: Work,
        reply: Reply,
        deadline: Instant,
    ) {
        let job = Job {
            model: model.clone(),
            metrics: metrics.clone(),
            work,
            reply,
            enqueued: Instant::now(),
            deadline,
        };
        queue.push(job);
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

/// The rules for how big a batch may grow, kept free of locks and threads so they are
/// unit-tested: at most `max_batch_size` texts, at most `max_batch_tokens` padded tokens
/// (longest text x texts), and — while other workers are idle — only a fair share of what is
/// queued, so the work is spread over all cores instead of one worker running one big (slow)
/// batch while the others sleep. Under full load nobody is idle and batches grow to the limit.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Fill {
    texts: usize,
    longest: usize,
    limit: usize,
    token_budget: usize,
}

impl Fill {
    /// A batch that starts with a job of `texts` texts (longest `longest` tokens), with
    /// `queued` more texts waiting and `idle` workers that could take some of them.
    fn start(
        texts: usize,
        longest: usize,
        queued: usize,
        idle: usize,
        max_batch_size: usize,
        token_budget: usize,
    ) -> Fill {
        let share = (texts + queued).div_ceil(idle + 1);
        Fill {
            texts,
            longest,
            // Never smaller than the first job: it is taken whole.
            limit: max_batch_size.min(share).max(texts),
            token_budget,
        }
    }

    /// Adds a job if it fits the size limit and the token budget.
    fn try_add(&mut self, texts: usize, longest: usize) -> bool {
        let total = self.texts + texts;
        let longest = self.longest.max(longest);
        if total > self.limit || longest * total > self.token_budget {
            return false;
        }
        self.texts = total;
        self.longest = longest;
        true
    }

    fn is_full(&self) -> bool {
        self.texts >= self.limit
    }
}

fn worker(index: usize, shared: &Shared) {
    let mut done = None;
    while let Some(next) = next_batch(index, shared, done.take()) {
        match next {
            Next::Batch(batch, slot, short) => {
                let served_as = batch[0].served_as();
                let started = Instant::now();
                let mut took = Duration::ZERO;
                run_batch(slot, batch, || {
                    took = started.elapsed();
                    finished_computing(shared, slot);
                });
                done = Some(Done {
                    served_as,
                    took,
                    short,
                });
            }
            Next::Background(work) => {
                if let Err(panic) = catch_unwind(AssertUnwindSafe(|| work(index))) {
                    let message = panic_message(&panic);
                    tracing::error!(%message, "background inference panicked; the worker continues");
                }
            }
        }
    }
}

/// A worker's batch has been computed (its answers are about to go out): its core is free.
/// After an all-cores batch the other workers may take work again.
fn finished_computing(shared: &Shared, slot: Slot) {
    let mut queue = shared.queue.lock().unwrap_or_else(|p| p.into_inner());
    queue.computing -= 1;
    if slot != Slot::AllCores {
        return;
    }
    queue.all_cores_busy = false;
    let waiting = !queue.jobs.is_empty() || !queue.background.is_empty();
    drop(queue);
    if waiting {
        shared.available.notify_all();
    }
}

/// Records the worker's finished batch (`done`), waits for work and takes a batch, or
/// background work when no live job waits; `None` once the queue is closed and empty
/// (background work left then is dropped).
fn next_batch(index: usize, shared: &Shared, done: Option<Done>) -> Option<Next> {
    let config = &shared.config;
    let mut queue = shared.queue.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(done) = done {
        queue.last_batch.insert(done.served_as, done.took);
        queue.short_running -= usize::from(done.short);
    }
    let first = loop {
        // While a batch runs on every core, this worker's core is taken: it waits.
        let next = match queue.all_cores_busy {
            true => None,
            false => first_job(queue.jobs.iter().map(Job::served_as), queue.last_served),
        };
        if let Some(job) = next.and_then(|index| queue.take(index)) {
            queue.last_served = Some(job.served_as());
            if let Some(job) = still_wanted(job) {
                break job;
            }
            continue;
        }
        if queue.closed && queue.jobs.is_empty() {
            queue.background.clear();
            return None;
        }
        if queue.all_cores_busy {
            // Nothing to take now; the all-cores batch wakes the workers when it ends.
        } else if let Some(work) = queue.background.pop_front() {
            return Some(Next::Background(work));
        }
        queue.idle += 1;
        queue = shared
            .available
            .wait(queue)
            .unwrap_or_else(|p| p.into_inner());
        queue.idle -= 1;
    };
    let mut fill = Fill::start(
        first.texts(),
        first.longest(),
        queue.texts,
        queue.idle,
        config.max_batch_size,
        config.max_batch_tokens,
    );
    let fill_until = Instant::now() + config.max_batch_delay;
    let mut batch = vec![first];
    if matches!(batch[0].work, Work::Classify(_)) {
        loop {
            let mut index = 0;
            while index < queue.jobs.len() && !fill.is_full() {
                let job = &queue.jobs[index];
                let fits = Arc::ptr_eq(&job.model, &batch[0].model)
                    && matches!(job.work, Work::Classify(_))
                    && fill.try_add(job.texts(), job.longest());
                if fits {
                    let job = queue.take(index).expect("index is in range");
                    batch.push(job);
                } else {
                    index += 1;
                }
            }
            let now = Instant::now();
            if fill.is_full() || now >= fill_until || queue.closed {
                break;
            }
            queue = shared
                .available
                .wait_timeout(queue, fill_until - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
    shared
        .metrics
        .queue_depth
        .store(queue.texts as i64, Ordering::Relaxed);
    let slot = if runs_on_all_cores(
        shared.in_progress.load(Ordering::Relaxed),
        queue.jobs.len(),
        queue.computing,
        batch[0].model.has_all_cores(),
    ) {
        queue.all_cores_busy = true;
        batch[0]
            .metrics
            .all_cores_batches
            .fetch_add(1, Ordering::Relaxed);
        Slot::AllCores
    } else {
        Slot::Worker(index)
    };
    queue.computing += 1;
    let short = queue
        .last_batch
        .get(&batch[0].served_as())
        .is_some_and(|took| *took < SHORT_BATCH);
    queue.short_running += usize::from(short);
    let more = !queue.jobs.is_empty();
    drop(queue);
    if more {
        // Another worker may take the rest of the queue while this one computes. (Waking one
        // when nothing is left would cost a context switch per batch for nothing.)
        shared.available.notify_one();
    }
    Some(Next::Batch(batch, slot, short))
}

/// Whether a batch just taken runs on its model's all-cores session (`adaptive_pool`): when it
/// is alone, with `in_progress` predictions in the process (at most its own), `queued` jobs
/// left (none), and no other worker `computing` a batch, so their cores are free; and the model
/// has such a session. Under load every worker runs its own session; at a trickle, each request
/// gets all the cores. A job arriving meanwhile waits for that batch (one short run).
fn runs_on_all_cores(
    in_progress: usize,
    queued: usize,
    computing: usize,
    has_all_cores: bool,
) -> bool {
    has_all_cores && in_progress <= 1 && queued == 0 && computing == 0
}

/// Whether a job of the model counted in `metrics`, just queued, should wake an idle worker: not
/// when a worker is running a short batch (it takes the job within [`SHORT_BATCH`]) and this
/// model's batches are short too, so the job would barely wait; always otherwise. A small
/// model under load then runs bigger batches on fewer wake-ups; a large one still spreads its
/// jobs over every worker at once.
fn wakes_idle_worker(queue: &Queue, metrics: &Arc<ModelMetrics>) -> bool {
    let last = queue.last_batch.get(&model_key(metrics));
    wakes_for(queue.short_running, last.copied())
}

/// The pure half of [`wakes_idle_worker`]: false (no wake-up) when `short_running` workers
/// run a short batch and this model's `last_batch` was short; true otherwise.
fn wakes_for(short_running: usize, last_batch: Option<Duration>) -> bool {
    !(short_running > 0 && last_batch.is_some_and(|took| took < SHORT_BATCH))
}

/// The key of a configured model in the queue's per-model maps: its metrics' address (one
/// `ModelMetrics` per configured model, alive as long as the model is configured).
fn model_key(metrics: &Arc<ModelMetrics>) -> usize {
    Arc::as_ptr(metrics) as usize
}

/// Whether background work may enter the low-priority lane, with `live` jobs waiting, `idle`
/// workers waiting for work and `background` pieces already in the lane: only when no live
/// job waits and an idle worker is left for it. So background work only ever uses capacity
/// nobody asked for at that moment; under load it is refused, never queued.
fn may_run_background(live: usize, idle: usize, background: usize) -> bool {
    live == 0 && background < idle
}

/// Whether `texts` more texts of one model may enter a queue that holds `queued` texts, `own`
/// of them this model's, from `models` models with queued work (this one included), when it
/// has room for `capacity`. Within capacity, yes; and a request larger than the whole queue is
/// still admitted into an empty queue, so a big (but allowed) batch is never refused forever.
/// Beyond capacity, a model still below its fair share (`capacity / models`) gets in: one
/// model flooding the queue cannot shut the others out. So the queue may hold up to twice
/// `capacity` texts when several models are busy; with one model it never exceeds it.
fn admits(queued: usize, own: usize, models: usize, capacity: usize, texts: usize) -> bool {
    queued == 0 || queued + texts <= capacity || own + texts <= capacity / models.max(1)
}

/// Which queued job (by position) starts the next batch, given the configured model of each
/// queued job in queue order and the model the last batch was started for: the oldest job of
/// another model when one is waiting, else the oldest job. Several models share one queue;
/// without this a burst on one model would make every other model wait behind all of it,
/// with it another model waits for at most one batch per worker. With one model it is FIFO.
fn first_job(models: impl Iterator<Item = usize>, last_served: Option<usize>) -> Option<usize> {
    let mut oldest = None;
    for (index, model) in models.enumerate() {
        if Some(model) != last_served {
            return Some(index);
        }
        oldest.get_or_insert(index);
    }
    oldest
}

/// Answers jobs nobody waits for (client gone) or that are past their deadline.
fn still_wanted(job: Job) -> Option<Job> {
    if job.reply.is_closed() {
        return None;
    }
    if Instant::now() >= job.deadline {
        let _ = job.reply.send(Err(PoolError::DeadlineExceeded));
        return None;
    }
    Some(job)
}

/// Runs a batch on the session of `slot` and answers its jobs; `computed` is called once
/// inference is over, before the answers go out (an answer lets its client send the next
/// request, which must find this worker's core free, see [`finished_computing`]).
fn run_batch(slot: Slot, batch: Vec<Job>, computed: impl FnOnce()) {
    let batch: Vec<Job> = batch.into_iter().filter_map(still_wanted).collect();
    if batch.is_empty() {
        computed();
        return;
    }
    let started = Instant::now();
    for job in &batch {
        job.metrics
            .queue_seconds
            .observe_duration(started - job.enqueued);
    }
    let model = batch[0].model.clone();
    // Jobs of one batch share their model, hence its configured name.
    let metrics = batch[0].metrics.clone();
    if let Work::Tensors(_) = &batch[0].work {
        let mut answers = Vec::with_capacity(batch.len());
        for job in batch {
            let Work::Tensors(inputs) = job.work else {
                continue;
            };
            let result = catch_unwind(AssertUnwindSafe(|| model.run_tensors(slot, inputs)));
            let answer = match result {
                Ok(Ok(outputs)) => Ok(Answer::Tensors(outputs)),
                Ok(Err(err)) => Err(PoolError::Infer(err)),
                Err(panic) => Err(PoolError::Panicked(panic_message(&panic))),
            };
            count_jobs(&metrics, 1, answer.is_err());
            metrics
                .inference_seconds
                .observe_duration(started.elapsed());
            answers.push((job.reply, answer));
        }
        computed();
        for (reply, answer) in answers {
            let _ = reply.send(answer);
        }
        return;
    }
    let texts: Vec<&Encoded> = batch
        .iter()
        .flat_map(|job| match &job.work {
            Work::Classify(texts) => texts.iter(),
            Work::Tensors(_) => [].iter(),
        })
        .collect();
    metrics.batch_size.observe(texts.len() as f64);
    crate::failpoints::sleep("HOTSERVE_TEST_INFERENCE_DELAY_MS");
    let result = catch_unwind(AssertUnwindSafe(|| model.classify(slot, &texts)));
    computed();
    metrics
        .inference_seconds
        .observe_duration(started.elapsed());
    count_jobs(&metrics, batch.len(), !matches!(result, Ok(Ok(_))));
    match result {
        Ok(Ok(scores)) => {
            let mut scores = scores.into_iter();
            for job in batch {
                let part: Vec<Scores> = scores.by_ref().take(job.texts()).collect();
                let _ = job.reply.send(Ok(Answer::Scores(part)));
            }
        }
        Ok(Err(err)) => {
            let message = err.to_string();
            let bad_input = matches!(err, InferError::BadInput(_));
            for job in batch {
                let err = if bad_input {
                    InferError::BadInput(message.clone())
                } else {
                    InferError::Runtime(message.clone())
                };
                let _ = job.reply.send(Err(PoolError::Infer(err)));
            }
        }
        Err(panic) => {
            let message = panic_message(&panic);
            tracing::error!(%message, "inference panicked; the batch's requests fail, the worker continues");
            for job in batch {
                let _ = job.reply.send(Err(PoolError::Panicked(message.clone())));
            }
        }
    }
}

/// Counts `jobs` answered jobs of one model, as failed when `failed`.
fn count_jobs(metrics: &ModelMetrics, jobs: usize, failed: bool) {
    metrics
        .inference_jobs
        .fetch_add(jobs as u64, Ordering::Relaxed);
    if failed {
        metrics
            .inference_errors
            .fetch_add(jobs as u64, Ordering::Relaxed);
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

#[cfg(test)]
mod tests {
    use super::{admits, first_job, may_run_background, runs_on_all_cores, wakes_for, Fill};
    use std::time::Duration;

    #[test]
    #[rustfmt::skip]
    fn background_work_only_on_idle_capacity() {
        // (live jobs waiting, idle workers, background waiting) -> accepted
        let check = |live, idle, background, expected| {
            assert_eq!(may_run_background(live, idle, background), expected, "{live} {idle} {background}");
        };
        check(0, 1, 0, true);
        check(0, 2, 1, true);
        check(0, 2, 2, false);  // every idle worker already has a piece
        check(0, 0, 0, false);  // every worker busy
        check(1, 2, 0, false);  // a live job waits
    }

    #[test]
    #[rustfmt::skip]
    fn a_job_wakes_an_idle_worker_unless_a_short_batch_is_about_to_end() {
        // (workers running a short batch, this model's last batch) -> wake an idle worker
        let check = |short_running, last_micros: Option<u64>, expected| {
            let last = last_micros.map(Duration::from_micros);
            assert_eq!(wakes_for(short_running, last), expected, "{short_running} {last:?}");
        };
        check(0, None, true);         // nothing known, nobody running: wake
        check(0, Some(20), true);     // a small model, but every worker sleeps
        check(1, Some(20), false);    // a small model, a worker about to come back for more
        check(1, None, true);         // this model's first batch: cost unknown
        check(1, Some(5_000), true);  // a large model: spread over every worker at once
        check(2, Some(199), false);
        check(2, Some(200), true);
    }

    #[test]
    #[rustfmt::skip]
    fn a_lone_batch_runs_on_all_cores() {
        // (predictions in progress, jobs left in the queue, other workers computing,
        //  model has an all-cores session) -> all cores
        let check = |in_progress, queued, computing, has, expected| {
            let all = runs_on_all_cores(in_progress, queued, computing, has);
            assert_eq!(all, expected, "{in_progress} {queued} {computing} {has}");
        };
        check(1, 0, 0, true, true);    // alone: no other worker computing
        check(0, 0, 0, true, true);    // the client left while its job waited
        check(2, 0, 0, true, false);   // another request is on its way (tokenizing, answering)
        check(64, 0, 0, true, false);  // a busy server whose queue is empty for a moment
        check(1, 1, 0, true, false);   // another job waits: each worker its own session
        check(1, 0, 1, true, false);   // another worker computes: its core is taken
        check(1, 0, 0, false, false);  // adaptive_pool off (or a model without the session)
    }

    #[test]
    #[rustfmt::skip]
    fn admission() {
        // (queued, own, models, capacity, texts) -> admitted
        let check = |queued, own, models, capacity, texts, expected| {
            assert_eq!(admits(queued, own, models, capacity, texts), expected, "{queued} {own} {models} {capacity} {texts}");
        };
        check(0, 0, 1, 8, 100, true);   // an empty queue takes any request
        check(4, 4, 1, 8, 4, true);     // within capacity
        check(5, 5, 1, 8, 4, false);    // one model: never beyond capacity
        check(8, 8, 2, 8, 1, false);    // the flood itself: full
        check(8, 0, 2, 8, 1, true);     // another model below its share gets in
        check(11, 3, 2, 8, 1, true);
        check(12, 4, 2, 8, 1, false);   // at its share: full for it too
        check(9, 1, 3, 8, 2, false);    // over its share of 8 / 3
    }

    #[test]
    #[rustfmt::skip]
    fn the_first_job_alternates_between_models() {
        let check = |queued: &[usize], last: Option<usize>, expected: Option<usize>| {
            assert_eq!(first_job(queued.iter().copied(), last), expected, "{queued:?} after {last:?}");
        };
        check(&[], None, None);
        check(&[], Some(1), None);
        check(&[1, 1, 2], None, Some(0));
        check(&[1, 1, 1], Some(1), Some(0));
        check(&[1, 1, 2, 1], Some(1), Some(2));
        check(&[2, 1, 1], Some(1), Some(0));
        check(&[1, 3, 2], Some(1), Some(1));
        check(&[1, 1, 2], Some(3), Some(0));
    }

    /// (first job texts, its longest, queued texts, idle workers, jobs offered as (texts,
    /// longest)) -> which offers were taken and the batch's final size.
    fn check(
        first: (usize, usize),
        queued: usize,
        idle: usize,
        offers: &[(usize, usize)],
        taken: &[bool],
        size: usize,
    ) {
        let mut fill = Fill::start(first.0, first.1, queued, idle, 8, 100);
        let got: Vec<bool> = offers
            .iter()
            .map(|&(texts, longest)| !fill.is_full() && fill.try_add(texts, longest))
            .collect();
        assert_eq!(
            got, taken,
            "first {first:?}, queued {queued}, idle {idle}, offers {offers:?}"
        );
        assert_eq!(fill.texts, size);
    }

    #[test]
    fn batching_rules() {
        // Nobody idle: grow to max_batch_size (8).
        check(
            (1, 5),
            9,
            0,
            &[(1, 5); 9],
            &[true, true, true, true, true, true, true, false, false],
            8,
        );
        // One idle worker and 8 texts in all: take half, leave half.
        check(
            (1, 5),
            7,
            1,
            &[(1, 5); 7],
            &[true, true, true, false, false, false, false],
            4,
        );
        // The first job is taken whole even when larger than the fair share.
        check((6, 5), 0, 1, &[], &[], 6);
        // Token budget (100 padded tokens): 5 texts of up to 20 tokens fit; a sixth text makes
        // 6 x 20 = 120 whatever its own length, and a 60-token text 6 x 60.
        check(
            (1, 10),
            5,
            0,
            &[(4, 20), (1, 60), (1, 5)],
            &[true, false, false],
            5,
        );
        // A long text is skipped, shorter ones behind it still join.
        check((1, 10), 3, 0, &[(1, 60), (2, 10)], &[false, true], 3);
        // A job that would overflow the size limit is skipped, a smaller one still fits.
        check((5, 5), 10, 0, &[(4, 5), (3, 5)], &[false, true], 8);
    }
}
