//! OpenTelemetry traces: the `tracing` spans of requests and reloads exported over OTLP, the
//! W3C trace context read from callers and sent to the registry, and the spans of the queue
//! and the inference batches, made after the fact on the worker that ran them.
//!
//! Off unless `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT` is set (and
//! `OTEL_SDK_DISABLED` is not `true`, `OTEL_TRACES_EXPORTER` not `none`); off, nothing here runs
//! and the spans it would export are disabled at their call sites. The standard variables are
//! read as the OpenTelemetry SDK and OTLP exporter read them: `OTEL_EXPORTER_OTLP_PROTOCOL`
//! (`grpc`, or `http/protobuf`, the default), `OTEL_EXPORTER_OTLP_HEADERS`,
//! `OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_SERVICE_NAME` (default `hotserve`),
//! `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` (default
//! `parentbased_always_on`: a caller's sampling decision is kept).
//!
//! The exporter never slows serving down. A finished span is handed to a bounded queue
//! ([`QUEUED_SPANS`]) with `try_send`; when it is full (a collector that is slow or down), the
//! span is dropped and counted (`hotserve_trace_spans_dropped_total{reason="queue_full"}`). A
//! thread of its own, with a single-threaded runtime of its own (tonic's and reqwest's clients
//! need one), wakes every [`EXPORT_EVERY`], takes what arrived and exports it in batches of
//! [`EXPORT_BATCH`], each within the OTLP timeout; a batch that fails is dropped and counted
//! (`reason="export_failed"`), and the failure is logged once, not per batch. This is the
//! SDK's batch processor's job, written here because that one keeps its drop count to itself
//! (it only logs it at shutdown) and would wake its thread per batch of spans.
//!
//! Spans (names and attributes follow the HTTP and RPC semantic conventions):
//! - `http::handle`: a server span per HTTP request, child of the caller's `traceparent`.
//! - `grpc`: a server span per call, child of the caller's `traceparent` metadata.
//! - `predict`: `tokenize` ([`record_tokenize`]); the queue's `queue wait` and `inference` per
//!   request, and one `inference batch` span per batch of several requests, linked to each
//!   ([`record_batch`]).
//! - `reload`: the check, the registry calls (with `traceparent` sent), the download, the gate
//!   and the swap.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{
    Link, SpanContext, SpanKind, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    SdkTracer, SdkTracerProvider, SpanData, SpanExporter as _, SpanProcessor,
};
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::metrics::TRACE_EXPORTS;

/// Finished spans waiting for the exporter; past this they are dropped and counted.
pub const QUEUED_SPANS: usize = 16_384;
/// How often the exporter thread wakes to export what arrived. It never sleeps on the queue
/// itself: a thread woken per span is a wake-up per request (the access log measured what
/// that costs, `access.rs`).
pub const EXPORT_EVERY: Duration = Duration::from_millis(100);
/// Spans per OTLP export call.
pub const EXPORT_BATCH: usize = 512;

/// Whether spans are exported (set once, by [`Telemetry::start`]).
static ENABLED: AtomicBool = AtomicBool::new(false);

/// The tracer of the spans made here (queue, batch, tokenize): the provider's own, kept rather
/// than looked up behind the global provider's lock and boxed at every span.
static TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// Whether traces are exported. Code that would only gather a span's parts checks this first.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Which OTLP transport (`OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, `OTEL_EXPORTER_OTLP_PROTOCOL`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    HttpProtobuf,
}

/// What the environment asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub protocol: Protocol,
    /// The endpoint variable that turned traces on, for the start-up line.
    pub endpoint: String,
    /// `OTEL_SERVICE_NAME` or a `service.name` in `OTEL_RESOURCE_ATTRIBUTES` names the
    /// service; else it is `hotserve`.
    pub service_named: bool,
}

/// Why traces cannot be exported as configured.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error(
        "{variable}={value:?}: not an OTLP protocol hotserve exports; use grpc or http/protobuf"
    )]
    Protocol {
        variable: &'static str,
        value: String,
    },
    #[error("the OTLP trace exporter cannot start: {0}")]
    Exporter(String),
}

