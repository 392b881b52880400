//! The access log (`access_log`): one structured record per HTTP request and gRPC call, with the time, the
//! method, the route (as the metrics name it) and the path, the status, the duration, the
//! response's bytes, the model and version that answered, the request id, the trace id (the
//! request's span's when traces are exported, else the caller's W3C `traceparent`), and for a
//! prediction the size of the inference batch that ran it and its wait in the queue (the queue
//! notes them in a task-local the request runs in, [`noting`]).
//!
//! - `log`: written with the daemon's log output, in its format (text or JSON), as events of
//!   the target `hotserve::access`, so a log filter can drop or route them
//!   (`HOTSERVE_LOG_LEVEL=info,hotserve::access=off`).
//! - a path: JSON lines appended to that file by a thread of its own. A request hands its line
//!   over a bounded channel and never waits: when the writer is behind (a slow disk), lines are
//!   dropped and counted (`hotserve_access_log_dropped_total`) instead. The file is opened in
//!   append mode, so `logrotate`'s `copytruncate` works.
//! - `off` (the default): nothing, at no cost.
//!
//! Cost, measured with `bench/ab.sh` on the bundled model at c=64 (about 40,000 requests a
//! second on two cores, bench/README.md): a file keeps 0.95x of the throughput on `/predict`
//! and 0.91x on the OIP route; `log` keeps 0.83x and 0.88x, because the log output is written
//! as it comes, on the thread that logs.

use std::cell::Cell;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::config::AccessLogTo;
use crate::metrics::Metrics;

/// Lines waiting for the file writer; past this, lines are dropped (about 30 MB of lines).
const QUEUED_LINES: usize = 65_536;

/// Where access records go, as configured.
pub struct AccessLog {
    sink: Sink,
}

enum Sink {
    Off,
    Log,
    File {
        lines: SyncSender<String>,
        metrics: Arc<Metrics>,
    },
}

/// Why the access log file cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("access_log {path}: {source}; set HOTSERVE_ACCESS_LOG to a writable file, log or off")]
pub struct OpenError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// One request, as the access log records it.
#[derive(Debug, Serialize)]
pub struct Record<'a> {
    /// When the request arrived (RFC 3339, UTC).
    pub time: String,
    pub method: &'a str,
    /// The route as the metrics name it (`/models/{name}/predict`; gRPC: the method's path,
    /// `/inference.GRPCInferenceService/ModelInfer`).
    pub route: &'a str,
    pub path: &'a str,
    /// The HTTP status (200 for every gRPC call that was answered; see `grpc_status`).
    pub status: u16,
    /// A gRPC call's status code (0 is OK, 1 CANCELLED, ...).
    pub grpc_status: Option<i32>,
    pub duration_ms: f64,
    /// The response body's bytes.
    pub bytes: Option<u64>,
    pub model: Option<&'a str>,
    pub version: Option<&'a str>,
    pub request_id: &'a str,
    /// The request's trace id: its span's when traces are exported, else the caller's, from a
    /// valid W3C `traceparent` header.
    pub trace_id: Option<&'a str>,
    /// Texts (or tensor calls) in the inference batch that ran the request, its own included;
    /// the largest when it was cut into several jobs (`max_batch_size`).
    pub batch_size: Option<usize>,
    /// How long it waited in the queue for a worker; the longest of its jobs.
    pub queue_ms: Option<f64>,
    /// The client's address (gRPC: when the connection gave it).
    pub peer: Option<SocketAddr>,
}

/// What the queue tells the access log about a request: its batch and its wait.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Noted {
    pub batch_size: Option<usize>,
    pub queue_wait: Option<Duration>,
}

tokio::task_local! {
    static NOTED: Cell<Noted>;
}

/// Runs `request` (a request's handling) noting what the queue says of it ([`note_batch`]).
pub async fn noting<F: std::future::Future>(request: F) -> (F::Output, Noted) {
    NOTED
        .scope(Cell::new(Noted::default()), async {
            let output = request.await;
            (output, NOTED.with(Cell::get))
        })
        .await
}

/// Notes the batch of `size` a request's job ran in after waiting `waited`; nothing outside
/// [`noting`] (no access log).
pub fn note_batch(size: usize, waited: Duration) {
    let _ = NOTED.try_with(|noted| {
        let mut seen = noted.get();
        seen.batch_size = Some(seen.batch_size.map_or(size, |s| s.max(size)));
        seen.queue_wait = Some(seen.queue_wait.map_or(waited, |w| w.max(waited)));
        noted.set(seen);
    });
}

