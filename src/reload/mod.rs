//! Hot reload: where a new version is checked and swapped in.
//!
//! Each configured model has its own [`Reloader`] (source, cache folder, memory of bad
//! versions) and its own task ([`run`]) that owns every check of that model, so two reloads of
//! one model never run at once, and a slow or failing model never holds up another. Triggers — the poll
//! timer (with jitter), the file watcher, `POST /admin/reload`, `POST /hooks/mlflow` and
//! `SIGHUP` — only set a pending flag through [`Triggers`]; a burst of them while a check runs
//! causes exactly one more check. A check ([`check()`]) goes through files named
//! after its steps:
//!
//! - `local.rs` / `remote.rs`: what the source is now (a staged copy of a local directory or
//!   bundle; a registry resolution), and getting its files into the cache;
//! - [`decide`]: what to do with that, as a pure function (keep the live model, skip a version
//!   known to be bad, load the cached copy, or fetch);
//! - `publish.rs`: the validation gate (on the loading thread, [`loader`]) and the swap;
//! - [`report`]: the typed [`Outcome`], told to metrics, logs, `/health` and systemd.
//!
//! A failed version is remembered and not tried again until the source points somewhere
//! else. Failures are [`ReloadError`]s, which know whether they are worth a quick retry.
//! All file work goes through [`on_disk`] (tokio's blocking pool) or the loading thread.

pub mod budget;
pub mod cache;
mod check;
pub mod decide;
pub mod disk;
mod error;
pub mod loader;
mod local;
mod publish;
mod reloader;
mod remote;
pub mod report;
pub mod watch;
pub mod webhook;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

pub use crate::live::status::{Attempt, CheckResult, Trigger};
pub use check::check;
pub use error::{ReloadError, SetupError};
pub use local::check_links;
pub use reloader::{Plan, Reloader, Source};
pub use report::Outcome;

/// Runs file-system work of the reload path on tokio's blocking pool. Every `std::fs` call of
/// the pipeline goes through here (or through the loading thread), so the async runtime never
/// waits on the disk.
pub(crate) async fn on_disk<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ReloadError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| ReloadError::Blocking(err.to_string()))
}

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
    /// The first trigger requested since the last check started.
    reason: Option<Trigger>,
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
    /// Asks for a check; `reason` names the trigger in logs and `/health` (the first one
    /// requested since the last check started, or [`Trigger::Signal`] if any was). Returns a
    /// ticket for [`Triggers::wait_for`].
    pub fn request(&self, reason: Trigger) -> u64 {
        let mut pending = self.lock();
        // The first reason names the check, except that a signal always wins: systemd's
        // `Type=notify-reload` waits for the RELOADING=1 / READY=1 pair only a check started
        // by the signal sends, so a SIGHUP coalesced into a pending watch or webhook check
        // must not lose its name.
        if pending.reason.is_none() || reason == Trigger::Signal {
            pending.reason = Some(reason);
        }
        pending.requested += 1;
        let ticket = pending.requested;
        drop(pending);
        self.state.notify.notify_one();
        ticket
    }

    /// Takes the pending request, if any, without waiting; the check that follows serves
    /// every ticket handed out so far.
    pub fn take(&self) -> Option<Trigger> {
        let mut pending = self.lock();
        let reason = pending.reason.take()?;
        pending.taken = pending.requested;
        Some(reason)
    }

    /// Waits for a request and takes it.
    pub async fn next(&self) -> Trigger {
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
    // When the next poll or retry is due (kept across the loads a request asks for).
    let mut due: Option<tokio::time::Instant> = None;
    loop {
        let wait = match (backoff, poll) {
            (Some(backoff), Some(poll)) => backoff.min(poll),
            (Some(backoff), None) => backoff,
            (None, Some(poll)) => jittered(poll, reloader.config.poll_jitter),
            (None, None) => NEVER,
        };
        let at = *due.get_or_insert_with(|| tokio::time::Instant::now() + wait);
        let (reason, triggered) = tokio::select! {
            reason = triggers.next() => (reason, true),
            // A request (or the API) wants the parked model in memory: load the version set
            // aside, without asking the registry.
            reason = reloader.live.demanded() => {
                let load = publish::load_parked(&reloader, reason.as_str());
                tokio::select! {
                    _ = load => {}
                    _ = &mut shutdown => return,
                }
                continue;
            }
            _ = tokio::time::sleep_until(at) => (if backoff.is_some() { Trigger::Retry } else { Trigger::Poll }, false),
            _ = &mut shutdown => return,
        };
        due = None;
        // A check may wait minutes for a shadow evaluation or a guard window: a shutdown ends
        // it (the candidate is dropped, the live model stays).
        let outcome = tokio::select! {
            outcome = check(&reloader, reason) => outcome,
            _ = &mut shutdown => return,
        };
        if triggered {
            triggers.finished();
        }
        backoff = next_backoff(backoff, outcome.retry_soon());
    }
}