impl Settings {
    /// Reads the standard variables through `env`: `None` when traces are off.
    pub fn from_env(
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Settings>, TelemetryError> {
        let set = |name: &str| {
            env(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        if set("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
            || set("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"))
        {
            return Ok(None);
        }
        let Some(endpoint) = set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .or_else(|| set("OTEL_EXPORTER_OTLP_ENDPOINT"))
        else {
            return Ok(None);
        };
        let (variable, value) = match set("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") {
            Some(value) => ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", value),
            None => (
                "OTEL_EXPORTER_OTLP_PROTOCOL",
                set("OTEL_EXPORTER_OTLP_PROTOCOL").unwrap_or_else(|| "http/protobuf".into()),
            ),
        };
        let protocol = match value.as_str() {
            "grpc" => Protocol::Grpc,
            "http/protobuf" => Protocol::HttpProtobuf,
            _ => return Err(TelemetryError::Protocol { variable, value }),
        };
        let service_named = set("OTEL_SERVICE_NAME").is_some()
            || set("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|attributes| {
                attributes
                    .split(',')
                    .any(|kv| kv.trim().starts_with("service.name="))
            });
        Ok(Some(Settings {
            protocol,
            endpoint,
            service_named,
        }))
    }
}

/// The trace pipeline, while it runs; [`Telemetry::shutdown`] exports what is left.
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Starts the exporter thread (the exporter is built on it, so a bad header or endpoint is
    /// an error here) and the tracer provider, and turns tracing on.
    pub fn start(settings: &Settings) -> Result<Telemetry, TelemetryError> {
        let mut resource = Resource::builder();
        if !settings.service_named {
            resource = resource.with_service_name("hotserve");
        }
        let resource = resource
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        let processor = Processor::start(settings.protocol, resource.clone())?;
        let provider = SdkTracerProvider::builder()
            .with_resource(resource)
            .with_span_processor(processor)
            .build();
        opentelemetry::global::set_tracer_provider(provider.clone());
        let _ = TRACER.set(provider.tracer("hotserve"));
        ENABLED.store(true, Ordering::Relaxed);
        Ok(Telemetry { provider })
    }

    /// The `tracing` layer that turns hotserve's spans into OpenTelemetry spans: spans of
    /// hotserve's own targets at any level (the log level does not apply to them), and warnings
    /// and errors inside them as span events.
    pub fn layer<S>(&self) -> impl tracing_subscriber::Layer<S>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        use tracing_subscriber::Layer as _;
        tracing_opentelemetry::layer()
            .with_tracer(self.provider.tracer("hotserve"))
            .with_location(false)
            .with_tracked_inactivity(false)
            // Our code asks a span for its context (`span.context()`); making it the thread's
            // current OpenTelemetry context at every poll of every instrumented future would
            // cost a push and a pop each time for nothing.
            .with_context_activation(false)
            .with_threads(false)
            .with_level(false)
            .with_target(false)
            .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
                meta.target().starts_with("hotserve")
                    && (meta.is_span() || *meta.level() <= tracing::Level::WARN)
            }))
    }

    /// Exports what is queued (within a few seconds) and stops the exporter.
    pub fn shutdown(self) {
        ENABLED.store(false, Ordering::Relaxed);
        if let Err(err) = self.provider.shutdown_with_timeout(Duration::from_secs(3)) {
            tracing::warn!(%err, "traces not all exported at shutdown");
        }
    }
}

/// The caller's trace context, from W3C `traceparent` and `tracestate` headers (HTTP, or gRPC
/// metadata as headers); an empty context when there is none or it is not valid.
pub fn extract(headers: &hyper::HeaderMap) -> Context {
    TraceContextPropagator::new().extract(&opentelemetry_http::HeaderExtractor(headers))
}

/// Makes `span` a child of the caller's context in `headers`, when traces are on.
pub fn continue_from(span: &tracing::Span, headers: &hyper::HeaderMap) {
    if enabled() {
        let parent = extract(headers);
        if parent.span().span_context().is_valid() {
            let _ = span.set_parent(parent);
        }
    }
}

