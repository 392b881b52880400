//! The live model handle and the serving status behind `/health`.
//!
//! Requests call [`Live::current`] once and keep that `Arc<Model>` until they answer, so a
//! request (and every batch it is part of) uses one model from start to end; the old model is
//! freed when its last request drops its `Arc`. Only the reload pipeline calls
//! [`Live::publish`] / [`Live::unload`]. Status changes are also sent on a `watch` channel
//! so systemd's `STATUS=` line follows them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use serde::Serialize;
use tokio::sync::{watch, Notify};

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

/// A model known and valid but not in memory: validated and set aside (`load: lazy`),
/// unloaded to make room for another (`memory_budget`), or unloaded through the API.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Parked {
    /// The version that loads next.
    pub version: String,
    /// Why it is not in memory, in words.
    pub why: String,
    /// Whether a request loads it (false after `POST .../unload`: only `.../load` does).
    pub on_demand: bool,
}

/// Where the model is, as `/health` and the repository index say it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Residency {
    /// In memory and serving.
    Loaded,
    /// Being loaded for a request or through the API.
    Loading,
    /// Known and valid, not in memory.
    Parked(Parked),
    /// Nothing valid is known yet (the status says why).
    Absent,
}

/// Who asked for a parked model to be loaded ([`Live::demand`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Demand {
    /// A request for it (a cold start).
    Request,
    /// `POST /v2/repository/models/{name}/load`.
    Api,
}

impl Demand {
    /// The `reason` label of `hotserve_model_loads_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Demand::Request => "request",
            Demand::Api => "api",
        }
    }
}

/// Why [`Live::acquire`] has no model to give.
#[derive(Debug, PartialEq)]
pub enum NotLive {
    /// No valid model is known (or it was unloaded through the API), or its load failed; the
    /// status says why.
    Unavailable,
    /// The model is loading and was not ready within the request's deadline.
    StillLoading,
}

/// One configured model's live version and serving state (one `Live` per configured model).
pub struct Live {
    model: ArcSwapOption<Model>,
    draining: AtomicBool,
    status: Mutex<Status>,
    status_line: watch::Sender<String>,
    /// This model's metrics (`hotserve_model_info` follows the live version).
    metrics: Arc<ModelMetrics>,
    /// Set while the model is known but not in memory, and whether it is being loaded.
    parking: Mutex<(Option<Parked>, bool)>,
    /// Wakes the reload loop to load a parked model ([`Live::demand`]), and who asked first.
    demand: Notify,
    demand_by: Mutex<Option<Demand>>,
    /// Bumped on every change of [`Live::residency`], for requests waiting for a load.
    changes: watch::Sender<u64>,
    /// Milliseconds on the process's clock ([`uptime_ms`]) when a request last took the
    /// model: the least recently used idle model is unloaded first.
    last_used: AtomicU64,
    /// The measured memory of the live model, or of the last one loaded (the estimate of its
    /// next load).
    measured: AtomicU64,
    /// The measured memory of a version loaded but not live (the gate, a candidate in shadow).
    candidate: AtomicU64,
    /// How long the last load took on the loading thread, in microseconds.
    last_load_us: AtomicU64,
    /// Requests waiting in [`Live::acquire`] for a load: they hold the model as soon as it is
    /// live, so it is not idle ([`Live::is_idle`]).
    waiting: AtomicU64,
    /// Loads of the parked model that failed, so that a waiting request tells its own load's
    /// failure from an unload that came after it.
    failed_loads: AtomicU64,
}