impl AccessLog {
    /// No access log.
    pub fn off() -> AccessLog {
        AccessLog { sink: Sink::Off }
    }

    /// The access log `to` asks for; a file is opened (created, appended to) now, so a path
    /// that cannot be written is a configuration error at start.
    pub fn open(to: &AccessLogTo, metrics: Arc<Metrics>) -> Result<AccessLog, OpenError> {
        let sink = match to {
            AccessLogTo::Off => Sink::Off,
            AccessLogTo::Log => Sink::Log,
            AccessLogTo::File(path) => {
                let file = File::options()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| OpenError {
                        path: path.clone(),
                        source,
                    })?;
                let (lines, receiver) = sync_channel(QUEUED_LINES);
                let writer_path = path.clone();
                std::thread::Builder::new()
                    .name("hotserve-access-log".into())
                    .spawn(move || write_lines(file, &writer_path, receiver))
                    .map_err(|source| OpenError {
                        path: path.clone(),
                        source,
                    })?;
                Sink::File { lines, metrics }
            }
        };
        Ok(AccessLog { sink })
    }

    /// Whether records are kept (a handler gathers a record's parts only then).
    pub fn enabled(&self) -> bool {
        !matches!(self.sink, Sink::Off)
    }

    /// Records one request. Never blocks.
    pub fn record(&self, record: &Record) {
        match &self.sink {
            Sink::Off => {}
            Sink::Log => tracing::info!(
                target: "hotserve::access",
                method = record.method,
                route = record.route,
                path = record.path,
                status = record.status,
                grpc_status = record.grpc_status,
                duration_ms = record.duration_ms,
                bytes = record.bytes,
                model = record.model,
                version = record.version,
                request_id = record.request_id,
                trace_id = record.trace_id,
                batch_size = record.batch_size,
                queue_ms = record.queue_ms,
                peer = record.peer.map(tracing::field::display),
                "request"
            ),
            Sink::File { lines, metrics } => {
                let Ok(line) = serde_json::to_string(record) else {
                    return;
                };
                match lines.try_send(line) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                        metrics.access_log_dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }
}

/// How often the file writer wakes to write what has arrived. It never sleeps on the channel
/// itself: a writer blocked in `recv` is woken by every line, a thread wake-up per request,
/// which cost a quarter of the throughput at 40,000 requests a second on two cores (measured
/// with `bench/ab.sh`, bench/README.md).
const WRITE_EVERY: Duration = Duration::from_millis(50);

/// The file writer's loop: every [`WRITE_EVERY`], writes the lines that arrived and flushes.
/// Ends, after writing what is left, when the sending side is gone. A failed write is logged
/// once and the lines are dropped until a write succeeds again.
fn write_lines(file: File, path: &Path, lines: Receiver<String>) {
    let mut out = BufWriter::with_capacity(256 * 1024, file);
    let mut failing = false;
    let report = |result: std::io::Result<()>, failing: &mut bool| match result {
        Ok(()) if *failing => {
            *failing = false;
            tracing::info!(path = %path.display(), "access log writable again");
        }
        Ok(()) => {}
        Err(err) if !*failing => {
            *failing = true;
            tracing::warn!(path = %path.display(), error = %err, "cannot write the access log; dropping its lines until it can");
        }
        Err(_) => {}
    };
    loop {
        std::thread::sleep(WRITE_EVERY);
        let mut result = Ok(());
        let mut wrote = false;
        let ended = loop {
            match lines.try_recv() {
                Ok(line) => {
                    wrote = true;
                    if result.is_ok() {
                        result = writeln!(out, "{line}");
                    }
                }
                Err(TryRecvError::Empty) => break false,
                Err(TryRecvError::Disconnected) => break true,
            }
        };
        if wrote {
            report(result.and_then(|()| out.flush()), &mut failing);
        }
        if ended {
            let _ = out.flush();
            return;
        }
    }
}

/// A request's trace id, as the access and payload logs record it: its span's when traces are
/// exported (the trace it is part of, the caller's or a new one), else the caller's, from a
/// valid `traceparent` value.
pub fn request_trace_id(span: &tracing::Span, traceparent: Option<&str>) -> Option<String> {
    crate::telemetry::trace_id_of(span)
        .or_else(|| traceparent.and_then(trace_id).map(str::to_string))
}

/// The trace id of a W3C `traceparent` value (`00-<32 hex>-<16 hex>-<2 hex>`), when it is
/// valid: version `00` (or a later one, whose first four fields are read the same way), lower
/// case hex, neither id all zeros.
pub fn trace_id(traceparent: &str) -> Option<&str> {
    let mut fields = traceparent.trim().split('-');
    let (version, trace, parent, flags) = (
        fields.next()?,
        fields.next()?,
        fields.next()?,
        fields.next()?,
    );
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let valid = hex(version, 2)
        && version != "ff"
        && (version != "00" || fields.next().is_none())
        && hex(trace, 32)
        && hex(parent, 16)
        && hex(flags, 2)
        && trace.bytes().any(|b| b != b'0')
        && parent.bytes().any(|b| b != b'0');
    valid.then_some(trace)
}

/// Milliseconds, as the records give durations.
pub fn millis(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1e6).round() / 1e3
}

