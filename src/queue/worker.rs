//! One inference worker: a dedicated OS thread that takes a batch ([`next`]: the first job,
//! then as many jobs of the same model version as fit, then which session runs it), runs it
//! ([`run`]) and answers its jobs, or runs a piece of background work when no live job waits.
//! A panic inside inference fails only that batch's jobs; the worker goes on.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use super::job::{Job, Queue, Ran, Reply, Shared, Work};
use super::policy::{first_job, runs_on_all_cores, Fill, SHORT_BATCH};
use super::{Background, ModelKey, PoolError};
use crate::metrics::ModelMetrics;
use crate::model::{Encoded, Model, Scores, Slot};

/// What a worker takes next.
enum Next {
    Batch(Batch),
    Background(Background),
}

/// Jobs to run together, on one session of their model.
struct Batch {
    jobs: Vec<Job>,
    /// Which session of the model runs it.
    slot: Slot,
    /// It is expected to be short (counted in `Queue::short_running`).
    short: bool,
}

/// A batch a worker has finished, reported when it comes back for more.
struct Done {
    /// The configured model it ran for.
    key: ModelKey,
    /// How long it took.
    took: Duration,
    short: bool,
}

/// What a worker found to do.
enum Found<'a> {
    /// The job that starts its batch, with the queue still locked.
    Job(Job, MutexGuard<'a, Queue>),
    Background(Background),
}