/// Counts a request waiting in [`Live::acquire`] while it lives.
struct Waiting<'a>(&'a AtomicU64);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The time base of [`Live`]'s `last_used`.
fn uptime_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
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
            parking: Mutex::new((None, false)),
            demand: Notify::new(),
            demand_by: Mutex::new(None),
            changes: watch::channel(0).0,
            last_used: AtomicU64::new(uptime_ms()),
            measured: AtomicU64::new(0),
            candidate: AtomicU64::new(0),
            last_load_us: AtomicU64::new(0),
            waiting: AtomicU64::new(0),
            failed_loads: AtomicU64::new(0),
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
        *self.parking() = (None, false);
        self.set_message(message);
        self.changed();
        previous
    }

    /// Takes the live model away (the gap of the `resource` reload policy, or of a swap that
    /// `memory_budget` has no room for both versions of); readiness is 503 until the next
    /// [`Live::publish`].
    pub fn unload(&self, why: &str) -> Option<Arc<Model>> {
        *self
            .metrics
            .model_info
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
        self.set_message(why.to_string());
        self.model.swap(None)
    }

    /// Sets the live model aside (it stays known and valid): the caller frees the model
    /// returned once its requests finish. A request loads it again when `parked.on_demand`.
    pub fn park(&self, parked: Parked) -> Option<Arc<Model>> {
        *self
            .metrics
            .model_info
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
        self.metrics.loaded_bytes.store(0, Ordering::Relaxed);
        let message = format!("not loaded: {}", parked.why);
        *self.parking() = (Some(parked), false);
        let previous = self.model.swap(None);
        self.set_message(message);
        self.changed();
        previous
    }

    /// A parked model stays out of memory until the API loads it (`why`), whatever requests
    /// come.
    pub fn hold_parked(&self, why: String) {
        if let (Some(parked), _) = &mut *self.parking() {
            parked.on_demand = false;
            parked.why = why;
        }
        self.changed();
    }

    /// The parked version, if the model is known but not in memory.
    pub fn parked(&self) -> Option<Parked> {
        self.parking().0.clone()
    }

    /// Marks a load of the parked model as started.
    pub fn set_loading(&self) {
        self.parking().1 = true;
        self.changed();
    }

    /// Marks a load of the parked model as failed (the status says why): the requests waiting
    /// for it are answered.
    pub fn load_failed(&self) {
        self.failed_loads.fetch_add(1, Ordering::SeqCst);
        self.parking().1 = false;
        self.changed();
    }

    /// Where the model is.
    pub fn residency(&self) -> Residency {
        if self.model.load().is_some() {
            return Residency::Loaded;
        }
        match &*self.parking() {
            (_, true) => Residency::Loading,
            (Some(parked), false) => Residency::Parked(parked.clone()),
            (None, false) => Residency::Absent,
        }
    }

    /// Asks the reload loop to load the parked model ([`Live::demanded`]). Through the API,
    /// a model unloaded through the API loads again on demand from then on.
    pub fn demand(&self, by: Demand) {
        if by == Demand::Api {
            if let (Some(parked), _) = &mut *self.parking() {
                parked.on_demand = true;
            }
        }
        self.demand_by
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(by);
        self.demand.notify_one();
    }

    /// Waits for a [`Live::demand`] (one made before the wait counts) and says who asked.
    pub async fn demanded(&self) -> Demand {
        self.demand.notified().await;
        self.demand_by
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or(Demand::Request)
    }

    /// The model for one request (or the API's load, `by`): the live one, or, when the model
    /// is parked and loads on demand, the one loaded for it (waiting at most `patience`;
    /// concurrent requests share one load). Marks the model used.
    pub async fn acquire(&self, patience: Duration, by: Demand) -> Result<Arc<Model>, NotLive> {
        self.last_used.store(uptime_ms(), Ordering::Relaxed);
        if let Some(model) = self.current() {
            return Ok(model);
        }
        let started = Instant::now();
        let mut changes = self.changes.subscribe();
        let deadline = tokio::time::Instant::now() + patience;
        let failed = self.failed_loads.load(Ordering::SeqCst);
        let mut asked = false;
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&self.waiting);
        loop {
            // Whatever changes from here on wakes the wait below.
            changes.mark_unchanged();
            if let Some(model) = self.current() {
                if asked && by == Demand::Request {
                    self.metrics
                        .cold_start_wait
                        .observe_duration(started.elapsed());
                }
                return Ok(model);
            }
            if self.failed_loads.load(Ordering::SeqCst) != failed {
                return Err(NotLive::Unavailable);
            }
            match self.residency() {
                Residency::Loading => {}
                // Not asked yet, or loaded and set aside again before this request took it.
                Residency::Parked(parked) if parked.on_demand => {
                    asked = true;
                    self.demand(by);
                }
                Residency::Parked(_) | Residency::Absent | Residency::Loaded => {
                    return Err(NotLive::Unavailable)
                }
            }
            if tokio::time::timeout_at(deadline, changes.changed())
                .await
                .is_err()
            {
                return Err(NotLive::StillLoading);
            }
        }
    }

    /// When a request last took the model (milliseconds on the process's clock).
    pub fn last_used(&self) -> u64 {
        self.last_used.load(Ordering::Relaxed)
    }

    /// Whether no request holds the live model (nothing in flight or queued for it) or waits
    /// for it to load.
    pub fn is_idle(&self) -> bool {
        // The live handle's reference and this one.
        self.waiting.load(Ordering::SeqCst) == 0
            && self
                .current()
                .is_none_or(|model| Arc::strong_count(&model) <= 2)
    }

    /// The measured memory of the live model (0 when none is loaded).
    pub fn loaded_bytes(&self) -> u64 {
        if self.model.load().is_some() {
            self.measured.load(Ordering::Relaxed)
        } else {
            0
        }
    }

    /// The last measured memory of this model (0: never loaded): the estimate of its next load.
    pub fn measured_bytes(&self) -> u64 {
        self.measured.load(Ordering::Relaxed)
    }

    /// Records the measured memory of a version just loaded (and how long the load took),
    /// counted as this model's candidate until [`Live::candidate_done`].
    pub fn record_loaded(&self, bytes: u64, took: Duration) {
        self.candidate.store(bytes, Ordering::Relaxed);
        self.last_load_us
            .store(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// How long the last load took on the loading thread (the wait for room not included).
    pub fn last_load(&self) -> Duration {
        Duration::from_micros(self.last_load_us.load(Ordering::Relaxed))
    }

    /// The candidate went live (its memory is now the live model's) or was dropped.
    pub fn candidate_done(&self, published: bool) {
        let bytes = self.candidate.swap(0, Ordering::Relaxed);
        if published {
            self.measured.store(bytes, Ordering::Relaxed);
            self.metrics.loaded_bytes.store(bytes, Ordering::Relaxed);
        } else if bytes > 0 {
            self.measured.store(bytes, Ordering::Relaxed);
        }
    }

    /// Memory this model holds now: its live version and a candidate.
    pub fn held_bytes(&self) -> u64 {
        self.loaded_bytes() + self.candidate.load(Ordering::Relaxed)
    }

    /// Ready: a model is live, or known, valid and loaded by the next request; and the process
    /// is not draining.
    pub fn is_ready(&self) -> bool {
        !self.is_draining()
            && (self.model.load().is_some()
                || matches!(
                    self.residency(),
                    Residency::Loading
                        | Residency::Parked(Parked {
                            on_demand: true,
                            ..
                        })
                ))
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

    fn parking(&self) -> std::sync::MutexGuard<'_, (Option<Parked>, bool)> {
        self.parking.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n += 1);
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
