//! The HTTP transport (hyper 1.x): accepting connections (HTTP/1.1, or HTTP/2 with prior
//! knowledge or by ALPN, see [`connection`]), draining them on shutdown, reading bodies within
//! limits, and routing to [`routes`]. This layer parses and answers; it never
//! calls ONNX Runtime (predictions go through [`crate::queue::Pool`]).

pub mod connection;
pub mod error;
pub mod routes;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body as _, Incoming};
use hyper::header::{HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::field::Empty;
use tracing::Instrument;

use crate::access;
use crate::security::tls::{Refusal, TlsAcceptor};
pub use crate::state::{App, Served};
use crate::telemetry;
use error::ApiError;

/// The response type of every handler.
pub type HttpResponse = Response<Full<Bytes>>;

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static X_MODEL_VERSION: HeaderName = HeaderName::from_static("x-model-version");

/// Serves connections from `listener` until `shutdown` resolves, then stops accepting and
/// waits up to `grace` for in-flight requests (HTTP/1 connections are closed after their
/// current request, HTTP/2 ones get a GOAWAY and close once their streams have answered). Returns once every connection is closed or the grace period is over. With `tls`,
/// each connection's handshake runs in its own task, within `header_read_timeout`, so a slow
/// client never holds the accept loop.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let graceful = GracefulShutdown::new();
    let builders = Arc::new(connection::builders(&app.config));
    let connections = Arc::new(Semaphore::new(app.config.max_connections));
    // Turns true at shutdown, for connections that have not sent their first bytes yet.
    let (drain, draining) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    while let Some((stream, peer, permit)) =
        crate::accept::next_connection(&listener, &connections, &mut shutdown).await
    {
        let activity = Arc::new(connection::Activity::default());
        let stream =
            connection::Watched::new(stream, activity.clone(), app.config.keep_alive_timeout);
        let metrics = app.metrics.clone();
        let app = app.clone();
        let service_activity = activity.clone();
        let service = service_fn(move |request| {
            let app = app.clone();
            let busy = service_activity.busy();
            async move {
                let response = handle(&app, request, peer).await;
                drop(busy);
                Ok::<_, Infallible>(response)
            }
        });
        let builders = builders.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        let draining = draining.clone();
        metrics.open_connections.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let result = match tls {
                None => {
                    connection::serve(stream, &builders, &activity, service, watcher, draining)
                        .await
                }
                Some(tls) => match accept_tls(&tls, stream).await {
                    Ok(stream) => {
                        connection::serve(stream, &builders, &activity, service, watcher, draining)
                            .await
                    }
                    Err(refusal) => {
                        let reason = match refusal {
                            Refusal::PlainHttp => "plain_http_on_tls",
                            Refusal::Handshake(err) => {
                                tracing::debug!(%peer, %err, "TLS handshake failed");
                                "tls_handshake_failed"
                            }
                        };
                        metrics.connections_closed.inc(&[("reason", reason)]);
                        metrics.open_connections.fetch_sub(1, Ordering::Relaxed);
                        drop(permit);
                        return;
                    }
                },
            };
            let reason = connection::CloseReason::of(&result, activity.timed_out());
            if let Err(err) = &result {
                tracing::debug!(%peer, %err, reason = reason.as_str(), "connection ended with an error");
            }
            metrics
                .connections_closed
                .inc(&[("reason", reason.as_str())]);
            metrics.open_connections.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
    drop(listener);
    let _ = drain.send(true);
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections closed"),
        _ = tokio::time::sleep(grace) => tracing::warn!(?grace, "shutdown deadline passed with requests still in flight"),
    }
}

/// The TLS side of an accepted connection, or why it was not served: its first byte is
/// looked at first, so a plain HTTP request gets a plain HTTP answer.
async fn accept_tls(
    tls: &TlsAcceptor,
    stream: connection::Watched<tokio::net::TcpStream>,
) -> Result<tokio_rustls::server::TlsStream<connection::Watched<tokio::net::TcpStream>>, Refusal> {
    let started = tokio::time::Instant::now();
    let first = stream.first_byte(tls.handshake_timeout()).await;
    tls.accept_or_refuse(stream, first, started).await
}

