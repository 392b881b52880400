//! Hot reload: where a new version is checked and swapped in.
//!
//! One task ([`run`]) owns every check, so two reloads never run at once. Triggers — the poll
//! timer (with jitter), the file watcher, `POST /admin/reload`, `POST /hooks/mlflow` and
//! `SIGHUP` — only set a pending flag through [`Triggers`]; a burst of them while a check runs
//! causes exactly one more check. A check runs the pipeline in [`pipeline`]: resolve, skip if
//! unchanged, download to staging, validate (the gate in [`crate::model::load`]), move into
//! the cache, publish with `ArcSwap`. A failed version is remembered and not retried until the
//! registry points somewhere else.

pub mod cache;
pub mod loader;
pub mod pipeline;
pub mod watch;
pub mod webhook;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

pub use pipeline::{Reloader, Source};

/// Coalescing trigger: any number of [`Triggers::request`] calls between two checks cause one
/// check. Each request gets a ticket, and [`Triggers::wait_for`] waits until a check that
/// started after the request has finished (for `POST /admin/reload?wait=true`). Cheap to clone.
#[derive(Clone)]
pub struct Triggers {
    state: Arc<TriggerState>,
}

struct TriggerState {
    pending: Mutex<Pending>,
    notify: Notify,
    /// The ticket of the last request served by a finished check.
    completed: tokio::sync::watch::Sender<u64>,
}

#[derive(Default)]
struct Pending {
    /// The first reason requested since the last check started.
    reason: Option<&'static str>,
    /// Tickets handed out so far.
    requested: u64,
    /// The last ticket covered by the check now running (or last run).
    taken: u64,
}

impl Default for Triggers {
    fn default() -> Self {
        Triggers {
            state: Arc::new(TriggerState {
                pending: Mutex::new(Pending::default()),
                notify: Notify::new(),
                completed: tokio::sync::watch::channel(0).0,
            }),
        }
    }
}

impl Triggers {
    /// Asks for a check; `reason` names the trigger in logs and `/health`. Returns a ticket
    /// for [`Triggers::wait_for`].
    pub fn request(&self, reason: &'static str) -> u64 {
        let mut pending = self.lock();
        pending.reason.get_or_insert(reason);
        pending.requested += 1;
        let ticket = pending.requested;
        drop(pending);
        self.state.notify.notify_one();
        ticket
    }

    /// Takes the pending request, if any, without waiting; the check that follows serves
    /// every ticket handed out so far.
    pub fn take(&self) -> Option<&'static str> {
        let mut pending = self.lock();
        let reason = pending.reason.take()?;
        pending.taken = pending.requested;
        Some(reason)
    }

    /// Waits for a request and takes it.
    pub async fn next(&self) -> &'static str {
        loop {
            let notified = self.state.notify.notified();
            if let Some(reason) = self.take() {
                return reason;
            }
            notified.await;
        }
    }

    /// Marks the check started by the last [`Triggers::take`] as finished.
    pub fn finished(&self) {
        let taken = self.lock().taken;
        self.state.completed.send_if_modified(|done| {
            let newer = taken > *done;
            *done = (*done).max(taken);
            newer
        });
    }

    /// Waits until a check serving `ticket` has finished; false if `timeout` passed first.
    pub async fn wait_for(&self, ticket: u64, timeout: Duration) -> bool {
        let mut completed = self.state.completed.subscribe();
        tokio::time::timeout(timeout, completed.wait_for(|done| *done >= ticket))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.state.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The delay before the next poll: `interval` ± `jitter` (a fraction), so a fleet started
/// together does not poll in lockstep.
pub fn jittered(interval: Duration, jitter: f64) -> Duration {
    let factor = 1.0 + jitter * (fastrand::f64() * 2.0 - 1.0);
    interval.mul_f64(factor.max(0.0))
}

/// The reload loop: waits for a trigger or the poll timer and runs one check at a time, until
/// `shutdown` fires. After a failed registry check it retries sooner (exponential backoff from
/// 1 s up to the poll interval), so a registry outage at startup is recovered quickly.
pub async fn run(
    reloader: Arc<Reloader>,
    triggers: Triggers,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let poll = reloader.poll_interval();
    let mut backoff: Option<Duration> = None;
    loop {
        let wait = match (backoff, poll) {
            (Some(backoff), Some(poll)) => backoff.min(poll),
            (Some(backoff), None) => backoff,
            (None, Some(poll)) => jittered(poll, reloader.config.poll_jitter),
            (None, None) => Duration::from_secs(365 * 24 * 3600),
        };
        let (reason, triggered) = tokio::select! {
            reason = triggers.next() => (reason, true),
            _ = tokio::time::sleep(wait) => (if backoff.is_some() { "retry" } else { "poll" }, false),
            _ = &mut shutdown => return,
        };
        let ok = reloader.check(reason).await;
        if triggered {
            triggers.finished();
        }
        backoff = if ok {
            None
        } else {
            Some(backoff.map_or(Duration::from_secs(1), |b| {
                (b * 2).min(Duration::from_secs(300))
            }))
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_burst_of_triggers_causes_one_check() {
        let triggers = Triggers::default();
        for _ in 0..100 {
            triggers.request("poll");
        }
        triggers.request("admin");
        assert_eq!(triggers.next().await, "poll", "the first reason is kept");
        assert_eq!(
            triggers.take(),
            None,
            "the burst was coalesced into one request"
        );
        let waiting = tokio::time::timeout(Duration::from_millis(20), triggers.next()).await;
        assert!(waiting.is_err(), "no second check is pending");
    }

    #[tokio::test]
    async fn a_trigger_during_a_check_causes_one_more() {
        let triggers = Triggers::default();
        triggers.request("webhook");
        assert_eq!(triggers.next().await, "webhook");
        // A check is running now; more triggers arrive.
        triggers.request("signal");
        triggers.request("admin");
        assert_eq!(triggers.next().await, "signal");
        assert_eq!(triggers.take(), None);
    }

    #[tokio::test]
    async fn tickets_are_served_by_a_check_that_started_after_them() {
        let triggers = Triggers::default();
        let first = triggers.request("admin");
        assert_eq!(triggers.next().await, "admin");
        // Requested while that check runs: it needs the next check.
        let second = triggers.request("admin");
        triggers.finished();
        assert!(triggers.wait_for(first, Duration::from_millis(10)).await);
        assert!(!triggers.wait_for(second, Duration::from_millis(10)).await);
        assert_eq!(triggers.next().await, "admin");
        triggers.finished();
        assert!(triggers.wait_for(second, Duration::from_millis(10)).await);
    }

    #[test]
    fn jitter_stays_in_bounds() {
        for _ in 0..1000 {
            let d = jittered(Duration::from_secs(30), 0.1);
            assert!(
                d >= Duration::from_secs(27) && d <= Duration::from_secs(33),
                "{d:?}"
            );
        }
        assert_eq!(
            jittered(Duration::from_secs(30), 0.0),
            Duration::from_secs(30)
        );
    }
}
