//! Prometheus metrics: a handful of lock-free counters and histograms, rendered in the text
//! exposition format by [`Metrics::render`]. Hand-written to keep the dependency tree lean;
//! names follow Prometheus conventions (`_total`, `_seconds`, base units).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
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
        let key = labels.iter().map(|(k, v)| (*k, v.to_string())).collect();
        *self
            .values
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_default() += 1;
    }

    fn render(&self, out: &mut String, name: &str) {
        for (labels, value) in self.values.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(out, "{name}{{{}}} {value}", render_labels(labels));
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

/// Request latency histograms, one per route.
#[derive(Default)]
struct RouteHistograms {
    by_route: Mutex<BTreeMap<&'static str, std::sync::Arc<Histogram>>>,
}

/// All of hotserve's metrics. One instance per process, shared by `Arc`.
pub struct Metrics {
    pub requests: LabeledCounter,
    request_seconds: RouteHistograms,
    pub queue_seconds: Histogram,
    pub tokenize_seconds: Histogram,
    pub inference_seconds: Histogram,
    pub batch_size: Histogram,
    pub queue_depth: AtomicI64,
    pub in_flight: AtomicI64,
    pub rejected: LabeledCounter,
    pub reloads: LabeledCounter,
    pub reload_seconds: Histogram,
    pub registry_errors: LabeledCounter,
    /// Unix time of the last successful registry check (0 = never).
    pub last_registry_success: AtomicU64,
    /// The live model's identity, for `hotserve_model_info`.
    pub model_info: Mutex<Option<(String, String, String)>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: LabeledCounter::default(),
            request_seconds: RouteHistograms::default(),
            queue_seconds: Histogram::new(LATENCY_BUCKETS),
            tokenize_seconds: Histogram::new(LATENCY_BUCKETS),
            inference_seconds: Histogram::new(LATENCY_BUCKETS),
            batch_size: Histogram::new(BATCH_BUCKETS),
            queue_depth: AtomicI64::new(0),
            in_flight: AtomicI64::new(0),
            rejected: LabeledCounter::default(),
            reloads: LabeledCounter::default(),
            reload_seconds: Histogram::new(RELOAD_BUCKETS),
            registry_errors: LabeledCounter::default(),
            last_registry_success: AtomicU64::new(0),
            model_info: Mutex::new(None),
        }
    }
}

impl Metrics {
    /// Records one finished request.
    pub fn observe_request(&self, route: &'static str, status: u16, elapsed: Duration) {
        self.requests
            .inc(&[("route", route), ("status", &status.to_string())]);
        let histogram = {
            let mut map = self
                .request_seconds
                .by_route
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            map.entry(route)
                .or_insert_with(|| std::sync::Arc::new(Histogram::new(LATENCY_BUCKETS)))
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
            "HTTP requests by route and status.",
        );
        self.requests.render(&mut out, "hotserve_requests_total");
        header(
            &mut out,
            "hotserve_request_duration_seconds",
            "histogram",
            "HTTP request latency by route, from headers read to response ready.",
        );
        for (route, histogram) in self
            .request_seconds
            .by_route
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            histogram.render(
                &mut out,
                "hotserve_request_duration_seconds",
                &format!("route=\"{route}\""),
            );
        }
        header(
            &mut out,
            "hotserve_queue_duration_seconds",
            "histogram",
            "Time a text waited in the inference queue.",
        );
        self.queue_seconds
            .render(&mut out, "hotserve_queue_duration_seconds", "");
        header(
            &mut out,
            "hotserve_tokenize_duration_seconds",
            "histogram",
            "Tokenization time per request.",
        );
        self.tokenize_seconds
            .render(&mut out, "hotserve_tokenize_duration_seconds", "");
        header(
            &mut out,
            "hotserve_inference_duration_seconds",
            "histogram",
            "ONNX Runtime time per batch.",
        );
        self.inference_seconds
            .render(&mut out, "hotserve_inference_duration_seconds", "");
        header(
            &mut out,
            "hotserve_batch_size",
            "histogram",
            "Texts per inference batch.",
        );
        self.batch_size.render(&mut out, "hotserve_batch_size", "");
        header(
            &mut out,
            "hotserve_queue_depth",
            "gauge",
            "Texts waiting for inference.",
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
            "Requests being handled.",
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
            "Prediction requests refused by overload protection, by reason.",
        );
        self.rejected
            .render(&mut out, "hotserve_rejected_requests_total");

        header(
            &mut out,
            "hotserve_model_info",
            "gauge",
            "The live model; 1 for the model being served.",
        );
        if let Some((name, version, source)) =
            &*self.model_info.lock().unwrap_or_else(|p| p.into_inner())
        {
            let _ = writeln!(
                out,
                "hotserve_model_info{{name=\"{}\",version=\"{}\",source=\"{}\"}} 1",
                escape(name),
                escape(version),
                escape(source)
            );
        }
        header(
            &mut out,
            "hotserve_reloads_total",
            "counter",
            "Reload attempts by result (loaded, unchanged, failed, skipped_bad).",
        );
        self.reloads.render(&mut out, "hotserve_reloads_total");
        header(
            &mut out,
            "hotserve_reload_duration_seconds",
            "histogram",
            "Duration of reloads that loaded a model (download, validation, swap).",
        );
        self.reload_seconds
            .render(&mut out, "hotserve_reload_duration_seconds", "");
        header(
            &mut out,
            "hotserve_registry_errors_total",
            "counter",
            "Failed registry checks by kind.",
        );
        self.registry_errors
            .render(&mut out, "hotserve_registry_errors_total");
        header(
            &mut out,
            "hotserve_registry_last_success_timestamp_seconds",
            "gauge",
            "Unix time of the last successful registry check (0 = never).",
        );
        let _ = writeln!(
            out,
            "hotserve_registry_last_success_timestamp_seconds {}",
            self.last_registry_success.load(Ordering::Relaxed)
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let metrics = Metrics::default();
        metrics.batch_size.observe(1.0);
        metrics.batch_size.observe(3.0);
        metrics.batch_size.observe(1000.0);
        let text = metrics.render();
        assert!(
            text.contains("hotserve_batch_size_bucket{le=\"1\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("hotserve_batch_size_bucket{le=\"4\"} 2\n"));
        assert!(text.contains("hotserve_batch_size_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("hotserve_batch_size_count 3\n"));
        assert!(text.contains("hotserve_batch_size_sum 1004\n"));
    }

    #[test]
    fn labels_are_escaped() {
        let metrics = Metrics::default();
        *metrics.model_info.lock().unwrap() = Some(("a\"b".into(), "1".into(), "c\\d".into()));
        metrics.observe_request("/predict", 200, Duration::from_millis(3));
        let text = metrics.render();
        assert!(
            text.contains("hotserve_model_info{name=\"a\\\"b\",version=\"1\",source=\"c\\\\d\"} 1")
        );
        assert!(text.contains("hotserve_requests_total{route=\"/predict\",status=\"200\"} 1"));
        assert!(text.contains(
            "hotserve_request_duration_seconds_bucket{route=\"/predict\",le=\"0.005\"} 1"
        ));
    }
}
