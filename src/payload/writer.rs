//! The writer's loop, one thread per sink: every [`WRITE_EVERY`] it takes what the requests
//! handed over, makes the records ([`record::events`]) and delivers them in one batch. It
//! never sleeps on the channel (a writer blocked in `recv` is woken by every record, which cost
//! the access log a quarter of its throughput, `src/access.rs`).
//!
//! A sink that fails (a write error, a refused connection, a non-2xx answer) is down: the loop
//! logs that once, keeps what it could not deliver and stops taking records, so the channel
//! fills to its bound and further records are dropped and counted by the request path. It then
//! retries the oldest record alone, with backoff ([`FIRST_RETRY`] doubling to [`LAST_RETRY`]);
//! when one is delivered it logs once that the sink is back and delivers the rest.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::Duration;

use super::record::{self, Event, Logged};
use crate::metrics::Metrics;

/// How often the writer wakes to deliver what has arrived.
pub const WRITE_EVERY: Duration = Duration::from_millis(50);
/// The first wait before a sink that is down is tried again.
pub const FIRST_RETRY: Duration = Duration::from_millis(200);
/// The longest wait between tries of a sink that is down.
pub const LAST_RETRY: Duration = Duration::from_secs(5);

/// A place records go: a file, or an HTTP endpoint.
pub trait Deliver {
    /// What the logs call the sink: its path, or its URL without credentials or query.
    fn describe(&self) -> String;
    /// The `outcome` label of a delivered record in `hotserve_payload_log_records_total`.
    fn outcome(&self) -> &'static str;
    /// Delivers `events`, in order as far as the sink keeps order; on failure, gives back
    /// those it did not deliver (in order) and why.
    fn deliver(&mut self, events: Vec<Event>) -> Result<(), Undelivered>;
}

/// What a failed delivery left.
pub struct Undelivered {
    pub events: Vec<Event>,
    pub error: String,
}

/// What a sink's writer shares with the requests that feed it.
#[derive(Default)]
pub struct Shared {
    /// The approximate bytes of the records in the channel (the queue's bound in bytes).
    pub queued_bytes: AtomicUsize,
    /// Set when the feeding side is gone: deliver what is left once and end.
    pub closed: AtomicBool,
}

/// Runs the writer of `sink` until the feeding side is gone. `entries` carry each logged
/// prediction with its approximate size.
pub fn run(
    mut sink: impl Deliver,
    entries: Receiver<(Logged, usize)>,
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
) {
    let outcome = sink.outcome();
    let mut waiting: VecDeque<Event> = VecDeque::new();
    // Some while the sink is down: the wait before the next try.
    let mut retry: Option<Duration> = None;
    loop {
        // Parked rather than asleep, so the drain can wake it (`PayloadLogs::finish`).
        std::thread::park_timeout(retry.unwrap_or(WRITE_EVERY));
        let closed = shared.closed.load(Ordering::Acquire);
        if retry.is_none() || closed {
            while let Ok((logged, bytes)) = entries.try_recv() {
                shared.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
                waiting.extend(record::events(logged, bytes));
            }
        }
        if waiting.is_empty() {
            if closed {
                return;
            }
            continue;
        }
        // A sink that is down is tried with one record; everything once it is up (or at the end).
        let batch: Vec<Event> = match retry {
            Some(_) if !closed => waiting.pop_front().into_iter().collect(),
            _ => waiting.drain(..).collect(),
        };
        let tried = batch.len();
        match sink.deliver(batch) {
            Ok(()) => {
                metrics
                    .payload_log_records
                    .add(&[("outcome", outcome)], tried as u64);
                if retry.take().is_some() {
                    tracing::info!(sink = %sink.describe(), "payload log sink is back; delivering the records kept meanwhile");
                }
            }
            Err(undelivered) => {
                let delivered = tried - undelivered.events.len();
                if delivered > 0 {
                    metrics
                        .payload_log_records
                        .add(&[("outcome", outcome)], delivered as u64);
                }
                for event in undelivered.events.into_iter().rev() {
                    waiting.push_front(event);
                }
                retry = Some(match retry {
                    None => {
                        tracing::warn!(sink = %sink.describe(), error = %undelivered.error, "payload log sink is down; its records are kept up to the queue's bound, then dropped and counted in hotserve_payload_log_dropped_total, until it is back");
                        FIRST_RETRY
                    }
                    Some(wait) => (wait * 2).min(LAST_RETRY),
                });
            }
        }
        if closed {
            metrics
                .payload_log_dropped
                .fetch_add(waiting.len() as u64, Ordering::Relaxed);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::record::{Protocol, Status};
    use std::sync::mpsc::sync_channel;
    use std::sync::Mutex;
    use std::time::SystemTime;

    /// A sink that fails while `down` is set and records what it was given.
    struct Fake {
        down: Arc<AtomicBool>,
        got: Arc<Mutex<Vec<String>>>,
    }

    impl Deliver for Fake {
        fn describe(&self) -> String {
            "fake".into()
        }
        fn outcome(&self) -> &'static str {
            "written"
        }
        fn deliver(&mut self, events: Vec<Event>) -> Result<(), Undelivered> {
            if self.down.load(Ordering::SeqCst) {
                return Err(Undelivered {
                    events,
                    error: "down".into(),
                });
            }
            let mut got = self.got.lock().unwrap();
            got.extend(
                events
                    .iter()
                    .map(|e| format!("{}:{:?}", e.about.request_id, e.kind)),
            );
            Ok(())
        }
    }

    fn logged(id: &str) -> Logged {
        Logged {
            request_id: id.into(),
            trace_id: None,
            model: "m".into(),
            version: Some("1".into()),
            protocol: Protocol::Http,
            route: "/predict",
            arrived: SystemTime::UNIX_EPOCH,
            answered: SystemTime::UNIX_EPOCH,
            duration: Duration::ZERO,
            inputs: None,
            inputs_omitted: false,
            status: Status::Http(200),
            outputs: None,
            error: None,
        }
    }

    fn wait_for(what: impl Fn() -> bool) {
        for _ in 0..500 {
            if what() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("timed out");
    }

    #[test]
    fn a_sink_that_is_down_keeps_its_records_and_gets_them_when_back() {
        let down = Arc::new(AtomicBool::new(true));
        let got = Arc::new(Mutex::new(Vec::new()));
        let (sender, receiver) = sync_channel(16);
        let shared = Arc::new(Shared::default());
        let metrics = Arc::new(Metrics::default());
        let sink = Fake {
            down: down.clone(),
            got: got.clone(),
        };
        let writer = {
            let (shared, metrics) = (shared.clone(), metrics.clone());
            std::thread::spawn(move || run(sink, receiver, shared, metrics))
        };
        sender.send((logged("a"), 0)).unwrap();
        sender.send((logged("b"), 0)).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        assert!(got.lock().unwrap().is_empty());
        down.store(false, Ordering::SeqCst);
        wait_for(|| got.lock().unwrap().len() == 4);
        assert_eq!(
            *got.lock().unwrap(),
            ["a:Request", "a:Response", "b:Request", "b:Response"]
        );
        assert!(metrics
            .render()
            .contains("hotserve_payload_log_records_total{outcome=\"written\"} 4"));
        shared.closed.store(true, Ordering::Release);
        drop(sender);
        writer.join().unwrap();
    }
}