/// Adds `traceparent` (and `tracestate`) for the current span to an outgoing request's
/// headers, when traces are on and the span is sampled.
pub fn inject(headers: &mut hyper::HeaderMap) {
    if !enabled() {
        return;
    }
    let context = tracing::Span::current().context();
    if context.span().span_context().is_valid() {
        TraceContextPropagator::new()
            .inject_context(&context, &mut opentelemetry_http::HeaderInjector(headers));
    }
}

/// The current span's context when traces are on and it is sampled: what a queued job keeps
/// so that its worker can add the request's queue and inference spans.
pub fn current() -> Option<Context> {
    if !enabled() {
        return None;
    }
    let context = tracing::Span::current().context();
    context
        .span()
        .span_context()
        .is_sampled()
        .then_some(context)
}

/// The trace id of `span`, when traces are on and it has one (for the access and payload
/// logs).
pub fn trace_id_of(span: &tracing::Span) -> Option<String> {
    if !enabled() {
        return None;
    }
    let context = span.context();
    let span = context.span();
    let span = span.span_context();
    span.is_valid().then(|| span.trace_id().to_string())
}

/// Records the `tokenize` span of the current request: from `started` until now, for
/// `texts` texts. Made after the fact (a few microseconds of work for a short text do not
/// warrant a live span), only when the request is sampled.
pub fn record_tokenize(started: Instant, texts: usize) {
    let (Some(parent), Some(tracer)) = (current(), TRACER.get()) else {
        return;
    };
    let mut span = tracer
        .span_builder("tokenize")
        .with_start_time(system_time(started))
        .with_attributes([KeyValue::new("hotserve.texts", texts as i64)])
        .start_with_context(tracer, &parent);
    opentelemetry::trace::Span::end(&mut span);
}

/// The wall-clock time of `instant`.
fn system_time(instant: Instant) -> SystemTime {
    SystemTime::now() - instant.elapsed()
}

/// One inference batch as its worker saw it, for [`record_batch`].
pub struct BatchTrace<'a> {
    pub model: &'a str,
    pub version: &'a str,
    pub worker: usize,
    /// The all-cores session ran it.
    pub all_cores: bool,
    /// Texts (or tensor calls) in it.
    pub size: usize,
    /// Tokens in it (0 for tensors).
    pub tokens: usize,
    pub started: Instant,
    pub finished: Instant,
    /// Each traced request in it: its context and when it was queued.
    pub requests: Vec<(&'a Context, Instant)>,
    pub failed: bool,
}

/// Records a finished batch, after the fact, with the times its worker took, only for
/// batches with a sampled request: for each traced request a `queue wait` span and an
/// `inference` span (the batch's size, tokens and worker); when the batch served several
/// traced requests, also one `inference batch` span, a child of the first and linked to
/// every one, which each request's `inference` span links back to.
pub fn record_batch(batch: BatchTrace<'_>) {
    let (Some(&(first, _)), Some(tracer)) = (batch.requests.first(), TRACER.get()) else {
        return;
    };
    let now = (Instant::now(), SystemTime::now());
    let at = |instant: Instant| now.1 - now.0.saturating_duration_since(instant);
    let attributes = vec![
        KeyValue::new("hotserve.model", batch.model.to_string()),
        KeyValue::new("hotserve.model.version", batch.version.to_string()),
        KeyValue::new("hotserve.batch.size", batch.size as i64),
        KeyValue::new("hotserve.batch.requests", batch.requests.len() as i64),
        KeyValue::new("hotserve.batch.tokens", batch.tokens as i64),
        KeyValue::new("hotserve.worker", batch.worker as i64),
        KeyValue::new(
            "hotserve.session",
            if batch.all_cores {
                "all-cores"
            } else {
                "worker"
            },
        ),
    ];
    let failed = |span: &mut opentelemetry_sdk::trace::Span| {
        if batch.failed {
            opentelemetry::trace::Span::set_status(
                span,
                opentelemetry::trace::Status::error("inference failed"),
            );
        }
    };
    let batch_context: Option<SpanContext> = (batch.requests.len() > 1).then(|| {
        let links = batch
            .requests
            .iter()
            .map(|(context, _)| Link::with_context(context.span().span_context().clone()))
            .collect();
        let mut span = tracer
            .span_builder("inference batch")
            .with_kind(SpanKind::Internal)
            .with_start_time(at(batch.started))
            .with_attributes(attributes.clone())
            .with_links(links)
            .start_with_context(tracer, first);
        failed(&mut span);
        let context = opentelemetry::trace::Span::span_context(&span).clone();
        opentelemetry::trace::Span::end_with_timestamp(&mut span, at(batch.finished));
        context
    });
    // Per request, the batch's figures (its model is the request's own).
    let per_request = &attributes[2..];
    for (context, enqueued) in &batch.requests {
        let mut wait = tracer
            .span_builder("queue wait")
            .with_start_time(at(*enqueued))
            .start_with_context(tracer, context);
        opentelemetry::trace::Span::end_with_timestamp(&mut wait, at(batch.started));
        let mut run = tracer
            .span_builder("inference")
            .with_start_time(at(batch.started))
            .with_attributes(per_request.to_vec());
        if let Some(batch_context) = &batch_context {
            run = run.with_links(vec![Link::with_context(batch_context.clone())]);
        }
        let mut run = run.start_with_context(tracer, context);
        failed(&mut run);
        opentelemetry::trace::Span::end_with_timestamp(&mut run, at(batch.finished));
    }
}

