//! The candidate in shadow: the slot beside a model's live version ([`Slot`], one per
//! [`Live`]), the copies of live requests it is compared on ([`offer_texts`],
//! [`offer_tensors`]) and the evaluation that ends in a [`Decision`] ([`evaluate`]).
//!
//! A copy is made after the live answer is computed and never holds it: the HTTP handler only
//! hands the inputs to the inference pool's low-priority lane, which takes them only while a
//! worker is idle and no live job waits, and refuses them at once otherwise (counted as
//! dropped). On the worker, the live model and the candidate run the same inputs back to back
//! on that worker's sessions, so agreement and the latency ratio come from identical inputs
//! under identical conditions.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwapOption;
use serde::Serialize;
use tokio::sync::Notify;

use super::compare::{compare_scores, compare_tensors, judge, sampled, Figures, Sample, Verdict};
use super::Promotion;
use crate::live::{describe, Live};
use crate::metrics::ModelMetrics;
use crate::model::tensor::NamedTensor;
use crate::model::{Encoded, InferError, Model, Scores};
use crate::queue::Pool;

/// How often the evaluation looks at the figures.
const TICK: Duration = Duration::from_millis(200);

/// A decision taken by an operator (`POST /admin/promote`, `POST /admin/reject`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Manual {
    Promote,
    Reject,
}

/// How an evaluation ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Make it live; the figures, in words.
    Promote(String),
    /// Refuse it; why, in words.
    Refuse(String),
}

/// A version that passed the gate, held beside the live model while it is compared.
pub struct Candidate {
    pub model: Arc<Model>,
    settings: Promotion,
    started: Instant,
    started_at: SystemTime,
    /// Live requests seen since it was installed (what sampling counts).
    seen: AtomicU64,
    figures: Mutex<Figures>,
    /// Set by an operator; read by the evaluation.
    manual: Mutex<Option<Manual>>,
    /// Wakes the evaluation early (a decision by hand, an error).
    wake: Notify,
    metrics: Arc<ModelMetrics>,
}

impl Candidate {
    fn new(model: Arc<Model>, settings: Promotion, metrics: Arc<ModelMetrics>) -> Candidate {
        Candidate {
            model,
            settings,
            started: Instant::now(),
            started_at: SystemTime::now(),
            seen: AtomicU64::new(0),
            figures: Mutex::new(Figures::default()),
            manual: Mutex::new(None),
            wake: Notify::new(),
            metrics,
        }
    }

