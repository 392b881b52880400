//! Prometheus metrics: a handful of lock-free counters and histograms, rendered in the text
//! exposition format by [`Metrics::render`]. Names follow Prometheus conventions (`_total`,
//! `_seconds`, base units).
//!
//! Why not the `prometheus-client` crate (measured on 2026-12-07 with prometheus-client 0.24
//! and Debian bookworm's promtool 2.42): it writes OpenMetrics, where a counter family is named
//! without `_total` (`# TYPE hotserve_requests counter` over `hotserve_requests_total{..}`; a
//! name registered with `_total` comes out as `_total_total`), and `promtool check metrics`
//! refuses that exposition ("hotserve_requests_total no help text", exit 3); it also appends a
//! period to every help text. Keeping today's names, help texts and a clean promtool (what
//! dashboards, the HPA's adapter and `scripts/check-deploy.sh` rely on) rules it out; this
//! renderer's output passes promtool (checked in the deployment smoke test). Every per-model
//! metric carries a `model` label (the configured name, [`ModelMetrics`]); the pool-wide gauges
//! and the overload counter do not, and their help says so.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A histogram with fixed bucket bounds; observations are lock-free.
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    /// Sum in micro-units (microseconds for time, units otherwise) to stay integral.
    sum_micros: AtomicU64,
}

/// Latency buckets in seconds, from 0.5 ms to 30 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Batch-size buckets in texts.
pub const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];
/// Reload-duration buckets in seconds.
pub const RELOAD_BUCKETS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, value: f64) {
        if let Some(i) = self.bounds.iter().position(|&b| value <= b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((value * 1e6).max(0.0) as u64, Ordering::Relaxed);
    }

    pub fn observe_duration(&self, duration: Duration) {
        self.observe(duration.as_secs_f64());
    }

    /// The count in each bucket (not cumulative), then the count beyond the last bound.
    pub fn counts(&self) -> Vec<u64> {
        let mut counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|bucket| bucket.load(Ordering::Relaxed))
            .collect();
        let within: u64 = counts.iter().sum();
        counts.push(self.count.load(Ordering::Relaxed).saturating_sub(within));
        counts
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, bucket) in self.bounds.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {count}");
    }
}

