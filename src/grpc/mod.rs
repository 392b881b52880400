//! The gRPC transport: KServe's `inference.GRPCInferenceService` (the Open Inference
//! Protocol over gRPC, what `tritonclient.grpc` speaks) on its own listener (`grpc_listen`).
//! It owns the service ([`Inference`]), the mapping between protocol buffers and
//! [`crate::oip`] (`convert.rs`, pure) and the accept loop ([`serve`]); inference itself goes
//! through [`crate::oip::infer`], so the queue, batching, deadline and metrics are those of
//! every other route.
//!
//! The code generated from `proto/grpc_predict_v2.proto` is checked in ([`proto`], made by
//! `scripts/gen-grpc.sh`): nothing compiles a .proto at build time. Connections are served by
//! hyper's HTTP/2 server, as HTTP/1 ones are in [`crate::http`], with the same graceful drain;
//! tonic contributes only the generated service and its codec. A TLS acceptor wraps the
//! accepted TCP stream inside [`serve`]'s per-connection task (see `serve_connection`).

mod convert;
/// The messages, server and client generated from `proto/grpc_predict_v2.proto`.
#[allow(clippy::all, clippy::pedantic)]
pub mod proto;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tonic::codegen::Service as _;
use tonic::metadata::MetadataMap;
use tonic::{Code, Request, Response, Status};
use tracing::field::Empty;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::access;
use crate::oip::{self, OipError};
use crate::payload;
use crate::route::Route;
use crate::security::keys;
use crate::security::tls::TlsAcceptor;
use crate::state::App;
use proto::grpc_inference_service_server::{GrpcInferenceService, GrpcInferenceServiceServer};
use proto::{
    ModelInferRequest, ModelInferResponse, ModelMetadataRequest, ModelMetadataResponse,
    ModelReadyRequest, ModelReadyResponse, ServerLiveRequest, ServerLiveResponse,
    ServerMetadataRequest, ServerMetadataResponse, ServerReadyRequest, ServerReadyResponse,
};

/// The service: every RPC of `GRPCInferenceService`, over the same [`App`] the HTTP routes use.
#[derive(Clone)]
pub struct Inference {
    /// Models, pool, configuration and metrics, shared with the HTTP server.
    app: Arc<App>,
}

/// Serves gRPC on `listener` until `shutdown` resolves, then stops accepting and waits up to
/// `grace` for calls in flight (each connection gets a GOAWAY and closes once its calls have
/// answered). Messages larger than `max_body_bytes` are refused (tonic's codec answers
/// OUT_OF_RANGE).
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let service = GrpcInferenceServiceServer::new(Inference { app: app.clone() })
        .max_decoding_message_size(app.config.max_body_bytes);
    let graceful = GracefulShutdown::new();
    let connections = Arc::new(tokio::sync::Semaphore::new(app.config.max_connections));
    tokio::pin!(shutdown);
    while let Some((stream, peer, permit)) =
        crate::accept::next_connection(&listener, &connections, &mut shutdown).await
    {
        let service = service.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            // The handshake runs here, in the connection's own task, so that a slow
            // client never holds the accept loop.
            let served = match tls {
                None => serve_connection(stream, service, watcher, peer).await,
                Some(tls) => match tls.accept(stream).await {
                    Ok(stream) => serve_connection(stream, service, watcher, peer).await,
                    Err(err) => {
                        tracing::debug!(%peer, %err, "gRPC TLS handshake failed");
                        drop(permit);
                        return;
                    }
                },
            };
            if let Err(err) = served {
                tracing::debug!(%peer, %err, "gRPC connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all gRPC connections closed"),
        _ = tokio::time::sleep(grace) => tracing::warn!(?grace, "shutdown deadline passed with gRPC calls still in flight"),
    }
}

/// Serves one connection (plain TCP, or a TLS stream over it) with HTTP/2, watched by the
/// drain.
pub async fn serve_connection<IO>(
    io: IO,
    service: GrpcInferenceServiceServer<Inference>,
    watcher: Watcher,
    peer: SocketAddr,
) -> Result<(), hyper::Error>
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder.timer(TokioTimer::new());
    // Each call learns its client's address from its extensions (the access log).
    let service = service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(Peer(peer));
        service.clone().call(request)
    });
    let connection = builder.serve_connection(TokioIo::new(io), service);
    watcher.watch(connection).await
}

/// The gRPC service's full name, as spans name it.
const SERVICE: &str = "inference.GRPCInferenceService";

