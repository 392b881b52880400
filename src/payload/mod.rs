//! Payload logging (`payload_log`): a sample of what models were asked and what they answered,
//! for audits, drift analysis and the next training set. Each sampled prediction gives a
//! request record (request id, trace id, model, version, protocol and route, arrival time,
//! inputs) and a response record (answer time, duration, status, outputs, or the error the
//! client got), on every route and protocol that predicts.
//!
//! - **Where:** a file (`record.rs`'s JSON lines, rotated by size, `file.rs`) or an HTTP
//!   endpoint (CloudEvents in binary mode, as KServe's request logger sends them,
//!   `cloudevents.rs`), daemon-wide or per model ([`crate::config::Config::payload_for`]).
//! - **Which:** `payload_log_sample` decides once per request, when its route has its model
//!   ([`Policy::sample`]), so records come in pairs; `payload_log_inputs: false` leaves the
//!   inputs out. Off, a model has no [`Policy`] and a request pays one `Option` test.
//! - **On the request path** ([`Exchange`]): the transport samples, `crate::predict` hands
//!   over copies of the inputs and outputs it already holds, and the transport finishes the
//!   exchange with the status and the error message; [`Queue::offer`] then `try_send`s the
//!   owned data to the sink's writer. Nothing is serialized and nothing waits there: when the
//!   queue is full (`payload_log_queue` predictions or [`QUEUED_BYTES`] bytes), the pair is
//!   dropped and counted (`hotserve_payload_log_dropped_total`).
//! - **On the writer's thread** (one per destination, `writer.rs`): every 50 ms, records are
//!   made and delivered (`hotserve_payload_log_records_total{outcome="written"|"sent"}`); a
//!   sink that fails is down: logged once, retried with backoff while the queue holds what
//!   arrives, logged once when it is back.
//!
//! Cost, measured with `bench/ab.sh` on the bundled model at c=64 on two shared cores
//! (bench/README.md, "Payload logging's cost"): a file at sample 1.0 keeps about 0.97x of the
//! throughput on `/predict` and 0.84-0.88x on the OIP route at 35,000-45,000 requests a second.
//! Nearly all of it is the writer's thread (3-4 µs per logged prediction: JSON, the file's
//! write, freeing what the request handed over) competing for the two saturated cores; the
//! request path's share does not show beside the run-to-run spread.

mod cloudevents;
mod file;
pub mod record;
mod writer;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use crate::config::{Config, PayloadLogTo};
use crate::metrics::Metrics;
use crate::model::tensor::NamedTensor;
use crate::model::Scores;
use record::{approximate_bytes, Logged};
pub use record::{Inputs, Outputs, Protocol, Status};
use writer::Shared;

/// The bytes of inputs and outputs waiting for a sink's writer (approximately); past this, new
/// predictions are dropped and counted. A sink that is down may hold as much again in the
/// records it could not deliver.
pub const QUEUED_BYTES: usize = 64 * 1024 * 1024;

/// One model's payload logging: its share, whether inputs are kept, and its sink's queue.
pub struct Policy {
    /// The configured model name.
    model: String,
    sample: f64,
    inputs: bool,
    queue: Arc<Queue>,
}

/// The feeding side of one sink: the channel to its writer and the counts they share.
pub struct Queue {
    entries: SyncSender<(Logged, usize)>,
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
}

/// Why a payload log cannot be used at start.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("payload_log {path}: {source}; set HOTSERVE_PAYLOAD_LOG (or a model's payload_log) to a writable file, an http(s):// URL or off")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("payload_log {url}: {source}; set HOTSERVE_PAYLOAD_LOG (or a model's payload_log) to a writable file, an http(s):// URL or off")]
    Sink { url: String, source: std::io::Error },
}

/// What a transport knows of a request when it samples it.
pub struct Seen<'a> {
    /// The `x-request-id` the client gets (gRPC: see [`record::Logged::request_id`]).
    pub request_id: &'a str,
    /// The request's trace id (`access::request_trace_id` over HTTP; the caller's
    /// `traceparent` over gRPC, sampled before the call's span exists).
    pub trace_id: Option<&'a str>,
    pub protocol: Protocol,
    /// The route as the metrics name it.
    pub route: &'static str,
}

/// One sampled request in progress: what it was asked and answered so far.
pub struct Exchange {
    queue: Arc<Queue>,
    inputs_logged: bool,
    started: Instant,
    /// Filled by the prediction path, taken at [`Exchange::finish`]; never contended (one
    /// request's steps run one after another), a lock only because a future holding a
    /// reference must be `Send`.
    logged: Mutex<Logged>,
}

/// The payload logs of the daemon: each model's policy and the writers behind them.
pub struct PayloadLogs {
    /// By configured model name; a model that logs nothing has none.
    pub policies: HashMap<String, Arc<Policy>>,
    writers: Vec<Writer>,
}

/// One sink's writer thread.
struct Writer {
    shared: Arc<Shared>,
    thread: std::thread::JoinHandle<()>,
}

