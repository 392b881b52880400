//! What one check did ([`Outcome`]) and how it is told: the `reloads_total` and
//! `reload_seconds` metrics, one log line, the `/health` status ([`Attempt`]) and systemd's
//! `READY=1` when a model goes live after a failed start. Nothing here decides anything about models.

use std::time::{Duration, SystemTime};

use super::{Attempt, CheckResult, ReloadError, Reloader, Trigger};
use crate::live::describe;

/// What one check did.
#[derive(Debug)]
pub enum Outcome {
    /// The live model is what the source points at.
    Unchanged { version: String },
    /// A new version passed the gate and is live.
    Loaded { version: String },
    /// A new version is valid and set aside on disk, not in memory (the model is lazy or
    /// parked).
    Parked { version: String },
    /// The version found failed the gate before and was not tried again.
    SkippedBad { version: String, why: String },
    /// Nothing new went live.
    Failed {
        /// The version it was about, when the failure came after resolving it.
        version: Option<String>,
        error: ReloadError,
    },
    /// The registry could not be reached with nothing live, so the last known good model was
    /// loaded from the cache; the registry is retried soon.
    ServingCached { version: String, error: ReloadError },
}

impl Outcome {
    pub fn result(&self) -> CheckResult {
        match self {
            Outcome::Unchanged { .. } => CheckResult::Unchanged,
            Outcome::Loaded { .. } => CheckResult::Loaded,
            Outcome::Parked { .. } => CheckResult::Parked,
            Outcome::SkippedBad { .. } => CheckResult::SkippedBad,
            // Serving from the cache is a failed check of the registry.
            Outcome::Failed { .. } | Outcome::ServingCached { .. } => CheckResult::Failed,
        }
    }

    /// True when the next check should come sooner than the poll interval (with backoff).
    pub fn retry_soon(&self) -> bool {
        match self {
            Outcome::Failed { error, .. } => error.is_transient(),
            Outcome::ServingCached { .. } => true,
            Outcome::Unchanged { .. }
            | Outcome::Loaded { .. }
            | Outcome::Parked { .. }
            | Outcome::SkippedBad { .. } => false,
        }
    }

    pub fn version(&self) -> Option<&str> {
        match self {
            Outcome::Unchanged { version }
            | Outcome::Loaded { version }
            | Outcome::Parked { version }
            | Outcome::SkippedBad { version, .. }
            | Outcome::ServingCached { version, .. } => Some(version),
            Outcome::Failed { version, .. } => version.as_deref(),
        }
    }

    /// What went wrong, in words, for `/health` and the logs.
    pub fn error_message(&self) -> Option<String> {
        match self {
            Outcome::Unchanged { .. } | Outcome::Loaded { .. } | Outcome::Parked { .. } => None,
            Outcome::SkippedBad { why, .. } => Some(why.clone()),
            Outcome::Failed { error, .. } => Some(error.to_string()),
            Outcome::ServingCached { version, error } => Some(format!(
                "{error} (serving cached version {version}; retrying the registry)"
            )),
        }
    }

    /// Whether the time the check took is a reload duration worth a histogram sample: a load
    /// happened, or a version was rejected. Quick checks and outages would drown them.
    fn timed(&self) -> bool {
        match self {
            Outcome::Loaded { .. } => true,
            Outcome::Failed { error, .. } => !error.is_transient(),
            Outcome::Unchanged { .. }
            | Outcome::Parked { .. }
            | Outcome::SkippedBad { .. }
            | Outcome::ServingCached { .. } => false,
        }
    }
}