/// A wait that never ends in practice: no polling, triggers only.
const NEVER: Duration = Duration::from_secs(365 * 24 * 3600);

/// The retry delay after a check: none after a check that needs no quick retry, else 1 s,
/// doubling up to 5 minutes (capped further by the poll interval in [`run`]).
fn next_backoff(previous: Option<Duration>, retry_soon: bool) -> Option<Duration> {
    const FIRST: Duration = Duration::from_secs(1);
    const MAX: Duration = Duration::from_secs(300);
    retry_soon.then(|| previous.map_or(FIRST, |backoff| (backoff * 2).min(MAX)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_triggers_causes_one_check() {
        let triggers = Triggers::default();
        for _ in 0..100 {
            triggers.request(Trigger::Poll);
        }
        triggers.request(Trigger::Admin);
        assert_eq!(
            triggers.next().await,
            Trigger::Poll,
            "the first reason is kept"
        );
        assert_eq!(
            triggers.take(),
            None,
            "the burst was coalesced into one request"
        );
        // Paused time: an hour passes at once if nothing else can happen.
        let waiting = tokio::time::timeout(Duration::from_secs(3600), triggers.next()).await;
        assert!(waiting.is_err(), "no second check is pending");
    }

    #[tokio::test]
    async fn a_trigger_during_a_check_causes_one_more() {
        let triggers = Triggers::default();
        triggers.request(Trigger::Webhook);
        assert_eq!(triggers.next().await, Trigger::Webhook);
        // A check is running now; more triggers arrive.
        triggers.request(Trigger::Signal);
        triggers.request(Trigger::Admin);
        assert_eq!(triggers.next().await, Trigger::Signal);
        assert_eq!(triggers.take(), None);
    }

    #[tokio::test]
    async fn a_signal_names_the_check_it_is_coalesced_into() {
        let triggers = Triggers::default();
        triggers.request(Trigger::Watch);
        triggers.request(Trigger::Signal);
        triggers.request(Trigger::Admin);
        assert_eq!(triggers.next().await, Trigger::Signal);
        assert_eq!(triggers.take(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn tickets_are_served_by_a_check_that_started_after_them() {
        let triggers = Triggers::default();
        let first = triggers.request(Trigger::Admin);
        assert_eq!(triggers.next().await, Trigger::Admin);
        // Requested while that check runs: it needs the next check.
        let second = triggers.request(Trigger::Admin);
        triggers.finished();
        assert!(triggers.wait_for(first, Duration::from_secs(60)).await);
        assert!(!triggers.wait_for(second, Duration::from_secs(60)).await);
        assert_eq!(triggers.next().await, Trigger::Admin);
        triggers.finished();
        assert!(triggers.wait_for(second, Duration::from_secs(60)).await);
    }

    #[test]
    fn backoff_doubles_up_to_five_minutes_and_resets_after_success() {
        let s = Duration::from_secs;
        let cases = [
            (None, true, Some(s(1))),
            (Some(s(1)), true, Some(s(2))),
            (Some(s(128)), true, Some(s(256))),
            (Some(s(256)), true, Some(s(300))),
            (Some(s(300)), true, Some(s(300))),
            (Some(s(64)), false, None),
            (None, false, None),
        ];
        for (previous, retry_soon, expected) in cases {
            assert_eq!(
                next_backoff(previous, retry_soon),
                expected,
                "{previous:?} {retry_soon}"
            );
        }
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