impl PayloadLogs {
    /// Asks every writer to deliver what is queued and end, and waits for them (blocking: the
    /// caller bounds the wait). The drain calls it once nothing is answered any more.
    pub fn finish(self) {
        for writer in &self.writers {
            writer.shared.closed.store(true, Ordering::Release);
            writer.thread.thread().unpark();
        }
        for writer in self.writers {
            let _ = writer.thread.join();
        }
    }
}

/// The payload logs of the configured models, by name: one writer thread per destination.
/// A file that cannot be opened is an error now.
pub fn open(
    config: &Config,
    names: &[String],
    host: &str,
    namespace: Option<&str>,
    metrics: &Arc<Metrics>,
) -> Result<PayloadLogs, OpenError> {
    let mut queues: Vec<(PayloadLogTo, Arc<Queue>)> = Vec::new();
    let mut writers = Vec::new();
    let mut policies = HashMap::new();
    for name in names {
        let Some(wanted) = config.payload_for(name) else {
            continue;
        };
        let queue = match queues.iter().find(|(to, _)| *to == wanted.to) {
            Some((_, queue)) => queue.clone(),
            None => {
                let (queue, writer) = start(config, &wanted.to, host, namespace, metrics)?;
                let queue = Arc::new(queue);
                queues.push((wanted.to.clone(), queue.clone()));
                writers.push(writer);
                queue
            }
        };
        policies.insert(
            name.clone(),
            Arc::new(Policy {
                model: name.clone(),
                sample: wanted.sample,
                inputs: wanted.inputs,
                queue,
            }),
        );
    }
    Ok(PayloadLogs { policies, writers })
}

/// Opens the sink `to` and starts its writer.
fn start(
    config: &Config,
    to: &PayloadLogTo,
    host: &str,
    namespace: Option<&str>,
    metrics: &Arc<Metrics>,
) -> Result<(Queue, Writer), OpenError> {
    let (entries, receiver) = sync_channel(config.payload_log_queue);
    let shared = Arc::new(Shared::default());
    let (writer_shared, writer_metrics) = (shared.clone(), metrics.clone());
    let spawned = match to {
        PayloadLogTo::Off => unreachable!("payload_for gives no policy for off"),
        PayloadLogTo::File(path) => {
            let file = file::RotatingFile::open(
                path,
                config.payload_log_max_bytes,
                config.payload_log_max_files,
            )
            .map_err(|source| OpenError::File {
                path: path.clone(),
                source,
            })?;
            std::thread::Builder::new()
                .name("hotserve-payload-log".into())
                .spawn(move || writer::run(file, receiver, writer_shared, writer_metrics))
                .map_err(|source| OpenError::File {
                    path: path.clone(),
                    source,
                })
        }
        PayloadLogTo::Http(url) => {
            let failed = |source| OpenError::Sink {
                url: url.as_str().to_string(),
                source,
            };
            let (url, host, namespace) =
                (url.clone(), host.to_string(), namespace.map(str::to_string));
            // The sink's runtime is built on its own thread: a runtime may not be created or
            // dropped inside the serving one.
            std::thread::Builder::new()
                .name("hotserve-payload-post".into())
                .spawn(move || match cloudevents::CloudEventsSink::new(url, host, namespace) {
                    Ok(sink) => writer::run(sink, receiver, writer_shared, writer_metrics),
                    Err(err) => tracing::error!(%err, "cannot start the payload log's HTTP client; payload records are dropped"),
                })
                .map_err(failed)
        }
    };
    let writer = Writer {
        shared: shared.clone(),
        thread: spawned?,
    };
    let queue = Queue {
        entries,
        shared,
        metrics: metrics.clone(),
    };
    Ok((queue, writer))
}

/// A request id for a request that came without one (gRPC): 16 hex digits.
pub fn new_request_id() -> String {
    format!("{:016x}", fastrand::u64(..))
}

impl Policy {
    /// Whether this request is logged, decided once: an [`Exchange`] to fill when it is.
    pub fn sample(&self, seen: Seen) -> Option<Exchange> {
        if self.sample < 1.0 && fastrand::f64() >= self.sample {
            return None;
        }
        Some(Exchange {
            queue: self.queue.clone(),
            inputs_logged: self.inputs,
            started: Instant::now(),
            logged: Mutex::new(Logged {
                request_id: seen.request_id.to_string(),
                trace_id: seen.trace_id.map(str::to_string),
                model: self.model.clone(),
                version: None,
                protocol: seen.protocol,
                route: seen.route,
                arrived: SystemTime::now(),
                answered: SystemTime::UNIX_EPOCH,
                duration: Default::default(),
                inputs: None,
                inputs_omitted: !self.inputs,
                status: Status::Http(0),
                outputs: None,
                error: None,
            }),
        })
    }
}

