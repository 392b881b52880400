//! The live model handle and the serving status behind `/health`.
//!
//! Requests call [`Live::current`] once and keep that `Arc<Model>` until they answer, so a
//! request (and every batch it is part of) uses one model from start to end; the old model is
//! freed when its last request drops its `Arc`. Only the reload pipeline calls
//! [`Live::publish`] / [`Live::unload`]. Status changes are also sent on a `watch` channel
//! so systemd's `STATUS=` line follows them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;
use serde::Serialize;
use tokio::sync::watch;

pub mod status;

use crate::metrics::ModelMetrics;
use crate::model::Model;
use status::{Attempt, Decided};

/// What `/health` reports besides the model itself.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Status {
    /// One human sentence: "serving sentiment v3", "downloading sentiment v4", "no model: ...".
    pub message: String,
    /// The last registry check (poll, trigger or startup), successful or not.
    pub last_check: Option<Attempt>,
    /// The last attempt that tried to load a new model.
    pub last_reload: Option<Attempt>,
    /// The most recent error, kept until a later check succeeds.
    pub last_error: Option<String>,
    /// Serving a cached model because the registry could not be reached.
    pub from_cache: bool,
    /// The last promotion decision (`promotion: shadow`).
    pub last_promotion: Option<Decided>,
    /// How far the download in progress is, while there is one.
    pub download: Option<crate::registry::ProgressReport>,
}

/// One configured model's live version and serving state (one `Live` per configured model).
pub struct Live {
    model: ArcSwapOption<Model>,
    draining: AtomicBool,
    status: Mutex<Status>,
    status_line: watch::Sender<String>,
    /// This model's metrics (`hotserve_model_info` follows the live version).
    metrics: Arc<ModelMetrics>,
}

impl Live {
    pub fn new(metrics: Arc<ModelMetrics>) -> Live {
        let (status_line, _) = watch::channel("starting".to_string());
        Live {
            model: ArcSwapOption::empty(),
            draining: AtomicBool::new(false),
            status: Mutex::new(Status {
                message: "starting".into(),
                ..Status::default()
            }),
            status_line,
            metrics,
        }
    }

    /// The model to use for one whole request, if any.
    pub fn current(&self) -> Option<Arc<Model>> {
        self.model.load_full()
    }

    /// Makes `model` live; returns the previous one (freed when its last request finishes).
    pub fn publish(&self, model: Arc<Model>) -> Option<Arc<Model>> {
        *self
            .metrics
            .model_info
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some((
            model.info.name.clone(),
            model.info.version.clone(),
            model.info.source.clone(),
            crate::model::providers::join(&model.execution_providers),
        ));
        let message = format!(
            "serving {}",
            describe(&model.info.name, &model.info.version)
        );
        let previous = self.model.swap(Some(model));
        self.set_message(message);
        previous
    }

    /// Takes the live model away (the `resource` reload policy's gap); readiness is 503 until
    /// the next [`Live::publish`].
    pub fn unload(&self, why: &str) -> Option<Arc<Model>> {
        *self
            .metrics
            .model_info
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
        self.set_message(why.to_string());
        self.model.swap(None)
    }

    /// Ready: a model is live and the process is not draining.
    pub fn is_ready(&self) -> bool {
        !self.is_draining() && self.model.load().is_some()
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Readiness turns 503 from now on.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.set_message("shutting down".into());
    }

    /// A copy of the status.
    pub fn status(&self) -> Status {
        self.lock().clone()
    }

    /// Changes the status under the lock.
    pub fn update(&self, change: impl FnOnce(&mut Status)) {
        let message = {
            let mut status = self.lock();
            change(&mut status);
            status.message.clone()
        };
        self.status_line.send_if_modified(|line| {
            let changed = *line != message;
            if changed {
                *line = message;
            }
            changed
        });
    }

    /// Sets the one-line status message.
    pub fn set_message(&self, message: String) {
        self.update(|status| status.message = message);
    }

    /// Follows the one-line status (for systemd's `STATUS=`).
    pub fn subscribe(&self) -> watch::Receiver<String> {
        self.status_line.subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// "sentiment v3" for registry versions, "sentiment local-27a33d9daa94" for the rest.
pub fn describe(name: &str, version: &str) -> String {
    if version.chars().all(|c| c.is_ascii_digit()) {
        format!("{name} v{version}")
    } else {
        format!("{name} {version}")
    }
}