/// `time` as the records give it: RFC 3339, UTC, microseconds.
pub fn timestamp(time: SystemTime) -> String {
    humantime::format_rfc3339_micros(time).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_of_valid_traceparents_only() {
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(trace_id(&format!("00-{id}-00f067aa0ba902b7-01")), Some(id));
        assert_eq!(
            trace_id(&format!("01-{id}-00f067aa0ba902b7-01-x")),
            Some(id)
        );
        for bad in [
            "",
            "00",
            &format!("00-{id}-00f067aa0ba902b7-01-extra"),
            &format!("ff-{id}-00f067aa0ba902b7-01"),
            &format!("00-{}-00f067aa0ba902b7-01", id.to_uppercase()),
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            &format!("00-{id}-0000000000000000-01"),
            &format!("00-{id}-00f067aa0ba902b7"),
            &format!("00-{id}x-00f067aa0ba902b7-01"),
        ] {
            assert_eq!(trace_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn file_records_are_json_lines_and_a_full_queue_drops_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let metrics = Arc::new(Metrics::default());
        let log = AccessLog::open(&AccessLogTo::File(path.clone()), metrics.clone()).unwrap();
        let record = Record {
            time: timestamp(SystemTime::UNIX_EPOCH),
            method: "POST",
            route: "/predict",
            path: "/predict",
            status: 200,
            grpc_status: None,
            duration_ms: millis(Duration::from_micros(1500)),
            bytes: Some(42),
            model: Some("sentiment"),
            version: Some("3"),
            request_id: "0123456789abcdef",
            trace_id: None,
            batch_size: Some(3),
            queue_ms: Some(0.25),
            peer: Some("127.0.0.1:5000".parse().unwrap()),
        };
        log.record(&record);
        log.record(&record);
        drop(log);
        let text = (0..200)
            .find_map(|_| {
                std::thread::sleep(Duration::from_millis(10));
                let text = std::fs::read_to_string(&path).unwrap();
                (text.lines().count() == 2).then_some(text)
            })
            .expect("two lines written");
        let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(line["time"], "1970-01-01T00:00:00.000000Z");
        assert_eq!(line["duration_ms"], 1.5);
        assert_eq!(line["model"], "sentiment");
        assert_eq!(line["trace_id"], serde_json::Value::Null);
        assert_eq!(line["batch_size"], 3);
        assert_eq!(line["queue_ms"], 0.25);

        // A writer that is gone: the lines are counted as dropped, the request goes on.
        let (lines, receiver) = sync_channel(1);
        drop(receiver);
        let gone = AccessLog {
            sink: Sink::File {
                lines,
                metrics: metrics.clone(),
            },
        };
        gone.record(&record);
        assert_eq!(metrics.access_log_dropped.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn the_queue_notes_the_largest_batch_and_the_longest_wait() {
        note_batch(9, Duration::from_millis(9)); // outside a request: nothing, no panic
        let ((), noted) = noting(async {
            note_batch(2, Duration::from_millis(5));
            note_batch(4, Duration::from_millis(1));
        })
        .await;
        assert_eq!(noted.batch_size, Some(4));
        assert_eq!(noted.queue_wait, Some(Duration::from_millis(5)));
        let ((), none) = noting(async {}).await;
        assert_eq!(none, Noted::default());
    }

    #[test]
    fn an_unwritable_path_is_refused_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let err = AccessLog::open(
            &AccessLogTo::File(dir.path().join("missing/access.log")),
            Arc::new(Metrics::default()),
        )
        .err()
        .expect("no such directory");
        assert!(err.to_string().contains("HOTSERVE_ACCESS_LOG"), "{err}");
    }
}