/// The client's address, put in each call's extensions by [`serve_connection`].
#[derive(Clone, Copy, Debug)]
struct Peer(SocketAddr);

/// What a call's metadata and connection say of its caller, read only when traces or the
/// access log need it.
#[derive(Default)]
struct Caller {
    /// The caller's trace context (traces on).
    trace: Option<opentelemetry::Context>,
    /// `x-request-id` metadata, else a new id (access log on).
    request_id: Option<String>,
    /// Its `traceparent` metadata (access log on).
    traceparent: Option<String>,
    peer: Option<SocketAddr>,
}

impl Caller {
    fn of<T>(app: &App, request: &Request<T>) -> Caller {
        let mut caller = Caller::default();
        if crate::telemetry::enabled() {
            caller.trace = Some(crate::telemetry::extract(request.metadata().as_ref()));
        }
        if app.access_log.enabled() {
            let metadata = |key: &str| request.metadata().get(key).and_then(|v| v.to_str().ok());
            caller.request_id = Some(
                metadata("x-request-id")
                    .filter(|id| !id.is_empty() && id.len() <= 128)
                    .map_or_else(payload::new_request_id, str::to_string),
            );
            caller.traceparent = metadata("traceparent").map(str::to_string);
            caller.peer = request.extensions().get::<Peer>().map(|peer| peer.0);
        }
        caller
    }
}

/// A `grpc-timeout` header (`<up to 8 digits><H|M|S|m|u|n>`), as a duration.
fn grpc_timeout(metadata: &MetadataMap) -> Option<Duration> {
    let value = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// The name Prometheus labels carry for a status code (`OK`, `NOT_FOUND`, ...).
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

impl Inference {
    /// Lets a call through when it needs no API key or carries a good one; `route` is the
    /// REST route of the same operation, so both transports decide alike.
    fn authorize<T>(&self, request: &Request<T>, route: Route) -> Result<(), Status> {
        let authorization = request
            .metadata()
            .get("authorization")
            .map(|value| value.as_bytes());
        let needs_key = route.needs_key(&self.app.config);
        keys::check(self.app.api_keys.as_deref(), needs_key, authorization)
            .map_err(|err| convert::unauthenticated(&err))
    }

    /// Whether an inference call is sampled for its model's payload log. Its request id is the
    /// request's `id`, else its `x-request-id` metadata, else a new one; its trace id is its
    /// `traceparent`'s.
    fn sample(&self, request: &Request<ModelInferRequest>) -> Option<payload::Exchange> {
        let message = request.get_ref();
        let served = self.app.model(&message.model_name)?;
        let policy = served.payload.as_ref()?;
        let metadata = |key: &str| request.metadata().get(key).and_then(|v| v.to_str().ok());
        let request_id = match (message.id.as_str(), metadata("x-request-id")) {
            ("", Some(id)) => id.to_string(),
            ("", None) => payload::new_request_id(),
            (id, _) => id.to_string(),
        };
        policy.sample(payload::Seen {
            request_id: &request_id,
            trace_id: metadata("traceparent").and_then(access::trace_id),
            protocol: payload::Protocol::Grpc,
            route: "ModelInfer",
        })
    }

    /// Runs one call: counts it in flight, and records its method, model and status code.
    /// `model` is the name the call gave; it labels the metrics only when it is configured.
    /// `caller` is what its metadata and connection said (traces, the access log).
    async fn call<T: Answered>(
        &self,
        method: &'static str,
        model: Option<&str>,
        caller: Caller,
        work: impl Future<Output = Result<T, Status>>,
    ) -> Result<Response<T>, Status> {
        let started = Instant::now();
        let metrics = &self.app.metrics;
        metrics.in_flight.fetch_add(1, Ordering::Relaxed);
        // Decremented and counted even when the client cancels and the future is dropped.
        let mut guard = CallGuard {
            app: &self.app,
            method,
            model: model.filter(|name| self.app.model(name).is_some()),
            started,
            code: Code::Cancelled,
            access: self.app.access_log.enabled().then(|| Access {
                arrived: SystemTime::now(),
                request_id: caller.request_id.clone().unwrap_or_default(),
                trace_id: None,
                peer: caller.peer,
                noted: access::Noted::default(),
                version: None,
            }),
        };
        // The server span of the call, by the RPC conventions (traces on).
        let span = tracing::debug_span!(
            "grpc",
            otel.name = format!("{SERVICE}/{method}"),
            otel.kind = "server",
            otel.status_code = Empty,
            rpc.system = "grpc",
            rpc.service = SERVICE,
            rpc.method = method,
            rpc.grpc.status_code = Empty,
            hotserve.model = model,
            hotserve.model.version = Empty,
        );
        if let Some(parent) = caller.trace {
            let _ = span.set_parent(parent);
        }
        let work = work.instrument(span.clone());
        let result = match &mut guard.access {
            Some(access) => {
                access.trace_id = access::request_trace_id(&span, caller.traceparent.as_deref());
                let (result, noted) = access::noting(work).await;
                access.noted = noted;
                result
            }
            None => work.await,
        };
        guard.code = match &result {
            Ok(_) => Code::Ok,
            Err(status) => status.code(),
        };
        if let Ok(answer) = &result {
            if let Some(version) = answer.version() {
                span.record("hotserve.model.version", version);
            }
            if let Some(access) = &mut guard.access {
                access.version = answer.version().map(str::to_string);
            }
        }
        span.record("rpc.grpc.status_code", guard.code as i64);
        if matches!(
            guard.code,
            Code::Unknown
                | Code::DeadlineExceeded
                | Code::Unimplemented
                | Code::Internal
                | Code::Unavailable
                | Code::DataLoss
        ) {
            span.record("otel.status_code", "ERROR");
        }
        match &result {
            Err(status) if status.code() == Code::Internal => {
                tracing::warn!(method, model = ?guard.model, message = status.message(), "gRPC call failed with an internal error");
            }
            _ => {}
        }
        result.map(Response::new)
    }
}

/// Ends a call's bookkeeping when it finishes or is dropped (a cancelled call counts as
/// CANCELLED).
struct CallGuard<'a> {
    app: &'a App,
    method: &'static str,
    model: Option<&'a str>,
    started: Instant,
    code: Code,
    /// What the access record needs (access log on).
    access: Option<Access>,
}