/// Counters keyed by a label set (small cardinality: routes, statuses, results).
#[derive(Default)]
pub struct LabeledCounter {
    values: Mutex<BTreeMap<Vec<(&'static str, String)>, u64>>,
}

impl LabeledCounter {
    pub fn inc(&self, labels: &[(&'static str, &str)]) {
        self.add(labels, 1);
    }

    pub fn add(&self, labels: &[(&'static str, &str)], amount: u64) {
        let key = labels.iter().map(|(k, v)| (*k, v.to_string())).collect();
        *self
            .values
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_default() += amount;
    }

    fn render(&self, out: &mut String, name: &str) {
        self.render_with(out, name, "");
    }

    /// Renders with `first` (already rendered labels, such as `model="a"`) before each
    /// counter's own labels.
    fn render_with(&self, out: &mut String, name: &str, first: &str) {
        for (labels, value) in self.values.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let own = render_labels(labels);
            let sep = if first.is_empty() || own.is_empty() {
                ""
            } else {
                ","
            };
            let _ = writeln!(out, "{name}{{{first}{sep}{own}}} {value}");
        }
    }
}

fn render_labels(labels: &[(&'static str, String)]) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect::<Vec<_>>()
        .join(",")
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A route and, on the routes that serve a model, its configured name.
type RouteKey = (&'static str, Option<String>);

/// Request latency histograms, one per route (and model, on the routes that serve one).
#[derive(Default)]
struct RouteHistograms {
    by_route: Mutex<BTreeMap<RouteKey, Arc<Histogram>>>,
}

/// One per-model histogram family: its name, its help and where it lives in [`ModelMetrics`].
type ModelHistogram = (&'static str, &'static str, fn(&ModelMetrics) -> &Histogram);

/// One shadow gauge: its name, its help and which of the running figures (agreement, latency
/// ratio) it shows.
type ShadowGauge = (
    &'static str,
    &'static str,
    fn(&(Option<f64>, Option<f64>)) -> Option<f64>,
);

/// The metrics of one configured model, labelled `model="<name>"`. The reload pipeline, the
/// live handle, the prediction routes and the inference queue (each job carries its model's
/// `Arc<ModelMetrics>`) write them.
pub struct ModelMetrics {
    pub queue_seconds: Histogram,
    pub tokenize_seconds: Histogram,
    pub inference_seconds: Histogram,
    pub batch_size: Histogram,
    pub reloads: LabeledCounter,
    pub reload_seconds: Histogram,
    pub registry_errors: LabeledCounter,
    /// Unix time of the last successful registry check (0 = never).
    pub last_registry_success: AtomicU64,
    /// The live model's identity (name, version, source) and where it runs (its execution
    /// providers, `cpu` or e.g. `cuda:0`), for `hotserve_model_info`.
    pub model_info: Mutex<Option<(String, String, String, String)>>,
    /// Live requests copied to a candidate in shadow, by result (compared, failed, dropped).
    pub shadow_requests: LabeledCounter,
    /// The running agreement and latency ratio of the candidate in shadow (or the last one).
    pub shadow_figures: Mutex<(Option<f64>, Option<f64>)>,
    /// Promotion decisions by result (promoted, refused, rolled_back).
    pub promotions: LabeledCounter,
    /// Inference jobs answered, and those that failed (what the guard after a swap watches).
    pub inference_jobs: AtomicU64,
    pub inference_errors: AtomicU64,
    /// Registry tag writes that failed (`report_to_registry`).
    pub report_failures: AtomicU64,
    /// Batches run alone on the model's all-cores session (`adaptive_pool`).
    pub all_cores_batches: AtomicU64,
    /// Bytes of model files downloaded (registry, proxy, object store).
    pub download_bytes: AtomicU64,
    /// Loads into memory, by reason (`startup`, `reload`, `request`: a cold start, `api`).
    pub loads: LabeledCounter,
    /// Unloads from memory, by reason (`evicted` under `memory_budget`, `api`, `lazy`: validated
    /// and set aside until its first request).
    pub unloads: LabeledCounter,
    /// The measured memory of the live model (0 when none is loaded).
    pub loaded_bytes: AtomicU64,
    /// A cold start's parts: how long its first request waited, the load, and the first batch.
    pub cold_start_wait: Histogram,
    pub cold_start_load: Histogram,
    pub cold_start_inference: Histogram,
    /// Set when a model is loaded for a waiting request: the next batch is the cold start's.
    pub cold_batch_pending: AtomicBool,
}

impl ModelMetrics {
    /// One batch's inference time (and the cold start's, for the first batch after a load for
    /// a waiting request).
    pub fn observe_inference(&self, took: std::time::Duration) {
        self.inference_seconds.observe_duration(took);
        if self.cold_batch_pending.swap(false, Ordering::Relaxed) {
            self.cold_start_inference.observe_duration(took);
        }
    }

    /// Sets the shadow gauges.
    pub fn set_shadow_figures(&self, agreement: Option<f64>, latency_ratio: Option<f64>) {
        *self
            .shadow_figures
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = (agreement, latency_ratio);
    }
}

impl Default for ModelMetrics {
    fn default() -> Self {
        ModelMetrics {
            queue_seconds: Histogram::new(LATENCY_BUCKETS),
            tokenize_seconds: Histogram::new(LATENCY_BUCKETS),
            inference_seconds: Histogram::new(LATENCY_BUCKETS),
            batch_size: Histogram::new(BATCH_BUCKETS),
            reloads: LabeledCounter::default(),
            reload_seconds: Histogram::new(RELOAD_BUCKETS),
            registry_errors: LabeledCounter::default(),
            last_registry_success: AtomicU64::new(0),
            model_info: Mutex::new(None),
            shadow_requests: LabeledCounter::default(),
            shadow_figures: Mutex::new((None, None)),
            promotions: LabeledCounter::default(),
            inference_jobs: AtomicU64::new(0),
            inference_errors: AtomicU64::new(0),
            report_failures: AtomicU64::new(0),
            all_cores_batches: AtomicU64::new(0),
            download_bytes: AtomicU64::new(0),
            loads: LabeledCounter::default(),
            unloads: LabeledCounter::default(),
            loaded_bytes: AtomicU64::new(0),
            cold_start_wait: Histogram::new(RELOAD_BUCKETS),
            cold_start_load: Histogram::new(RELOAD_BUCKETS),
            cold_start_inference: Histogram::new(LATENCY_BUCKETS),
            cold_batch_pending: AtomicBool::new(false),
        }
    }
}

/// What became of the finished trace spans (`telemetry.rs`). Process-wide, as the trace
/// pipeline is: one per process, whichever `Metrics` renders it.
pub struct TraceExports {
    /// Spans the collector took.
    pub exported: AtomicU64,
    /// Spans dropped because the exporter's queue was full (a slow or absent collector).
    pub queue_full: AtomicU64,
    /// Spans dropped because their export failed.
    pub export_failed: AtomicU64,
}

/// The trace pipeline's counts.
pub static TRACE_EXPORTS: TraceExports = TraceExports {
    exported: AtomicU64::new(0),
    queue_full: AtomicU64::new(0),
    export_failed: AtomicU64::new(0),
};

/// The model cache of every configured model together (`reload::disk`), for
/// `hotserve_cache_bytes`, `hotserve_cache_max_bytes` and `hotserve_cache_evictions_total`.
#[derive(Default)]
pub struct CacheMetrics {
    /// Bytes of the cached versions, as of the last time the budget was settled.
    pub bytes: AtomicU64,
    /// `cache_max_bytes`; 0 when unbounded (the setting is never 0).
    pub max_bytes: AtomicU64,
    /// Versions removed to keep the cache within `cache_max_bytes`.
    pub evictions: AtomicU64,
}

/// All of hotserve's metrics. One instance per process, shared by `Arc`; per-model metrics
/// are registered once per configured model with [`Metrics::model`].
#[derive(Default)]
pub struct Metrics {
    /// Requests by route and status, and model on the routes that serve one.
    requests: LabeledCounter,
    request_seconds: RouteHistograms,
    /// Pool-wide: texts waiting, whatever their model.
    pub queue_depth: AtomicI64,
    /// Process-wide: requests being handled on any route.
    pub in_flight: AtomicI64,
    /// Pool-wide: requests refused by overload protection, by reason.
    pub rejected: LabeledCounter,
    /// Each configured model's metrics, in configuration order.
    models: Mutex<Vec<(String, Arc<ModelMetrics>)>>,
    /// gRPC calls by method and status code, and model on the methods about one.
    grpc_requests: LabeledCounter,
    /// gRPC call latency by method (and model), keyed like `request_seconds`.
    grpc_request_seconds: RouteHistograms,
    /// Client connections open now.
    pub open_connections: AtomicI64,
    /// Client connections ended, by which limit (or which end) closed them.
    pub connections_closed: LabeledCounter,
    /// Reloads of credential files (`tls`, `api_keys`) that changed, by result.
    pub credential_reloads: LabeledCounter,
    /// Access log lines dropped because its file writer was behind (`access_log`).
    pub access_log_dropped: AtomicU64,
    /// Payload records dropped because their sink's queue was full (`payload_log`).
    pub payload_log_dropped: AtomicU64,
    /// Payload records delivered, by outcome (`written` to a file, `sent` to an HTTP sink).
    pub payload_log_records: LabeledCounter,
    /// `memory_budget` in bytes (0: none).
    pub memory_budget_bytes: AtomicU64,
    /// The model cache, every model's folder together.
    pub cache: CacheMetrics,
    /// Models served because discovery found them (`discover_filter`).
    pub discovered_models: AtomicU64,
    /// Registry searches of discovery that failed (the last set is kept).
    pub discovery_errors: AtomicU64,
    /// Per credential file: whether what is on disk cannot be used (the previous value is).
    credentials_failing: Mutex<BTreeMap<&'static str, bool>>,
}

impl Metrics {
    /// The metrics of the model configured as `name`, registered on first use.
    pub fn model(&self, name: &str) -> Arc<ModelMetrics> {
        let mut models = self.models.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, metrics)) = models.iter().find(|(known, _)| known == name) {
            return metrics.clone();
        }
        let metrics = Arc::new(ModelMetrics::default());
        models.push((name.to_string(), metrics.clone()));
        metrics
    }

    /// Records whether the credential `name` (`tls`, `api_keys`) on disk is unusable.
    pub fn set_credential_failing(&self, name: &'static str, failing: bool) {
        self.credentials_failing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name, failing);
    }

    /// Records one finished request; `model` is the configured name on routes that serve one.
    pub fn observe_request(
        &self,
        route: &'static str,
        model: Option<&str>,
        status: u16,
        elapsed: Duration,
    ) {
        let status = status.to_string();
        match model {
            Some(model) => {
                self.requests
                    .inc(&[("model", model), ("route", route), ("status", &status)])
            }
            None => self.requests.inc(&[("route", route), ("status", &status)]),
        }
        let histogram = {
            let mut map = self
                .request_seconds
                .by_route
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            map.entry((route, model.map(str::to_string)))
                .or_insert_with(|| Arc::new(Histogram::new(LATENCY_BUCKETS)))
                .clone()
        };
        histogram.observe_duration(elapsed);
    }

    /// Records one finished gRPC call: `method` as the service names it (`ModelInfer`),
    /// `model` the configured name on the methods about a model, `code` the status code's
    /// name (`OK`, `NOT_FOUND`, ...).
    pub fn observe_grpc(
        &self,
        method: &'static str,
        model: Option<&str>,
        code: &str,
        elapsed: Duration,
    ) {
        match model {
            Some(model) => {
                self.grpc_requests
                    .inc(&[("code", code), ("method", method), ("model", model)])
            }
            None => self
                .grpc_requests
                .inc(&[("code", code), ("method", method)]),
        }
        let histogram = {
            let mut map = self
                .grpc_request_seconds
                .by_route
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            map.entry((method, model.map(str::to_string)))
                .or_insert_with(|| Arc::new(Histogram::new(LATENCY_BUCKETS)))
                .clone()
        };
        histogram.observe_duration(elapsed);
    }

    /// Renders every metric in the Prometheus text format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8192);
        let header = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        let models: Vec<(String, Arc<ModelMetrics>)> = self
            .models
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let per_model = |out: &mut String, render: &dyn Fn(&mut String, &str, &ModelMetrics)| {
            for (name, metrics) in &models {
                render(out, &format!("model=\"{}\"", escape(name)), metrics);
            }
        };
        header(
            &mut out,
            "hotserve_build_info",
            "gauge",
            "Build information; always 1.",
        );
        let _ = writeln!(
            out,
            "hotserve_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );

        header(
            &mut out,
            "hotserve_requests_total",
            "counter",
            "HTTP requests by route and status (and model, on the routes that serve one).",
        );
        self.requests.render(&mut out, "hotserve_requests_total");
        header(
            &mut out,
            "hotserve_request_duration_seconds",
            "histogram",
            "HTTP request latency by route (and model, on the routes that serve one), from headers read to response ready.",
        );
        for ((route, model), histogram) in self
            .request_seconds
            .by_route
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let labels = match model {
                Some(model) => format!("model=\"{}\",route=\"{route}\"", escape(model)),
                None => format!("route=\"{route}\""),
            };
            histogram.render(&mut out, "hotserve_request_duration_seconds", &labels);
        }
        header(
            &mut out,
            "hotserve_grpc_requests_total",
            "counter",
            "gRPC calls by method and status code (and model, on the methods about one).",
        );
        self.grpc_requests
            .render(&mut out, "hotserve_grpc_requests_total");
        header(
            &mut out,
            "hotserve_grpc_request_duration_seconds",
            "histogram",
            "gRPC call latency by method (and model, on the methods about one), from the decoded request to the answer.",
        );
        for ((method, model), histogram) in self
            .grpc_request_seconds
            .by_route
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let labels = match model {
                Some(model) => format!("method=\"{method}\",model=\"{}\"", escape(model)),
                None => format!("method=\"{method}\""),
            };
            histogram.render(&mut out, "hotserve_grpc_request_duration_seconds", &labels);
        }
        let histograms: [ModelHistogram; 4] = [
            (
                "hotserve_queue_duration_seconds",
                "Time a text waited in the inference queue, by model.",
                |m| &m.queue_seconds,
            ),
            (
                "hotserve_tokenize_duration_seconds",
                "Tokenization time per request, by model.",
                |m| &m.tokenize_seconds,
            ),
            (
                "hotserve_inference_duration_seconds",
                "ONNX Runtime time per batch, by model.",
                |m| &m.inference_seconds,
            ),
            (
                "hotserve_batch_size",
                "Texts per inference batch, by model.",
                |m| &m.batch_size,
            ),
        ];
        for (name, help, histogram) in histograms {
            header(&mut out, name, "histogram", help);
            per_model(&mut out, &|out, labels, m| {
                histogram(m).render(out, name, labels)
            });
        }
        header(
            &mut out,
            "hotserve_queue_depth",
            "gauge",
            "Texts waiting for inference, all models together (one queue serves them all).",
        );
        let _ = writeln!(
            out,
            "hotserve_queue_depth {}",
            self.queue_depth.load(Ordering::Relaxed)
        );
        header(
            &mut out,
            "hotserve_in_flight_requests",
            "gauge",
            "Requests being handled, on every route and model together.",
        );
        let _ = writeln!(
            out,
            "hotserve_in_flight_requests {}",
            self.in_flight.load(Ordering::Relaxed)
        );
        header(
            &mut out,
            "hotserve_rejected_requests_total",
            "counter",
            "Prediction requests refused by overload protection, by reason, all models together.",
        );
        self.rejected
            .render(&mut out, "hotserve_rejected_requests_total");

        header(
            &mut out,
            "hotserve_model_info",
            "gauge",
            "The live model of each configured model and where it runs; 1 for the version being served.",
        );
        per_model(&mut out, &|out, labels, m| {
            if let Some((name, version, source, provider)) =
                &*m.model_info.lock().unwrap_or_else(|p| p.into_inner())
            {
                let _ = writeln!(
                    out,
                    "hotserve_model_info{{{labels},name=\"{}\",version=\"{}\",source=\"{}\",execution_provider=\"{}\"}} 1",
                    escape(name),
                    escape(version),
                    escape(source),
                    escape(provider)
                );
            }
        });
        header(
            &mut out,
            "hotserve_reloads_total",
            "counter",
            "Reload attempts by model and result (loaded, unchanged, failed, skipped_bad).",
        );
        per_model(&mut out, &|out, labels, m| {
            m.reloads.render_with(out, "hotserve_reloads_total", labels)
        });
        header(
            &mut out,
            "hotserve_reload_duration_seconds",
            "histogram",
            "Duration of reloads that loaded a model (download, validation, swap), by model.",
        );
        per_model(&mut out, &|out, labels, m| {
            m.reload_seconds
                .render(out, "hotserve_reload_duration_seconds", labels)
        });
        header(
            &mut out,
            "hotserve_registry_errors_total",
            "counter",
            "Failed registry checks by model and kind.",
        );
        per_model(&mut out, &|out, labels, m| {
            m.registry_errors
                .render_with(out, "hotserve_registry_errors_total", labels)
        });
        header(
            &mut out,
            "hotserve_download_bytes_total",
            "counter",
            "Bytes of model files downloaded, by model (a long download shows here as it goes).",
        );
        per_model(&mut out, &|out, labels, m| {
            let _ = writeln!(
                out,
                "hotserve_download_bytes_total{{{labels}}} {}",
                m.download_bytes.load(Ordering::Relaxed)
            );
        });
        header(
            &mut out,
            "hotserve_model_loads_total",
            "counter",
            "Models loaded into memory, by model and reason (startup, reload: a new version, request: a cold start, api).",
        );
        per_model(&mut out, &|out, labels, m| {
            m.loads
                .render_with(out, "hotserve_model_loads_total", labels)
        });
        header(
            &mut out,
            "hotserve_model_unloads_total",
            "counter",
            "Models unloaded from memory while known and valid, by model and reason (evicted: room for another under memory_budget, api, lazy: validated and set aside until its first request).",
        );
        per_model(&mut out, &|out, labels, m| {
            m.unloads
                .render_with(out, "hotserve_model_unloads_total", labels)
        });
        header(
            &mut out,
            "hotserve_model_loaded_bytes",
            "gauge",
            "Measured memory of each model's loaded version (0: not in memory).",
        );
        per_model(&mut out, &|out, labels, m| {
            let _ = writeln!(
                out,
                "hotserve_model_loaded_bytes{{{labels}}} {}",
                m.loaded_bytes.load(Ordering::Relaxed)
            );
        });
        header(
            &mut out,
            "hotserve_memory_budget_bytes",
            "gauge",
            "memory_budget in bytes (0: unbounded); compare with the sum of hotserve_model_loaded_bytes.",
        );
        let _ = writeln!(
            out,
            "hotserve_memory_budget_bytes {}",
            self.memory_budget_bytes.load(Ordering::Relaxed)
        );
        header(
            &mut out,
            "hotserve_discovered_models",
            "gauge",
            "Models served because discovery (discover_filter) found them in the registry.",
        );
        let _ = writeln!(
            out,
            "hotserve_discovered_models {}",
            self.discovered_models.load(Ordering::Relaxed)
        );
        header(
            &mut out,
            "hotserve_discovery_errors_total",
            "counter",
            "Registry searches of discovery that failed; the models found before are kept.",
        );
        let _ = writeln!(
            out,
            "hotserve_discovery_errors_total {}",
            self.discovery_errors.load(Ordering::Relaxed)
        );
        header(
            &mut out,
            "hotserve_cold_start_duration_seconds",
            "histogram",
            "Cold starts (a request for a model not in memory), by model and phase: wait (the request's wait for the model), load (the load itself), inference (its first batch).",
        );
        per_model(&mut out, &|out, labels, m| {
            for (phase, histogram) in [
                ("wait", &m.cold_start_wait),
                ("load", &m.cold_start_load),
                ("inference", &m.cold_start_inference),
            ] {
                histogram.render(
                    out,
                    "hotserve_cold_start_duration_seconds",
                    &format!("{labels},phase=\"{phase}\""),
                );
            }
        });
        header(
            &mut out,
            "hotserve_registry_last_success_timestamp_seconds",
            "gauge",
            "Unix time of the last successful registry check, by model (0 = never).",
        );
        per_model(&mut out, &|out, labels, m| {
            let _ = writeln!(
                out,
                "hotserve_registry_last_success_timestamp_seconds{{{labels}}} {}",
                m.last_registry_success.load(Ordering::Relaxed)
            );
        });
        header(
            &mut out,
            "hotserve_shadow_requests_total",
            "counter",
            "Live requests copied to a candidate in shadow, by model and result (compared, failed: the candidate erred, dropped: no idle inference capacity).",
        );
        per_model(&mut out, &|out, labels, m| {
            m.shadow_requests
                .render_with(out, "hotserve_shadow_requests_total", labels)
        });
        let figures: [ShadowGauge; 2] = [
            (
                "hotserve_shadow_agreement_ratio",
                "Share of predictions on which the candidate in shadow (or the last one) agreed with the live model, by model.",
                |f| f.0,
            ),
            (
                "hotserve_shadow_latency_ratio",
                "Inference time of the candidate in shadow (or the last one) over the live model's on the same inputs, by model.",
                |f| f.1,
            ),
        ];
        for (name, help, pick) in figures {
            header(&mut out, name, "gauge", help);
            per_model(&mut out, &|out, labels, m| {
                let value = pick(&m.shadow_figures.lock().unwrap_or_else(|p| p.into_inner()));
                if let Some(value) = value {
                    let _ = writeln!(out, "{name}{{{labels}}} {value}");
                }
            });
        }
        header(
            &mut out,
            "hotserve_registry_report_failures_total",
            "counter",
            "Model-version tags that could not be written to the registry (report_to_registry), by model.",
        );
        per_model(&mut out, &|out, labels, m| {
            let _ = writeln!(
                out,
                "hotserve_registry_report_failures_total{{{labels}}} {}",
                m.report_failures.load(Ordering::Relaxed)
            );
        });
        header(
            &mut out,
            "hotserve_all_cores_batches_total",
            "counter",
            "Batches that were alone (the one prediction in progress, no other worker computing) and ran on the model's all-cores session (adaptive_pool), by model.",
        );
        per_model(&mut out, &|out, labels, m| {
            let _ = writeln!(
                out,
                "hotserve_all_cores_batches_total{{{labels}}} {}",
                m.all_cores_batches.load(Ordering::Relaxed)
            );
        });
        header(
            &mut out,
            "hotserve_promotions_total",
            "counter",
            "Promotion decisions by model and result (promoted, refused in shadow, rolled_back by the guard).",
        );
        per_model(&mut out, &|out, labels, m| {
            m.promotions
                .render_with(out, "hotserve_promotions_total", labels)
        });
        header(
            &mut out,
            "hotserve_cache_bytes",
            "gauge",
            "Bytes of the cached versions of every model together, as of the last version made live (or the start).",
        );
        let _ = writeln!(
            out,
            "hotserve_cache_bytes {}",
            self.cache.bytes.load(Ordering::Relaxed)
        );
        let max_bytes = self.cache.max_bytes.load(Ordering::Relaxed);
        if max_bytes > 0 {
            header(
                &mut out,
                "hotserve_cache_max_bytes",
                "gauge",
                "The bound on hotserve_cache_bytes (cache_max_bytes); absent when unbounded.",
            );
            let _ = writeln!(out, "hotserve_cache_max_bytes {max_bytes}");
        }
        header(
            &mut out,
            "hotserve_cache_evictions_total",
            "counter",
            "Cached versions removed, least recently used first, to keep the cache within cache_max_bytes.",
        );
        let _ = writeln!(
            out,
            "hotserve_cache_evictions_total {}",
            self.cache.evictions.load(Ordering::Relaxed)
        );
        header(
            &mut out,
            "hotserve_access_log_dropped_total",
            "counter",
            "Access log lines dropped because the access log file's writer was behind (access_log set to a path).",
        );
        let _ = writeln!(
            out,
            "hotserve_access_log_dropped_total {}",
            self.access_log_dropped.load(Ordering::Relaxed)
        );
        header(
            &mut out,
            "hotserve_payload_log_dropped_total",
            "counter",
            "Payload records dropped because their sink's queue was full (the sink slow or down; payload_log).",
        );
        let _ = writeln!(
            out,
            "hotserve_payload_log_dropped_total {}",
            self.payload_log_dropped.load(Ordering::Relaxed)
        );
        header(
            &mut out,
            "hotserve_payload_log_records_total",
            "counter",
            "Payload records delivered, by outcome (written to a file, sent to an HTTP sink).",
        );
        self.payload_log_records
            .render(&mut out, "hotserve_payload_log_records_total");
        header(
            &mut out,
            "hotserve_trace_spans_exported_total",
            "counter",
            "Trace spans the OTLP collector took (OTEL_EXPORTER_OTLP_ENDPOINT set).",
        );
        let _ = writeln!(
            out,
            "hotserve_trace_spans_exported_total {}",
            TRACE_EXPORTS.exported.load(Ordering::Relaxed)
        );
        header(
            &mut out,
            "hotserve_trace_spans_dropped_total",
            "counter",
            "Trace spans dropped: the exporter's queue was full (queue_full) or the collector refused or did not answer (export_failed).",
        );
        for (reason, count) in [
            ("queue_full", &TRACE_EXPORTS.queue_full),
            ("export_failed", &TRACE_EXPORTS.export_failed),
        ] {
            let _ = writeln!(
                out,
                "hotserve_trace_spans_dropped_total{{reason=\"{reason}\"}} {}",
                count.load(Ordering::Relaxed)
            );
        }
        header(
            &mut out,
            "hotserve_open_connections",
            "gauge",
            "Client connections open now.",
        );
        let _ = writeln!(
            out,
            "hotserve_open_connections {}",
            self.open_connections.load(Ordering::Relaxed)
        );
        header(
            &mut out,
            "hotserve_connections_closed_total",
            "counter",
            "Client connections ended, by reason: closed (by either end after a response), header_read_timeout, keep_alive_timeout, headers_too_large, malformed_request, incomplete_request, transport_error, tls_handshake_failed.",
        );
        self.connections_closed
            .render(&mut out, "hotserve_connections_closed_total");
        header(
            &mut out,
            "hotserve_credential_reloads_total",
            "counter",
            "Changes of the TLS files or api_keys_file picked up (loaded) or refused (failed; the previous ones stay in use), by file.",
        );
        self.credential_reloads
            .render(&mut out, "hotserve_credential_reloads_total");
        header(
            &mut out,
            "hotserve_credential_reload_failing",
            "gauge",
            "1 while the TLS files or api_keys_file on disk cannot be used and the previous ones are served, by file.",
        );
        for (name, failing) in self
            .credentials_failing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "hotserve_credential_reload_failing{{file=\"{name}\"}} {}",
                u8::from(*failing)
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let metrics = Metrics::default();
        let model = metrics.model("m");
        model.batch_size.observe(1.0);
        model.batch_size.observe(3.0);
        model.batch_size.observe(1000.0);
        let text = metrics.render();
        assert!(
            text.contains("hotserve_batch_size_bucket{model=\"m\",le=\"1\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("hotserve_batch_size_bucket{model=\"m\",le=\"4\"} 2\n"));
        assert!(text.contains("hotserve_batch_size_bucket{model=\"m\",le=\"+Inf\"} 3\n"));
        assert!(text.contains("hotserve_batch_size_count{model=\"m\"} 3\n"));
        assert!(text.contains("hotserve_batch_size_sum{model=\"m\"} 1004\n"));
    }

    #[test]
    fn labels_are_escaped() {
        let metrics = Metrics::default();
        *metrics.model("m\"1").model_info.lock().unwrap() =
            Some(("a\"b".into(), "1".into(), "c\\d".into(), "cpu".into()));
        metrics.observe_request("/predict", Some("m\"1"), 200, Duration::from_millis(3));
        let text = metrics.render();
        assert!(text.contains(
            "hotserve_model_info{model=\"m\\\"1\",name=\"a\\\"b\",version=\"1\",source=\"c\\\\d\",execution_provider=\"cpu\"} 1"
        ), "{text}");
        assert!(text.contains(
            "hotserve_requests_total{model=\"m\\\"1\",route=\"/predict\",status=\"200\"} 1"
        ));
        assert!(text.contains(
            "hotserve_request_duration_seconds_bucket{model=\"m\\\"1\",route=\"/predict\",le=\"0.005\"} 1"
        ));
    }

    #[test]
    fn the_cache_bound_is_shown_only_when_set() {
        let metrics = Metrics::default();
        metrics.cache.bytes.store(300, Ordering::Relaxed);
        let text = metrics.render();
        assert!(text.contains("hotserve_cache_bytes 300\n"), "{text}");
        assert!(
            text.contains("hotserve_cache_evictions_total 0\n"),
            "{text}"
        );
        assert!(!text.contains("hotserve_cache_max_bytes"), "{text}");
        metrics.cache.max_bytes.store(1024, Ordering::Relaxed);
        metrics.cache.evictions.store(2, Ordering::Relaxed);
        let text = metrics.render();
        assert!(
            text.contains("# TYPE hotserve_cache_max_bytes gauge\nhotserve_cache_max_bytes 1024\n"),
            "{text}"
        );
        assert!(
            text.contains("hotserve_cache_evictions_total 2\n"),
            "{text}"
        );
    }

    #[test]
    fn each_model_has_its_own_series() {
        let metrics = Metrics::default();
        metrics.model("a").reloads.inc(&[("result", "loaded")]);
        metrics.model("b").reloads.inc(&[("result", "failed")]);
        metrics.model("a").reloads.inc(&[("result", "loaded")]);
        metrics.observe_request("/health", None, 200, Duration::from_millis(1));
        let text = metrics.render();
        for line in [
            "hotserve_reloads_total{model=\"a\",result=\"loaded\"} 2\n",
            "hotserve_reloads_total{model=\"b\",result=\"failed\"} 1\n",
            "hotserve_registry_last_success_timestamp_seconds{model=\"b\"} 0\n",
            "hotserve_requests_total{route=\"/health\",status=\"200\"} 1\n",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }
}