/// Handles one request: request id, routing, error rendering, metrics.
async fn handle(app: &App, request: Request<Incoming>, peer: SocketAddr) -> HttpResponse {
    let started = Instant::now();
    let request_id = request
        .headers()
        .get(&X_REQUEST_ID)
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .cloned()
        .unwrap_or_else(new_request_id);
    app.metrics.in_flight.fetch_add(1, Ordering::Relaxed);
    // What the access record needs of the request, kept only when there is an access log.
    let seen = app.access_log.enabled().then(|| Seen {
        arrived: SystemTime::now(),
        method: request.method().clone(),
        path: request.uri().path().to_string(),
        traceparent: request.headers().get("traceparent").cloned(),
    });
    // The request's span: for the logs, or with traces on, the server span of the HTTP
    // conventions (only those fields: each is an attribute to copy and export), a child of
    // the caller's `traceparent`.
    let span = if telemetry::enabled() {
        let routed = crate::route::resolve(request.uri().path());
        let name = format!("{} {}", request.method(), routed.route.label(routed.target));
        tracing::debug_span!(
            "request",
            otel.name = name,
            otel.kind = "server",
            otel.status_code = Empty,
            http.request.method = request.method().as_str(),
            http.route = Empty,
            http.response.status_code = Empty,
            url.path = request.uri().path(),
            network.protocol.version = protocol_version(request.version()),
            client.address = %peer.ip(),
            hotserve.request_id = Empty,
            hotserve.model = Empty,
            hotserve.model.version = Empty,
        )
    } else {
        tracing::debug_span!("request", id = ?request_id, method = %request.method(), path = %request.uri().path(), %peer)
    };
    telemetry::continue_from(&span, request.headers());
    let routed = routes::route(app, request, &request_id).instrument(span.clone());
    // With an access log, the queue notes the request's batch and wait.
    let (routed, noted) = match &seen {
        Some(_) => access::noting(routed).await,
        None => (routed.await, access::Noted::default()),
    };
    let routes::Routed {
        route,
        model,
        mut response,
    } = routed;
    if response.status() == StatusCode::INTERNAL_SERVER_ERROR {
        // Rare by design (bad input is a 4xx; 503/504 are states the metrics count), so worth a
        // line at the default level, with the id the client saw.
        tracing::warn!(request_id = ?request_id, route, status = response.status().as_u16(), "request failed with a server error");
    }
    response
        .headers_mut()
        .insert(X_REQUEST_ID.clone(), request_id);
    app.metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
    app.metrics.observe_request(
        route,
        model.as_deref(),
        response.status().as_u16(),
        started.elapsed(),
    );
    span.in_scope(|| tracing::debug!(status = response.status().as_u16(), elapsed = ?started.elapsed(), "answered"));
    if telemetry::enabled() {
        describe_span(&span, &response, route, model.as_deref());
    }
    if let Some(seen) = seen {
        let header = |name: &HeaderName| {
            response
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
        };
        let traceparent = seen.traceparent.as_ref().and_then(|v| v.to_str().ok());
        let trace_id = access::request_trace_id(&span, traceparent);
        app.access_log.record(&access::Record {
            time: access::timestamp(seen.arrived),
            method: seen.method.as_str(),
            route,
            path: &seen.path,
            status: response.status().as_u16(),
            grpc_status: None,
            duration_ms: access::millis(started.elapsed()),
            bytes: response.body().size_hint().exact(),
            model: model.as_deref(),
            version: header(&X_MODEL_VERSION),
            request_id: header(&X_REQUEST_ID).unwrap_or_default(),
            trace_id: trace_id.as_deref(),
            batch_size: noted.batch_size,
            queue_ms: noted.queue_wait.map(access::millis),
            peer: Some(peer),
        });
    }
    response
}

/// Records what the request's span learnt from routing and answering (traces on).
fn describe_span(
    span: &tracing::Span,
    response: &HttpResponse,
    route: &'static str,
    model: Option<&str>,
) {
    let status = response.status();
    span.record("http.route", route);
    span.record("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    if let Some(id) = response
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
    {
        span.record("hotserve.request_id", id);
    }
    if let Some(model) = model {
        span.record("hotserve.model", model);
    }
    if let Some(version) = response
        .headers()
        .get(&X_MODEL_VERSION)
        .and_then(|v| v.to_str().ok())
    {
        span.record("hotserve.model.version", version);
    }
}

/// `network.protocol.version` of a request.
fn protocol_version(version: hyper::Version) -> &'static str {
    match version {
        hyper::Version::HTTP_10 => "1.0",
        hyper::Version::HTTP_2 => "2",
        hyper::Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

/// What the access log records of a request before it is handled.
struct Seen {
    arrived: SystemTime,
    method: hyper::Method,
    path: String,
    traceparent: Option<HeaderValue>,
}

/// A request id: 16 hex digits from a process-wide counter mixed with a random start.
fn new_request_id() -> HeaderValue {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static START: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let start = *START.get_or_init(|| fastrand::u64(..));
    let id = start.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed));
    HeaderValue::from_str(&format!("{id:016x}")).expect("hex is a valid header value")
}

/// Reads the whole body, refusing more than `limit` bytes without buffering them, and a
/// client that has not sent it all by `deadline`, so a slow sender cannot hold a connection
/// and a task forever.
pub async fn read_body(
    request: Request<Incoming>,
    limit: usize,
    deadline: Instant,
) -> Result<Bytes, ApiError> {
    if let Some(length) = request.headers().get(CONTENT_LENGTH) {
        let length: Option<usize> = length.to_str().ok().and_then(|v| v.parse().ok());
        if length.is_some_and(|n| n > limit) {
            return Err(ApiError::too_large(limit));
        }
    }
    let collect = Limited::new(request.into_body(), limit).collect();
    match tokio::time::timeout_at(deadline.into(), collect).await {
        Err(_) => Err(ApiError::request_timeout()),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(err))
            if err
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(ApiError::too_large(limit))
        }
        Ok(Err(err)) => Err(ApiError::unreadable_body(err)),
    }
}

/// Reads and drops `request`'s body when it is at most `limit` bytes and arrives `within`
/// that time; otherwise leaves the rest unread (hyper then ends the stream or connection).
pub async fn drain_body(request: Request<Incoming>, limit: usize, within: std::time::Duration) {
    let declared: Option<usize> = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|length| length.to_str().ok())
        .and_then(|length| length.parse().ok());
    if declared.is_some_and(|length| length > limit) {
        return;
    }
    let collect = Limited::new(request.into_body(), limit).collect();
    let _ = tokio::time::timeout(within, collect).await;
}

/// A JSON response with `body` (a `Serialize` body type; serializing one cannot fail).
pub fn json<T: serde::Serialize + ?Sized>(status: StatusCode, body: &T) -> HttpResponse {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|err| {
        tracing::error!(%err, "cannot serialize a response body; this is a bug");
        b"{}".to_vec()
    });
    text(status, bytes, "application/json")
}

/// A response with any body and content type.
pub fn text(
    status: StatusCode,
    body: impl Into<Bytes>,
    content_type: &'static str,
) -> HttpResponse {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
