//! What happened to a model, as `/health` reports it: the last check ([`Attempt`], what
//! started it ([`Trigger`]) and how it ended ([`CheckResult`])) and the last promotion decision
//! ([`Decided`], [`PromotionResult`]). Plain records kept in [`super::Status`]; the reload
//! pipeline (`reload/report.rs`) and safe promotion (`promote`) write them.

use std::time::SystemTime;

use serde::Serialize;

use crate::model::rfc3339;

/// What started a check; named in logs and in `/health`'s `last_check.trigger`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// The first check when the daemon starts.
    Startup,
    /// The poll timer.
    Poll,
    /// The backoff timer after a check that may succeed soon (registry down, directory busy).
    Retry,
    /// The file watcher of a local model directory.
    Watch,
    /// `POST /admin/reload`.
    Admin,
    /// `POST /hooks/mlflow`.
    Webhook,
    /// `SIGHUP` (`systemctl reload`).
    Signal,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Startup => "startup",
            Trigger::Poll => "poll",
            Trigger::Retry => "retry",
            Trigger::Watch => "watch",
            Trigger::Admin => "admin",
            Trigger::Webhook => "webhook",
            Trigger::Signal => "signal",
        }
    }
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind of an `reload::Outcome`, as metrics and `/health` name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckResult {
    Unchanged,
    Loaded,
    /// A new version passed the gate (or had passed it before) and was set aside on disk: the
    /// model is not in memory (`load: lazy`, or unloaded under `memory_budget`).
    Parked,
    SkippedBad,
    Failed,
}

impl CheckResult {
    /// The `result` label of `hotserve_reloads_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckResult::Unchanged => "unchanged",
            CheckResult::Loaded => "loaded",
            CheckResult::Parked => "parked",
            CheckResult::SkippedBad => "skipped_bad",
            CheckResult::Failed => "failed",
        }
    }
}

/// The outcome of one check, as `/health` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct Attempt {
    #[serde(with = "rfc3339")]
    pub at: SystemTime,
    /// What started it.
    pub trigger: Trigger,
    pub result: CheckResult,
    /// The version it was about, when known.
    pub version: Option<String>,
    /// What went wrong, in words.
    pub error: Option<String>,
    pub duration_ms: u64,
}

/// How a promotion decision ended, as `hotserve_promotions_total{result}` and `/health` name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PromotionResult {
    /// The candidate went live.
    Promoted,
    /// The candidate was refused; the live model stays.
    Refused,
    /// The guard swapped back to the previous version after the swap.
    RolledBack,
}

impl PromotionResult {
    pub fn as_str(self) -> &'static str {
        match self {
            PromotionResult::Promoted => "promoted",
            PromotionResult::Refused => "refused",
            PromotionResult::RolledBack => "rolled_back",
        }
    }
}

/// The last promotion decision of a model, for `/health`.
#[derive(Clone, Debug, Serialize)]
pub struct Decided {
    #[serde(with = "rfc3339")]
    pub at: SystemTime,
    /// The candidate's version.
    pub version: String,
    pub result: PromotionResult,
    /// Why, in words (the figures, or who decided by hand).
    pub reason: String,
}