    /// A copy of the running figures.
    pub fn figures(&self) -> Figures {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Figures> {
        self.figures.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, sample: Sample) {
        let (agreement, ratio) = {
            let mut figures = self.lock();
            figures.record(&sample);
            (figures.agreement(), figures.latency_ratio())
        };
        self.metrics.shadow_requests.inc(&[("result", "compared")]);
        self.metrics.set_shadow_figures(agreement, ratio);
    }

    fn record_error(&self, error: String) {
        self.lock().record_error(error);
        self.metrics.shadow_requests.inc(&[("result", "failed")]);
        self.wake.notify_one();
    }

    fn record_dropped(&self) {
        self.lock().dropped += 1;
        self.metrics.shadow_requests.inc(&[("result", "dropped")]);
    }

    /// Runs `texts` through the live model and the candidate on inference worker `worker`.
    fn compare_texts(&self, worker: usize, live: &Model, texts: &[String]) {
        let encode = |model: &Model| {
            texts
                .iter()
                .map(|text| model.encode(text))
                .collect::<Result<Vec<Encoded>, InferError>>()
        };
        // The live model failing is the client's answer already, not the candidate's fault.
        let Ok(live_encoded) = encode(live) else {
            return;
        };
        let started = Instant::now();
        let Ok(live_scores) = live.classify(worker, &live_encoded.iter().collect::<Vec<_>>())
        else {
            return;
        };
        let live_time = started.elapsed();
        let candidate = &self.model;
        let run = || -> Result<(Vec<Scores>, Duration), InferError> {
            let encoded = encode(candidate)?;
            let started = Instant::now();
            crate::failpoints::sleep("HOTSERVE_TEST_SHADOW_DELAY_MS");
            let scores = candidate.classify(worker, &encoded.iter().collect::<Vec<_>>())?;
            Ok((scores, started.elapsed()))
        };
        match catch_unwind(AssertUnwindSafe(run)) {
            Ok(Ok((scores, candidate_time))) => {
                let (Some(live_task), Some(task)) = (live.text(), candidate.text()) else {
                    return;
                };
                let (agreed, score_difference) =
                    compare_scores(&live_task.labels, &live_scores, &task.labels, &scores);
                self.record(Sample {
                    predictions: texts.len() as u64,
                    agreed,
                    score_difference,
                    live: live_time,
                    candidate: candidate_time,
                });
            }
            Ok(Err(err)) => self.record_error(err.to_string()),
            Err(_) => self.record_error("inference panicked".into()),
        }
    }

    /// Runs tensor `inputs` through the live model and the candidate on worker `worker`.
    fn compare_tensors(&self, worker: usize, live: &Model, inputs: Vec<NamedTensor>) {
        let started = Instant::now();
        let Ok(live_outputs) = live.run_tensors(worker, inputs.clone()) else {
            return;
        };
        let live_time = started.elapsed();
        let candidate = &self.model;
        let run = || {
            let started = Instant::now();
            let outputs = candidate.run_tensors(worker, inputs)?;
            Ok::<_, InferError>((outputs, started.elapsed()))
        };
        match catch_unwind(AssertUnwindSafe(run)) {
            Ok(Ok((outputs, candidate_time))) => {
                let (agree, difference) =
                    compare_tensors(&live_outputs, &outputs, self.settings.tolerance);
                self.record(Sample {
                    predictions: 1,
                    agreed: u64::from(agree),
                    score_difference: difference,
                    live: live_time,
                    candidate: candidate_time,
                });
            }
            Ok(Err(err)) => self.record_error(err.to_string()),
            Err(_) => self.record_error("inference panicked".into()),
        }
    }

    /// What `/health` shows: the candidate, its progress and its running figures.
    fn describe(&self) -> ShadowStatus {
        let figures = self.figures();
        let settings = &self.settings;
        ShadowStatus {
            name: self.model.info.name.clone(),
            version: self.model.info.version.clone(),
            since: crate::model::rfc3339::format(self.started_at),
            progress: ShadowProgress {
                requests: figures.requests,
                min_requests: settings.min_requests,
                elapsed_s: self.started.elapsed().as_secs(),
                min_duration_s: settings.min_duration.as_secs(),
                max_duration_s: settings.max_duration.as_secs(),
            },
            figures: ShadowFigures {
                requests: figures.requests,
                predictions: figures.predictions,
                agreed: figures.agreed,
                agreement: figures.agreement(),
                mean_score_difference: figures.mean_score_difference(),
                latency_ratio: figures.latency_ratio(),
                errors: figures.errors,
                first_error: figures.first_error.clone(),
                dropped: figures.dropped,
            },
            needs: ShadowNeeds {
                min_agreement: settings.min_agreement,
                max_latency_ratio: settings.max_latency_ratio,
            },
        }
    }
}

/// What `/health` shows of the candidate in shadow.
#[derive(Clone, Debug, Serialize)]
pub struct ShadowStatus {
    pub name: String,
    pub version: String,
    /// When the comparison started, RFC 3339.
    pub since: String,
    pub progress: ShadowProgress,
    pub figures: ShadowFigures,
    /// What the candidate must reach to be promoted.
    pub needs: ShadowNeeds,
}

/// How far the comparison is, against what it needs before a decision.
#[derive(Clone, Debug, Serialize)]
pub struct ShadowProgress {
    pub requests: u64,
    pub min_requests: u64,
    pub elapsed_s: u64,
    pub min_duration_s: u64,
    pub max_duration_s: u64,
}

/// The running figures of the comparison.
#[derive(Clone, Debug, Serialize)]
pub struct ShadowFigures {
    pub requests: u64,
    pub predictions: u64,
    pub agreed: u64,
    pub agreement: Option<f64>,
    pub mean_score_difference: Option<f64>,
    pub latency_ratio: Option<f64>,
    pub errors: u64,
    pub first_error: Option<String>,
    pub dropped: u64,
}

/// The thresholds of the verdict.
#[derive(Clone, Debug, Serialize)]
pub struct ShadowNeeds {
    pub min_agreement: f64,
    pub max_latency_ratio: f64,
}

/// A model's candidate slot: empty, or the version in shadow.
#[derive(Default)]
pub struct Slot {
    candidate: ArcSwapOption<Candidate>,
}

impl Slot {
    /// The candidate in shadow, if any.
    pub fn current(&self) -> Option<Arc<Candidate>> {
        self.candidate.load_full()
    }