/// An answer, as the access log reads it: the model version it names, if any.
trait Answered {
    fn version(&self) -> Option<&str> {
        None
    }
}

impl Answered for ServerLiveResponse {}
impl Answered for ServerReadyResponse {}
impl Answered for ModelReadyResponse {}
impl Answered for ServerMetadataResponse {}
impl Answered for ModelMetadataResponse {}
impl Answered for ModelInferResponse {
    fn version(&self) -> Option<&str> {
        Some(self.model_version.as_str()).filter(|version| !version.is_empty())
    }
}

/// A call's access record in the making.
struct Access {
    arrived: SystemTime,
    request_id: String,
    trace_id: Option<String>,
    peer: Option<SocketAddr>,
    noted: access::Noted,
    /// The version that answered (`ModelInfer`).
    version: Option<String>,
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        let metrics = &self.app.metrics;
        metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
        let elapsed = self.started.elapsed();
        metrics.observe_grpc(self.method, self.model, code_name(self.code), elapsed);
        if let Some(record) = &self.access {
            let path = format!("/{SERVICE}/{}", self.method);
            self.app.access_log.record(&access::Record {
                time: access::timestamp(record.arrived),
                method: "POST",
                route: &path,
                path: &path,
                status: 200,
                grpc_status: Some(self.code as i32),
                duration_ms: access::millis(elapsed),
                bytes: None,
                model: self.model,
                version: record.version.as_deref(),
                request_id: &record.request_id,
                trace_id: record.trace_id.as_deref(),
                batch_size: record.noted.batch_size,
                queue_ms: record.noted.queue_wait.map(access::millis),
                peer: record.peer,
            });
        }
    }
}

#[tonic::async_trait]
impl GrpcInferenceService for Inference {
    async fn server_live(
        &self,
        request: Request<ServerLiveRequest>,
    ) -> Result<Response<ServerLiveResponse>, Status> {
        let caller = Caller::of(&self.app, &request);
        self.authorize(&request, Route::OipLive)?;
        let live = oip::server_live(&self.app);
        self.call("ServerLive", None, caller, async {
            Ok(ServerLiveResponse { live })
        })
        .await
    }

    async fn server_ready(
        &self,
        request: Request<ServerReadyRequest>,
    ) -> Result<Response<ServerReadyResponse>, Status> {
        let caller = Caller::of(&self.app, &request);
        self.authorize(&request, Route::OipReady)?;
        let ready = oip::server_ready(&self.app);
        self.call("ServerReady", None, caller, async {
            Ok(ServerReadyResponse { ready })
        })
        .await
    }