/// Tells metrics, logs, `/health` and systemd what a check did. `was_live` is whether a
/// model was live when the check started.
pub fn report(
    reloader: &Reloader,
    trigger: Trigger,
    was_live: bool,
    outcome: &Outcome,
    elapsed: Duration,
) {
    let result = outcome.result();
    reloader.metrics.reloads.inc(&[("result", result.as_str())]);
    if outcome.timed() {
        reloader.metrics.reload_seconds.observe_duration(elapsed);
    }
    let elapsed_ms = elapsed.as_millis() as u64;
    let uri = &reloader.plan.uri;
    let model = reloader.name();
    match outcome {
        Outcome::Unchanged { version } => {
            tracing::debug!(%model, %trigger, %version, "model unchanged")
        }
        Outcome::Loaded { version } => {
            tracing::info!(%model, %trigger, %uri, %version, elapsed_ms, "reload succeeded: now serving version {version}")
        }
        Outcome::Parked { version } => {
            tracing::info!(%model, %trigger, %uri, %version, elapsed_ms, "version {version} is valid and kept on disk; it loads on the model's next request")
        }
        Outcome::SkippedBad { version, .. } => {
            tracing::debug!(%model, %trigger, %version, "version is known bad; still serving the previous model")
        }
        Outcome::Failed { error, .. } => {
            tracing::warn!(%model, %trigger, %uri, elapsed_ms, "reload failed: {error}")
        }
        Outcome::ServingCached { version, error } => {
            tracing::warn!(%model, %trigger, %uri, %version, elapsed_ms, "reload failed: {error}; serving the cached version {version}")
        }
    }
    let error = outcome.error_message();
    let attempt = Attempt {
        at: SystemTime::now(),
        trigger,
        result,
        version: outcome.version().map(str::to_string),
        error: error.clone(),
        duration_ms: elapsed_ms,
    };
    let live = &reloader.live;
    live.update(|status| {
        status.last_check = Some(attempt.clone());
        if result != CheckResult::Unchanged {
            status.last_reload = Some(attempt);
        }
        status.last_error = error.clone();
    });
    if let Some(model) = live.current() {
        // A failure elsewhere may have left an old message ("downloading ..."); restore.
        live.set_message(format!(
            "serving {}",
            describe(&model.info.name, &model.info.version)
        ));
    } else if let Some(error) = &error {
        live.set_message(format!("no model: {error}"));
    }
    // systemd: a model going live after a failed start is the (late) end of startup. The first
    // start and the RELOADING=1 / READY=1 pair around a SIGHUP are app.rs's (once for all
    // models).
    let became_live = !was_live && live.is_ready();
    if trigger != Trigger::Startup && became_live {
        reloader.notifier.notify("READY=1");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transient() -> ReloadError {
        ReloadError::StillChanging { dir: "/m".into() }
    }

    fn permanent() -> ReloadError {
        ReloadError::NoModel { dir: "/m".into() }
    }

    /// (outcome, result label, retry soon, timed)
    #[test]
    fn outcomes() {
        let version = || "3".to_string();
        let cases = [
            (
                Outcome::Unchanged { version: version() },
                "unchanged",
                false,
                false,
            ),
            (
                Outcome::Loaded { version: version() },
                "loaded",
                false,
                true,
            ),
            (
                Outcome::SkippedBad {
                    version: version(),
                    why: "bad".into(),
                },
                "skipped_bad",
                false,
                false,
            ),
            (
                Outcome::Failed {
                    version: None,
                    error: transient(),
                },
                "failed",
                true,
                false,
            ),
            (
                Outcome::Failed {
                    version: Some(version()),
                    error: permanent(),
                },
                "failed",
                false,
                true,
            ),
            (
                Outcome::ServingCached {
                    version: version(),
                    error: transient(),
                },
                "failed",
                true,
                false,
            ),
        ];
        for (outcome, label, retry, timed) in cases {
            assert_eq!(outcome.result().as_str(), label, "{outcome:?}");
            assert_eq!(outcome.retry_soon(), retry, "{outcome:?}");
            assert_eq!(outcome.timed(), timed, "{outcome:?}");
        }
    }

    #[test]
    fn serving_cached_says_so() {
        let outcome = Outcome::ServingCached {
            version: "2".into(),
            error: transient(),
        };
        assert_eq!(
            outcome.error_message().unwrap(),
            "the model directory is still changing: /m changed while it was being copied; retrying once it is stable (serving cached version 2; retrying the registry)"
        );
    }

    #[test]
    fn labels_serialise_as_metrics_name_them() {
        for result in [
            CheckResult::Unchanged,
            CheckResult::Loaded,
            CheckResult::Parked,
            CheckResult::SkippedBad,
            CheckResult::Failed,
        ] {
            assert_eq!(
                serde_json::to_value(result).unwrap(),
                serde_json::json!(result.as_str())
            );
        }
    }
}