impl Exchange {
    /// A text model's version and texts (copied only when inputs are logged).
    pub fn texts(&self, version: &str, texts: &[String]) {
        let inputs = self.inputs_logged.then(|| Inputs::Texts(texts.to_vec()));
        self.with(|logged| {
            logged.version = Some(version.to_string());
            logged.inputs = inputs;
        });
    }

    /// A tensor model's version and input tensors (copied only when inputs are logged).
    pub fn tensors(&self, version: &str, tensors: &[NamedTensor]) {
        let inputs = self
            .inputs_logged
            .then(|| Inputs::Tensors(tensors.to_vec()));
        self.with(|logged| {
            logged.version = Some(version.to_string());
            logged.inputs = inputs;
        });
    }

    /// A text model's answer: its labels and one row of probabilities per text.
    pub fn scores(&self, labels: &[String], scores: &[Scores]) {
        let outputs = Outputs::Scores {
            labels: labels.to_vec(),
            scores: scores.to_vec(),
        };
        self.with(|logged| logged.outputs = Some(outputs));
    }

    /// A tensor model's output tensors.
    pub fn outputs(&self, tensors: &[NamedTensor]) {
        let outputs = Outputs::Tensors(tensors.to_vec());
        self.with(|logged| logged.outputs = Some(outputs));
    }

    /// The error message the client gets.
    pub fn failed(&self, message: &str) {
        let message = message.to_string();
        self.with(|logged| logged.error = Some(message));
    }

    /// The request is answered with `status`: hands the pair to the sink's writer. Never
    /// blocks; a full queue drops the pair and counts its two records.
    pub fn finish(self, status: Status) {
        let mut logged = self.logged.into_inner().unwrap_or_else(|p| p.into_inner());
        logged.status = status;
        logged.answered = SystemTime::now();
        logged.duration = self.started.elapsed();
        self.queue.offer(logged);
    }

    fn with(&self, change: impl FnOnce(&mut Logged)) {
        change(&mut self.logged.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

impl Queue {
    /// Hands `logged` to the writer, or drops it (and counts its two records) when the queue
    /// is full.
    fn offer(&self, logged: Logged) {
        let bytes = approximate_bytes(&logged);
        let queued = self.shared.queued_bytes.fetch_add(bytes, Ordering::Relaxed);
        if queued + bytes > QUEUED_BYTES || self.entries.try_send((logged, bytes)).is_err() {
            self.shared.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
            self.metrics
                .payload_log_dropped
                .fetch_add(2, Ordering::Relaxed);
        }
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(
        sample: f64,
        capacity: usize,
    ) -> (Policy, std::sync::mpsc::Receiver<(Logged, usize)>) {
        let (entries, receiver) = sync_channel(capacity);
        let queue = Arc::new(Queue {
            entries,
            shared: Arc::new(Shared::default()),
            metrics: Arc::new(Metrics::default()),
        });
        let policy = Policy {
            model: "m".into(),
            sample,
            inputs: true,
            queue,
        };
        (policy, receiver)
    }

    fn seen() -> Seen<'static> {
        Seen {
            request_id: "r",
            trace_id: None,
            protocol: Protocol::Http,
            route: "/predict",
        }
    }

    #[test]
    fn sampling_takes_its_share() {
        let share = |sample: f64| {
            let (policy, _receiver) = policy(sample, 1);
            (0..10_000)
                .filter(|_| policy.sample(seen()).is_some())
                .count()
        };
        assert_eq!(share(1.0), 10_000);
        assert_eq!(share(0.0), 0);
        let half = share(0.5);
        assert!((4_500..=5_500).contains(&half), "{half}");
    }

    #[test]
    fn an_exchange_hands_over_what_it_was_given_and_a_full_queue_counts_drops() {
        let (policy, receiver) = policy(1.0, 1);
        let exchange = policy.sample(seen()).unwrap();
        exchange.texts("3", &["hi".to_string()]);
        exchange.scores(&["N".into(), "P".into()], &[Scores(vec![0.1, 0.9])]);
        exchange.finish(Status::Http(200));
        let (logged, bytes) = receiver.try_recv().unwrap();
        assert_eq!(logged.version.as_deref(), Some("3"));
        assert_eq!(logged.inputs, Some(Inputs::Texts(vec!["hi".into()])));
        assert_eq!(logged.status, Status::Http(200));
        assert!(logged.outputs.is_some() && logged.error.is_none());
        assert_eq!(bytes, approximate_bytes(&logged));

        let failed = policy.sample(seen()).unwrap();
        failed.failed("bad input");
        failed.finish(Status::Http(400));
        let full = policy.sample(seen()).unwrap();
        full.finish(Status::Http(200));
        assert_eq!(
            policy
                .queue
                .metrics
                .payload_log_dropped
                .load(Ordering::Relaxed),
            2
        );
        let (logged, _) = receiver.try_recv().unwrap();
        assert_eq!(logged.error.as_deref(), Some("bad input"));
        assert_eq!(logged.inputs, None);
    }
}