/// The worker `index` (its session number): takes work until the pool shuts down.
pub(super) fn worker(index: usize, shared: &Shared) {
    let mut done = None;
    while let Some(next) = next(index, shared, done.take()) {
        match next {
            Next::Batch(batch) => {
                let key = batch.jobs[0].key;
                let (slot, short) = (batch.slot, batch.short);
                let started = Instant::now();
                let mut took = Duration::ZERO;
                run(index, slot, batch.jobs, || {
                    took = started.elapsed();
                    finished_computing(shared, slot);
                });
                done = Some(Done { key, took, short });
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

/// Records the worker's finished batch (`done`), waits for work and takes a batch, or
/// background work when no live job waits; `None` once the queue is closed and empty
/// (background work left then is dropped).
fn next(index: usize, shared: &Shared, done: Option<Done>) -> Option<Next> {
    let mut queue = shared.lock();
    if let Some(done) = done {
        queue.last_batch.insert(done.key, done.took);
        queue.short_running -= usize::from(done.short);
    }
    let (first, queue) = match wait_for_work(shared, queue)? {
        Found::Job(job, queue) => (job, queue),
        Found::Background(work) => return Some(Next::Background(work)),
    };
    let (jobs, mut queue) = fill(shared, queue, first);
    shared
        .metrics
        .queue_depth
        .store(queue.texts as i64, Ordering::Relaxed);
    let slot = choose_slot(index, shared, &mut queue, &jobs[0]);
    queue.computing += 1;
    let short = queue
        .last_batch
        .get(&jobs[0].key)
        .is_some_and(|took| *took < SHORT_BATCH);
    queue.short_running += usize::from(short);
    let more = !queue.jobs.is_empty();
    drop(queue);
    if more {
        // Another worker may take the rest of the queue while this one computes. (Waking one
        // when nothing is left would cost a context switch per batch for nothing.)
        shared.available.notify_one();
    }
    Some(Next::Batch(Batch { jobs, slot, short }))
}

/// Waits until there is a job to start a batch with (`policy::first_job`: the oldest of
/// another model than the last batch's, when one waits), or background work and no job;
/// `None` once the queue is closed and empty.
fn wait_for_work<'a>(shared: &'a Shared, mut queue: MutexGuard<'a, Queue>) -> Option<Found<'a>> {
    loop {
        // While a batch runs on every core, this worker's core is taken: it waits.
        let next = match queue.all_cores_busy {
            true => None,
            false => first_job(queue.jobs.iter().map(|job| job.key), queue.last_served),
        };
        if let Some(job) = next.and_then(|index| queue.take(index)) {
            queue.last_served = Some(job.key);
            if let Some(job) = still_wanted(job) {
                return Some(Found::Job(job, queue));
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
            return Some(Found::Background(work));
        }
        queue.idle += 1;
        queue = shared
            .available
            .wait(queue)
            .unwrap_or_else(|p| p.into_inner());
        queue.idle -= 1;
    }
}

/// The batch that `first` starts: the queued jobs of the same model version that fit
/// (`policy::Fill`), waiting up to `max_batch_delay` for more. Tensor jobs run alone.
fn fill<'a>(
    shared: &'a Shared,
    mut queue: MutexGuard<'a, Queue>,
    first: Job,
) -> (Vec<Job>, MutexGuard<'a, Queue>) {
    let config = &shared.config;
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
    if !matches!(batch[0].work, Work::Classify { .. }) {
        return (batch, queue);
    }
    loop {
        let mut index = 0;
        while index < queue.jobs.len() && !fill.is_full() {
            let job = &queue.jobs[index];
            if job.joins(&batch[0]) && fill.try_add(job.texts(), job.longest()) {
                batch.extend(queue.take(index));
            } else {
                index += 1;
            }
        }
        let now = Instant::now();
        if fill.is_full() || now >= fill_until || queue.closed {
            return (batch, queue);
        }
        queue = shared
            .available
            .wait_timeout(queue, fill_until - now)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
}

/// Which session runs the batch `first` starts: the model's all-cores session when the batch
/// is alone (`policy::runs_on_all_cores`; the other workers then take nothing until it ends),
/// else the worker's own.
fn choose_slot(index: usize, shared: &Shared, queue: &mut Queue, first: &Job) -> Slot {
    let alone = runs_on_all_cores(
        shared.in_progress.load(Ordering::Relaxed),
        queue.jobs.len(),
        queue.computing,
        first.model.has_all_cores(),
    );
    if !alone {
        return Slot::Worker(index);
    }
    queue.all_cores_busy = true;
    first
        .metrics
        .all_cores_batches
        .fetch_add(1, Ordering::Relaxed);
    Slot::AllCores
}

/// A worker's batch has been computed (its answers are about to go out): its core is free.
/// After an all-cores batch the other workers may take work again.
fn finished_computing(shared: &Shared, slot: Slot) {
    let mut queue = shared.lock();
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

/// Answers jobs nobody waits for (client gone) or that are past their deadline.
fn still_wanted(job: Job) -> Option<Job> {
    if job.abandoned() {
        return None;
    }
    if Instant::now() >= job.deadline {
        job.fail(PoolError::DeadlineExceeded);
        return None;
    }
    Some(job)
}

/// Runs a batch on the session of `slot` and answers its jobs; `computed` is called once
/// inference is over, before the answers go out (an answer lets its client send the next
/// request, which must find this worker's core free, see [`finished_computing`]).
fn run(worker: usize, slot: Slot, batch: Vec<Job>, computed: impl FnOnce()) {
    let batch: Vec<Job> = batch.into_iter().filter_map(still_wanted).collect();
    let Some(first) = batch.first() else {
        computed();
        return;
    };
    let started = Instant::now();
    for job in &batch {
        job.metrics
            .queue_seconds
            .observe_duration(started - job.enqueued);
    }
    // Jobs of one batch share their model version, hence their configured model.
    let (model, metrics) = (first.model.clone(), first.metrics.clone());
    let mut traces = Vec::new();
    let mut texts = Vec::new();
    let mut tensors = Vec::new();
    let size: usize = batch.iter().map(Job::texts).sum();
    let mut tokens = 0;
    for job in batch {
        if let Some(trace) = job.trace {
            traces.push((trace, job.enqueued));
        }
        let ran = Ran {
            batch: size,
            waited: started - job.enqueued,
        };
        match job.work {
            Work::Classify { texts: part, reply } => {
                tokens += part.iter().map(|text| text.ids.len()).sum::<usize>();
                texts.push((part, reply, ran));
            }
            Work::Tensors { inputs, reply } => tensors.push((inputs, reply, ran)),
        }
    }
    let mut finished = None;
    let computed = || {
        finished = Some(Instant::now());
        computed();
    };
    let failed = if texts.is_empty() {
        run_tensors(slot, &model, &metrics, tensors, started, computed)
    } else {
        run_classify(slot, &model, &metrics, texts, started, computed)
    };
    if !traces.is_empty() {
        crate::telemetry::record_batch(crate::telemetry::BatchTrace {
            model: &model.info.name,
            version: &model.info.version,
            worker,
            all_cores: matches!(slot, Slot::AllCores),
            size,
            tokens,
            started,
            finished: finished.unwrap_or_else(Instant::now),
            requests: traces
                .iter()
                .map(|(trace, queued)| (trace, *queued))
                .collect(),
            failed,
        });
    }
}

type TensorJob = (
    Vec<crate::model::tensor::NamedTensor>,
    Reply<Vec<crate::model::tensor::NamedTensor>>,
    Ran,
);
type ClassifyJob = (Vec<Encoded>, Reply<Vec<Scores>>, Ran);

/// Runs tensor calls one by one (they are never batched) and answers each; says whether one
/// failed.
fn run_tensors(
    slot: Slot,
    model: &Model,
    metrics: &ModelMetrics,
    jobs: Vec<TensorJob>,
    started: Instant,
    computed: impl FnOnce(),
) -> bool {
    let mut failed = false;
    let mut answers = Vec::with_capacity(jobs.len());
    for (inputs, reply, ran) in jobs {
        let result = catch_unwind(AssertUnwindSafe(|| model.run_tensors(slot, inputs)));
        let answer = match result {
            Ok(Ok(outputs)) => Ok((outputs, ran)),
            Ok(Err(err)) => Err(PoolError::Infer(err)),
            Err(panic) => Err(PoolError::Panicked(panic_message(&panic))),
        };
        count_jobs(metrics, 1, answer.is_err());
        failed |= answer.is_err();
        metrics.observe_inference(started.elapsed());
        answers.push((reply, answer));
    }
    computed();
    for (reply, answer) in answers {
        let _ = reply.send(answer);
    }
    failed
}

/// Runs the texts of every job as one batch and answers each job with its part; says whether
/// it failed.
fn run_classify(
    slot: Slot,
    model: &Model,
    metrics: &ModelMetrics,
    jobs: Vec<ClassifyJob>,
    started: Instant,
    computed: impl FnOnce(),
) -> bool {
    let texts: Vec<&Encoded> = jobs.iter().flat_map(|(texts, ..)| texts.iter()).collect();
    metrics.batch_size.observe(texts.len() as f64);
    crate::failpoints::sleep("HOTSERVE_TEST_INFERENCE_DELAY_MS");
    let result = catch_unwind(AssertUnwindSafe(|| model.classify(slot, &texts)));
    computed();
    metrics.observe_inference(started.elapsed());
    let failed = !matches!(result, Ok(Ok(_)));
    count_jobs(metrics, jobs.len(), failed);
    match result {
        Ok(Ok(scores)) => {
            let mut scores = scores.into_iter();
            for (texts, reply, ran) in jobs {
                let part: Vec<Scores> = scores.by_ref().take(texts.len()).collect();
                let _ = reply.send(Ok((part, ran)));
            }
        }
        Ok(Err(err)) => {
            for (_, reply, _) in jobs {
                let _ = reply.send(Err(PoolError::Infer(err.clone())));
            }
        }
        Err(panic) => {
            let message = panic_message(&panic);
            tracing::error!(%message, "inference panicked; the batch's requests fail, the worker continues");
            for (_, reply, _) in jobs {
                let _ = reply.send(Err(PoolError::Panicked(message.clone())));
            }
        }
    }
    failed
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