/// What reaches the exporter thread.
enum Message {
    Span(Box<SpanData>),
    /// Export everything queued before this, then answer.
    Flush(SyncSender<()>),
}

/// The span processor: a bounded queue in front of the exporter thread (see the module doc).
#[derive(Debug)]
struct Processor {
    queue: SyncSender<Message>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Processor {
    fn start(protocol: Protocol, resource: Resource) -> Result<Processor, TelemetryError> {
        let (queue, spans) = sync_channel(QUEUED_SPANS);
        let (built, build_result) = sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("hotserve-otlp".into())
            .spawn(move || export_loop(protocol, resource, spans, built))
            .map_err(|err| TelemetryError::Exporter(err.to_string()))?;
        match build_result.recv() {
            Ok(Ok(())) => Ok(Processor {
                queue,
                thread: Mutex::new(Some(thread)),
            }),
            Ok(Err(err)) => Err(TelemetryError::Exporter(err)),
            Err(_) => Err(TelemetryError::Exporter("the exporter thread ended".into())),
        }
    }

    fn flush(&self, timeout: Duration) -> OTelSdkResult {
        let (done, wait) = sync_channel(1);
        // Never waits for room: a queue that is full (a collector that is down) is not flushed
        // at shutdown, it is dropped with the process.
        match self.queue.try_send(Message::Flush(done)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(OTelSdkError::Timeout(Duration::ZERO)),
            Err(TrySendError::Disconnected(_)) => return Err(OTelSdkError::AlreadyShutdown),
        }
        wait.recv_timeout(timeout)
            .map_err(|_| OTelSdkError::Timeout(timeout))
    }
}

impl SpanProcessor for Processor {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        match self.queue.try_send(Message::Span(Box::new(span))) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                TRACE_EXPORTS.queue_full.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.flush(Duration::from_secs(5))
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let result = self.flush(timeout);
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        // The thread ends once every sender is gone, which is when the provider drops us.
        drop(thread);
        result
    }
}