    /// The candidate, when this live request is one of the `shadow_fraction` to copy.
    pub fn sample(&self) -> Option<Arc<Candidate>> {
        let candidate = self.candidate.load_full()?;
        let n = candidate.seen.fetch_add(1, Ordering::Relaxed);
        sampled(n, candidate.settings.fraction).then_some(candidate)
    }

    /// Asks the running evaluation to promote or reject its candidate now; the candidate's
    /// version, or `None` when nothing is in shadow.
    pub fn decide_by_hand(&self, manual: Manual) -> Option<String> {
        let candidate = self.candidate.load_full()?;
        *candidate.manual.lock().unwrap_or_else(|p| p.into_inner()) = Some(manual);
        candidate.wake.notify_one();
        Some(candidate.model.info.version.clone())
    }

    /// `/health`'s `shadow` entry (`None`, shown as `null`, when nothing is in shadow).
    pub fn describe(&self) -> Option<ShadowStatus> {
        self.current().map(|candidate| candidate.describe())
    }
}

/// Empties the slot when the evaluation ends, however it ends (a shutdown drops it midway).
struct Installed<'a>(&'a Slot);

impl Drop for Installed<'_> {
    fn drop(&mut self) {
        self.0.candidate.store(None);
    }
}

/// Copies a text request to the candidate: after the live answer, on idle capacity only.
pub fn offer_texts(pool: &Pool, live: Arc<Model>, candidate: Arc<Candidate>, texts: Vec<String>) {
    let comparing = candidate.clone();
    let work = Box::new(move |worker: usize| comparing.compare_texts(worker, &live, &texts));
    if !pool.offer_background(work) {
        candidate.record_dropped();
    }
}

/// Copies a tensor request to the candidate: after the live answer, on idle capacity only.
pub fn offer_tensors(
    pool: &Pool,
    live: Arc<Model>,
    candidate: Arc<Candidate>,
    inputs: Vec<NamedTensor>,
) {
    let comparing = candidate.clone();
    let work = Box::new(move |worker: usize| comparing.compare_tensors(worker, &live, inputs));
    if !pool.offer_background(work) {
        candidate.record_dropped();
    }
}

/// Holds `model` in `slot`, beside the live version of `live`, and compares it on copies of
/// live requests until the figures decide, or an operator does. The slot is empty again when
/// it returns.
pub async fn evaluate(
    live: &Live,
    slot: &Slot,
    metrics: &Arc<ModelMetrics>,
    model: Arc<Model>,
    settings: &Promotion,
) -> Decision {
    let candidate = Arc::new(Candidate::new(model, settings.clone(), metrics.clone()));
    slot.candidate.store(Some(candidate.clone()));
    let _installed = Installed(slot);
    let info = &candidate.model.info;
    let serving = live
        .current()
        .map(|m| describe(&m.info.name, &m.info.version))
        .unwrap_or_default();
    let shadowed = describe(&info.name, &info.version);
    live.set_message(format!("serving {serving}; {shadowed} in shadow"));
    tracing::info!(candidate = %shadowed, live = %serving, fraction = settings.fraction, "shadow evaluation started: comparing {shadowed} with {serving} on live requests");
    loop {
        let manual = *candidate.manual.lock().unwrap_or_else(|p| p.into_inner());
        let figures = candidate.figures();
        let verdict = match manual {
            Some(Manual::Promote) => Verdict::Promote(format!(
                "promoted by hand (POST /admin/promote) after {} requests",
                figures.requests
            )),
            Some(Manual::Reject) => Verdict::Refuse(format!(
                "rejected by hand (POST /admin/reject) after {} requests",
                figures.requests
            )),
            None => judge(&figures, candidate.started.elapsed(), settings),
        };
        match verdict {
            Verdict::Continue => {
                tokio::select! {
                    _ = tokio::time::sleep(TICK) => {}
                    _ = candidate.wake.notified() => {}
                }
            }
            Verdict::Promote(why) => return Decision::Promote(why),
            Verdict::Refuse(why) => return Decision::Refuse(why),
        }
    }
}
