//! The outcome written back to the registry (`report_to_registry: true`): model-version tags
//! `hotserve.<instance>.status` (`live`, `shadow`, `refused`, `rolled_back`), `.reason` and
//! `.at`, set through MLflow's REST API (`model-versions/set-tag`, which needs EDIT permission
//! on the registered model when the server has authentication on). The instance name
//! (`instance_name`, `HOSTNAME` by default) keeps replicas from overwriting each other.
//!
//! A write never affects serving: it runs in its own task, the registry client retries
//! transient failures, and a failure is counted (`hotserve_registry_report_failures_total`)
//! and logged once per model at `warn` (later ones at `debug`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use crate::metrics::ModelMetrics;
use crate::registry::{self, MlflowClient};

/// What hotserve did with a version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Live,
    Shadow,
    Refused,
    RolledBack,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Live => "live",
            Status::Shadow => "shadow",
            Status::Refused => "refused",
            Status::RolledBack => "rolled_back",
        }
    }
}

/// Writes one model's outcomes to the registry.
pub struct Reporter {
    client: MlflowClient,
    /// The `<instance>` in tag keys.
    instance: String,
    metrics: Arc<ModelMetrics>,
    /// Whether a failure was logged at `warn` already.
    warned: AtomicBool,
}

/// The tags that say `status` (and why) for `instance` at `at`: key, value.
pub fn tags(instance: &str, status: Status, reason: &str, at: SystemTime) -> Vec<(String, String)> {
    vec![
        (
            format!("hotserve.{instance}.status"),
            status.as_str().to_string(),
        ),
        (format!("hotserve.{instance}.reason"), reason.to_string()),
        (
            format!("hotserve.{instance}.at"),
            crate::model::rfc3339::format(at),
        ),
    ]
}

impl Reporter {
    pub fn new(client: MlflowClient, instance: String, metrics: Arc<ModelMetrics>) -> Reporter {
        Reporter {
            client,
            instance,
            metrics,
            warned: AtomicBool::new(false),
        }
    }

    /// Tags version `version` of the registered model `name` with `status` and `reason`, in
    /// the background. Only registry versions (numbers) are tagged.
    pub fn report(self: &Arc<Self>, name: &str, version: &str, status: Status, reason: &str) {
        if version.is_empty() || !version.chars().all(|c| c.is_ascii_digit()) {
            return;
        }
        let reporter = self.clone();
        let (name, version) = (name.to_string(), version.to_string());
        let tags = tags(&self.instance, status, reason, SystemTime::now());
        tokio::spawn(async move {
            for (key, value) in tags {
                let written =
                    registry::set_version_tag(&reporter.client, &name, &version, &key, &value)
                        .await;
                if let Err(err) = written {
                    reporter.failed(&name, &version, &err);
                    return;
                }
            }
        });
    }

    fn failed(&self, name: &str, version: &str, err: &str) {
        self.metrics
            .report_failures
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if self.warned.swap(true, Ordering::Relaxed) {
            tracing::debug!(%name, %version, "cannot tag the model version in the registry: {err}");
        } else {
            tracing::warn!(%name, %version, "cannot tag the model version in the registry (serving is not affected; later failures are logged at debug): {err}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_keyed_by_instance() {
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_764_000_000);
        let got = tags(
            "web-1",
            Status::Refused,
            "agreed on 71% of 412 requests, needs 95%",
            at,
        );
        let keys: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "hotserve.web-1.status",
                "hotserve.web-1.reason",
                "hotserve.web-1.at"
            ]
        );
        assert_eq!(got[0].1, "refused");
        assert!(got[2].1.starts_with("2025-11-24T"), "{}", got[2].1);
    }
}