/// The exporter thread: builds the exporter on its own runtime (answering `built`), then
/// every [`EXPORT_EVERY`] exports what arrived; ends when the processor is gone.
fn export_loop(
    protocol: Protocol,
    resource: Resource,
    spans: Receiver<Message>,
    built: SyncSender<Result<(), String>>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            let _ = built.send(Err(err.to_string()));
            return;
        }
    };
    let exporter = runtime.block_on(async {
        let builder = opentelemetry_otlp::SpanExporter::builder();
        match protocol {
            Protocol::Grpc => builder.with_tonic().build(),
            Protocol::HttpProtobuf => builder.with_http().build(),
        }
    });
    let mut exporter = match exporter {
        Ok(exporter) => exporter,
        Err(err) => {
            let _ = built.send(Err(err.to_string()));
            return;
        }
    };
    exporter.set_resource(&resource);
    let _ = built.send(Ok(()));
    let mut failing = false;
    let mut batch = Vec::with_capacity(EXPORT_BATCH);
    loop {
        std::thread::sleep(EXPORT_EVERY);
        let ended = loop {
            match spans.try_recv() {
                Ok(Message::Span(span)) => {
                    batch.push(*span);
                    if batch.len() == EXPORT_BATCH {
                        export(&runtime, &exporter, &mut batch, &mut failing);
                    }
                }
                Ok(Message::Flush(done)) => {
                    export(&runtime, &exporter, &mut batch, &mut failing);
                    let _ = done.send(());
                }
                Err(TryRecvError::Empty) => break false,
                Err(TryRecvError::Disconnected) => break true,
            }
        };
        export(&runtime, &exporter, &mut batch, &mut failing);
        if ended {
            let _ = exporter.shutdown();
            return;
        }
    }
}

/// Exports `batch` (emptying it) and counts the outcome; logs a failure once, and the
/// recovery once.
fn export(
    runtime: &tokio::runtime::Runtime,
    exporter: &opentelemetry_otlp::SpanExporter,
    batch: &mut Vec<SpanData>,
    failing: &mut bool,
) {
    if batch.is_empty() {
        return;
    }
    let spans = std::mem::replace(batch, Vec::with_capacity(EXPORT_BATCH));
    let count = spans.len() as u64;
    // The exporter has its own timeout (OTEL_EXPORTER_OTLP_TIMEOUT, 10 s by default); this
    // one bounds a call that would not end anyway.
    let result = runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(30), exporter.export(spans))
            .await
            .unwrap_or_else(|_| Err(OTelSdkError::Timeout(Duration::from_secs(30))))
    });
    match result {
        Ok(()) => {
            TRACE_EXPORTS.exported.fetch_add(count, Ordering::Relaxed);
            if std::mem::take(failing) {
                tracing::info!("the OTLP collector takes traces again");
            }
        }
        Err(err) => {
            TRACE_EXPORTS
                .export_failed
                .fetch_add(count, Ordering::Relaxed);
            if !std::mem::replace(failing, true) {
                tracing::warn!(%err, "cannot export traces to the OTLP collector; dropping them (counted in hotserve_trace_spans_dropped_total) until it can");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<Option<Settings>, TelemetryError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_env(&move |name: &str| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn off_unless_an_endpoint_is_set() {
        assert_eq!(settings(&[]).unwrap(), None);
        assert_eq!(
            settings(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]).unwrap(),
            None
        );
        let on = settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")])
            .unwrap()
            .unwrap();
        assert_eq!(on.protocol, Protocol::HttpProtobuf);
        for off in [
            ("OTEL_SDK_DISABLED", "TRUE"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ] {
            assert_eq!(
                settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://x:4318"), off]).unwrap(),
                None
            );
        }
    }

    #[test]
    fn protocols() {
        let endpoint = (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://127.0.0.1:4317",
        );
        let grpc = settings(&[endpoint, ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]).unwrap();
        assert_eq!(grpc.unwrap().protocol, Protocol::Grpc);
        let traces_first = settings(&[
            endpoint,
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
        ])
        .unwrap();
        assert_eq!(traces_first.unwrap().protocol, Protocol::HttpProtobuf);
        let err = settings(&[endpoint, ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")])
            .expect_err("http/json is not built");
        assert!(err.to_string().contains("grpc or http/protobuf"), "{err}");
    }

    #[test]
    fn trace_context_round_trip() {
        let mut headers = hyper::HeaderMap::new();
        headers.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        let context = extract(&headers);
        let span = context.span();
        let parent = span.span_context();
        assert!(parent.is_valid() && parent.is_sampled() && parent.is_remote());
        assert_eq!(
            parent.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert!(!extract(&hyper::HeaderMap::new())
            .span()
            .span_context()
            .is_valid());
    }
}