    async fn model_ready(
        &self,
        request: Request<ModelReadyRequest>,
    ) -> Result<Response<ModelReadyResponse>, Status> {
        let caller = Caller::of(&self.app, &request);
        self.authorize(&request, Route::OipModelReady)?;
        let request = request.into_inner();
        let version = Some(request.version.as_str()).filter(|v| !v.is_empty());
        let work = async {
            let ready =
                oip::model_ready(&self.app, &request.name, version).map_err(convert::status)?;
            Ok(ModelReadyResponse { ready })
        };
        self.call("ModelReady", Some(&request.name), caller, work)
            .await
    }

    async fn server_metadata(
        &self,
        request: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        let caller = Caller::of(&self.app, &request);
        self.authorize(&request, Route::OipServer)?;
        let metadata = convert::server_metadata(oip::server_metadata());
        self.call("ServerMetadata", None, caller, async { Ok(metadata) })
            .await
    }

    async fn model_metadata(
        &self,
        request: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        let caller = Caller::of(&self.app, &request);
        self.authorize(&request, Route::OipModel)?;
        let request = request.into_inner();
        let version = Some(request.version.as_str()).filter(|v| !v.is_empty());
        let work = async {
            let metadata = oip::model_metadata(&self.app, &request.name, version)
                .await
                .map_err(convert::status)?;
            Ok(convert::model_metadata(metadata))
        };
        self.call("ModelMetadata", Some(&request.name), caller, work)
            .await
    }

    /// Inference, within the sooner of `request_timeout` and the client's `grpc-timeout`. A
    /// client that cancels drops this future, and with it its place in the queue: the pool
    /// skips a job whose caller has gone.
    async fn model_infer(
        &self,
        request: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
        let caller = Caller::of(&self.app, &request);
        self.authorize(&request, Route::OipInfer)?;
        let timeout = grpc_timeout(request.metadata());
        let sampled = self.sample(&request);
        let exchange = sampled.as_ref();
        let message = request.into_inner();
        let model = message.model_name.clone();
        let work = async {
            let (request, contents) = convert::infer_request(message).map_err(convert::status)?;
            let infer = oip::infer(&self.app, request, exchange);
            let answer = match timeout {
                Some(timeout) if timeout < self.app.config.request_timeout => {
                    tokio::time::timeout(timeout, infer)
                        .await
                        .unwrap_or_else(|_| {
                            self.app.metrics.rejected.inc(&[("reason", "deadline")]);
                            Err(OipError::Timeout(
                                "the call took longer than its gRPC deadline".into(),
                            ))
                        })
                }
                _ => infer.await,
            };
            answer
                .map(|answer| convert::infer_response(answer, contents))
                .map_err(convert::status)
        };
        let result = self.call("ModelInfer", Some(&model), caller, work).await;
        if let Some(exchange) = sampled {
            let code = match &result {
                Ok(_) => Code::Ok,
                Err(status) => {
                    exchange.failed(status.message());
                    status.code()
                }
            };
            exchange.finish(payload::Status::Grpc(code as i32));
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[rustfmt::skip]
    fn grpc_timeouts() {
        let check = |value: Option<&str>, expected: Option<Duration>| {
            let mut metadata = MetadataMap::new();
            if let Some(value) = value {
                metadata.insert("grpc-timeout", value.parse().unwrap());
            }
            assert_eq!(grpc_timeout(&metadata), expected, "{value:?}");
        };
        check(None, None);
        check(Some("1H"), Some(Duration::from_secs(3600)));
        check(Some("2M"), Some(Duration::from_secs(120)));
        check(Some("3S"), Some(Duration::from_secs(3)));
        check(Some("250m"), Some(Duration::from_millis(250)));
        check(Some("99999999u"), Some(Duration::from_micros(99_999_999)));
        check(Some("5n"), Some(Duration::from_nanos(5)));
        check(Some("123456789S"), None);
        check(Some("S"), None);
        check(Some("10x"), None);
        check(Some("-1S"), None);
        check(Some(""), None);
    }

    /// The generated code matches the vendored .proto: `scripts/gen-grpc.sh` records the
    /// .proto's digest in the file it writes.
    #[test]
    fn generated_code_is_up_to_date() {
        use sha2::{Digest, Sha256};
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let proto = std::fs::read(root.join("proto/grpc_predict_v2.proto")).unwrap();
        let digest: String = Sha256::digest(&proto)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let generated = std::fs::read_to_string(root.join("src/grpc/proto.rs")).unwrap();
        assert!(
            generated.contains(&format!("// proto sha256: {digest}")),
            "proto/grpc_predict_v2.proto changed; run scripts/gen-grpc.sh"
        );
    }
}
