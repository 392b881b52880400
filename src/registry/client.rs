//! [`MlflowClient`]: one HTTP client for the tracking server and the model registry, behaving
//! like MLflow's Python client (`mlflow.utils.rest_utils.http_request`): bearer or basic auth,
//! custom CA or insecure TLS, a per-request timeout, and retries of connection errors and of
//! 408/429/5xx answers with exponential backoff plus jitter, honouring `Retry-After`.
//!
//! The retry arithmetic ([`backoff_delay`], [`parse_retry_after`]) is pure and unit-tested; the
//! request plumbing around it is exercised against a real MLflow server by `tests/it/mlflow`.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, RETRY_AFTER};
use reqwest::{Response, StatusCode, Url};
use serde::de::DeserializeOwned;
use tracing::Instrument;

use super::error::is_transient_status;
use super::settings::{parse_server_uri, Secret, Server};
use super::{MlflowSettings, RegistryError};

/// The longest backoff between two retries (urllib3's `DEFAULT_BACKOFF_MAX`).
const MAX_BACKOFF: Duration = Duration::from_secs(120);

/// A client for one MLflow deployment. Cheap to clone: clones share one connection pool.
#[derive(Clone)]
pub struct MlflowClient {
    inner: Arc<Inner>,
}

struct Inner {
    /// The connection pool, with TLS and timeouts configured.
    http: reqwest::Client,
    /// The tracking server (runs, logged models, artifacts), or why there is none.
    tracking: Result<Server, String>,
    /// The model registry server, or why there is none.
    registry: Result<Server, String>,
    /// The `Authorization` header value, marked sensitive.
    authorization: Option<HeaderValue>,
    /// Retry, backoff and timeout settings.
    settings: MlflowSettings,
    /// Object stores opened so far (artifact locations read directly).
    stores: super::artifacts::store::Stores,
}

impl std::fmt::Debug for MlflowClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let server = |s: &Result<Server, String>| s.as_ref().map(Server::display).ok();
        f.debug_struct("MlflowClient")
            .field("tracking", &server(&self.inner.tracking))
            .field("registry", &server(&self.inner.registry))
            .field(
                "authorization",
                &self.inner.authorization.as_ref().map(|_| "<redacted>"),
            )
            .finish_non_exhaustive()
    }
}

/// Which server an endpoint lives on.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Api {
    Tracking,
    Registry,
}

/// Why one REST call failed, before the caller adds which model URI it was resolving.
#[derive(Debug)]
pub(crate) enum CallError {
    /// No usable server address is configured.
    NoServer(String),
    /// The connection could not be made or broke, after all retries.
    Unreachable {
        server: String,
        reason: String,
        hint: String,
    },
    /// No answer within the request timeout, after all retries.
    Timeout { server: String },
    /// An error status. `error_code` is set when the body was MLflow's error JSON.
    Status {
        server: String,
        endpoint: String,
        status: u16,
        error_code: Option<String>,
        message: String,
    },
    /// A success answer that did not decode.
    BadBody {
        server: String,
        endpoint: String,
        reason: String,
    },
}

impl CallError {
    /// MLflow's `error_code` when the call failed with one.
    pub fn error_code(&self) -> Option<&str> {
        match self {
            CallError::Status { error_code, .. } => error_code.as_deref(),
            _ => None,
        }
    }

    /// The HTTP status when the call failed with one.
    pub fn status(&self) -> Option<u16> {
        match self {
            CallError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// True for a 404 that is not MLflow's own "resource does not exist": the endpoint itself
    /// is missing (an older server, or not an MLflow server).
    pub fn is_missing_endpoint(&self) -> bool {
        self.status() == Some(404) && matches!(self.error_code(), None | Some("ENDPOINT_NOT_FOUND"))
    }

    /// MLflow's "no such thing" answer.
    pub fn is_not_found(&self) -> bool {
        self.error_code() == Some("RESOURCE_DOES_NOT_EXIST")
    }

    /// The registry's own message, for errors that quote it.
    pub fn message(&self) -> String {
        match self {
            CallError::Status { message, .. } => message.clone(),
            other => format!("{other:?}"),
        }
    }

    /// Adds the model URI being resolved and turns the failure into the layer's error.
    pub fn into_registry(self, uri: &str, timeout: Duration) -> RegistryError {
        let uri = uri.to_string();
        match self {
            CallError::NoServer(reason) => RegistryError::NoServer { uri, reason },
            CallError::Unreachable {
                server,
                reason,
                hint,
            } => RegistryError::Unreachable {
                uri,
                server,
                reason,
                hint,
            },
            CallError::Timeout { server } => RegistryError::Timeout {
                uri,
                server,
                timeout_secs: timeout.as_secs_f64(),
            },
            CallError::Status {
                server,
                status: status @ (401 | 403),
                message,
                ..
            } => RegistryError::Unauthorized {
                uri,
                server,
                status,
                message,
            },
            CallError::Status {
                server,
                endpoint,
                status,
                error_code,
                message,
            } => RegistryError::Server {
                uri,
                server,
                endpoint,
                status,
                error_code,
                message,
            },
            CallError::BadBody {
                server,
                endpoint,
                reason,
            } => RegistryError::BadResponse {
                uri,
                server,
                endpoint,
                reason,
            },
        }
    }
}

/// The outcome of one attempt inside the retry loop.
enum Attempt<T> {
    Done(T),
    /// Worth another try; `retry_after` is the server's requested wait, if any.
    Retry {
        error: CallError,
        retry_after: Option<Duration>,
    },
    Fail(CallError),
}

impl MlflowClient {
    /// Builds the HTTP client: TLS trust, timeouts, credentials. Server addresses are checked
    /// lazily, so a client can exist (e.g. for a local model) without a tracking server.
    pub fn new(settings: MlflowSettings) -> Result<MlflowClient, RegistryError> {
        let tracking = match settings.tracking_uri.as_deref() {
            Some(raw) => parse_server_uri("MLFLOW_TRACKING_URI", raw),
            None => Err(
                "MLFLOW_TRACKING_URI is not set; set it to the MLflow tracking server, \
                         e.g. http://mlflow.internal:5000"
                    .to_string(),
            ),
        };
        let registry = match settings.registry_uri.as_deref() {
            Some(raw) => parse_server_uri("MLFLOW_REGISTRY_URI", raw),
            None => tracking.clone(),
        };

        let mut problems = Vec::new();
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("hotserve/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(settings.request_timeout)
            .read_timeout(settings.request_timeout);
        if settings.insecure_tls {
            builder = builder.danger_accept_invalid_certs(true);
        }
        if let Some(path) = &settings.server_cert_path {
            match std::fs::read(path).map(|pem| reqwest::Certificate::from_pem_bundle(&pem)) {
                Ok(Ok(certificates)) if !certificates.is_empty() => {
                    for certificate in certificates {
                        builder = builder.add_root_certificate(certificate);
                    }
                }
                Ok(_) => problems.push(format!(
                    "MLFLOW_TRACKING_SERVER_CERT_PATH={} holds no PEM certificate; point it at \
                     the CA bundle that signed the server's certificate",
                    path.display()
                )),
                Err(err) => problems.push(format!(
                    "cannot read MLFLOW_TRACKING_SERVER_CERT_PATH={}: {err}",
                    path.display()
                )),
            }
        }
        let userinfo = tracking
            .as_ref()
            .ok()
            .and_then(|server| server.userinfo.clone());
        let authorization = authorization(&settings, userinfo.as_ref());
        if !problems.is_empty() {
            return Err(RegistryError::Settings { problems });
        }
        let http = builder.build().map_err(|err| RegistryError::Settings {
            problems: vec![format!(
                "cannot build the HTTP client: {}",
                error_chain(&err)
            )],
        })?;
        Ok(MlflowClient {
            inner: Arc::new(Inner {
                http,
                tracking,
                registry,
                authorization,
                settings,
                stores: Default::default(),
            }),
        })
    }

    /// The settings this client was built from.
    pub fn settings(&self) -> &MlflowSettings {
        &self.inner.settings
    }

    /// The tracking server's address without credentials, when one is configured.
    pub fn tracking_server(&self) -> Option<String> {
        self.inner.tracking.as_ref().ok().map(Server::display)
    }

    /// Object stores opened by this client, shared by its clones.
    pub(crate) fn stores(&self) -> &super::artifacts::store::Stores {
        &self.inner.stores
    }

    pub(crate) fn request_timeout(&self) -> Duration {
        self.inner.settings.request_timeout
    }

    /// The base URL of an API, or why there is none.
    pub(crate) fn base(&self, api: Api) -> Result<Url, CallError> {
        let server = match api {
            Api::Tracking => &self.inner.tracking,
            Api::Registry => &self.inner.registry,
        };
        server
            .as_ref()
            .map(|server| server.base.clone())
            .map_err(|why| CallError::NoServer(why.clone()))
    }

    /// `GET <base><endpoint>?<query>`, decoded as JSON.
    pub(crate) async fn get_json<T: DeserializeOwned>(
        &self,
        api: Api,
        endpoint: &str,
        query: &[(&str, &str)],
    ) -> Result<T, CallError> {
        let url = endpoint_url(&self.base(api)?, endpoint);
        self.call_json(url, endpoint, |http, url| http.get(url).query(query))
            .await
    }

    /// `POST <base><endpoint>` with a JSON body, decoded as JSON.
    pub(crate) async fn post_json<T: DeserializeOwned>(
        &self,
        api: Api,
        endpoint: &str,
        body: &serde_json::Value,
    ) -> Result<T, CallError> {
        let url = endpoint_url(&self.base(api)?, endpoint);
        self.call_json(url, endpoint, |http, url| http.post(url).json(body))
            .await
    }

    /// `GET url` decoded as JSON, for URLs built elsewhere (the artifact proxy).
    pub(crate) async fn get_json_url<T: DeserializeOwned>(
        &self,
        url: Url,
        query: &[(&str, &str)],
    ) -> Result<T, CallError> {
        let endpoint = url.path().to_string();
        self.call_json(url, &endpoint, |http, url| http.get(url).query(query))
            .await
    }

    /// `GET url` for a download: retried until the response headers arrive, then returned with
    /// its body unread. Only 200 answers are returned; others become [`CallError::Status`].
    pub(crate) async fn get_stream(&self, url: Url) -> Result<Response, CallError> {
        let server = server_of(&url);
        let endpoint = url.path().to_string();
        let span = client_span(&url, &endpoint);
        self.with_retries(&server, &endpoint, || async {
            match self
                .authorized(self.inner.http.get(url.clone()))
                .send()
                .await
            {
                Err(err) => self.attempt_error(&server, err),
                Ok(response) if response.status() == StatusCode::OK => Attempt::Done(response),
                Ok(response) => {
                    let status = response.status();
                    let retry_after = retry_after_of(status, response.headers());
                    let body = response.bytes().await.unwrap_or_default();
                    let error = status_error(&server, &endpoint, status, &body);
                    if is_transient_status(status.as_u16()) {
                        Attempt::Retry { error, retry_after }
                    } else {
                        Attempt::Fail(error)
                    }
                }
            }
        })
        .instrument(span)
        .await
    }

    async fn call_json<T: DeserializeOwned>(
        &self,
        url: Url,
        endpoint: &str,
        build: impl Fn(&reqwest::Client, Url) -> reqwest::RequestBuilder,
    ) -> Result<T, CallError> {
        let server = server_of(&url);
        tracing::debug!(server = %server, endpoint, "mlflow request");
        let span = client_span(&url, endpoint);
        let (status, body) = self
            .with_retries(&server, endpoint, || async {
                let request = self.authorized(build(&self.inner.http, url.clone()));
                let response = match request.send().await {
                    Ok(response) => response,
                    Err(err) => return self.attempt_error(&server, err),
                };
                let status = response.status();
                let retry_after = retry_after_of(status, response.headers());
                match response.bytes().await {
                    Err(err) => self.attempt_error(&server, err),
                    Ok(body) if is_transient_status(status.as_u16()) => Attempt::Retry {
                        error: status_error(&server, endpoint, status, &body),
                        retry_after,
                    },
                    Ok(body) => Attempt::Done((status, body)),
                }
            })
            .instrument(span.clone())
            .await?;
        span.record("http.response.status_code", i64::from(status.as_u16()));
        if !status.is_success() {
            return Err(status_error(&server, endpoint, status, &body));
        }
        serde_json::from_slice(&body).map_err(|err| CallError::BadBody {
            server,
            endpoint: endpoint.to_string(),
            reason: format!("the body is not the JSON MLflow sends ({err})"),
        })
    }

    /// With the credentials, and the current span's `traceparent` (traces on).
    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let mut trace = HeaderMap::new();
        crate::telemetry::inject(&mut trace);
        let request = if trace.is_empty() {
            request
        } else {
            request.headers(trace)
        };
        match &self.inner.authorization {
            Some(value) => request.header(AUTHORIZATION, value.clone()),
            None => request,
        }
    }

    /// Classifies a transport error: timeouts and broken connections are retried.
    fn attempt_error<T>(&self, server: &str, err: reqwest::Error) -> Attempt<T> {
        let error = transport_error(server, &err);
        if err.is_builder() || err.is_redirect() {
            Attempt::Fail(error)
        } else {
            Attempt::Retry {
                error,
                retry_after: None,
            }
        }
    }

    /// Runs `attempt` until it is done, fails for good, or the retry budget is spent; waits
    /// between tries as MLflow's client does.
    async fn with_retries<T, F, Fut>(
        &self,
        server: &str,
        endpoint: &str,
        mut attempt: F,
    ) -> Result<T, CallError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Attempt<T>>,
    {
        let settings = &self.inner.settings;
        let mut retries_done = 0u32;
        loop {
            let (error, retry_after) = match attempt().await {
                Attempt::Done(value) => return Ok(value),
                Attempt::Fail(error) => return Err(error),
                Attempt::Retry { error, retry_after } => (error, retry_after),
            };
            if retries_done >= settings.max_retries {
                return Err(error);
            }
            retries_done += 1;
            let wait = match retry_after {
                Some(wait) => wait.min(settings.max_retry_after),
                None => backoff_delay(
                    retries_done,
                    settings.backoff_factor,
                    settings.backoff_jitter,
                    fastrand::f64(),
                ),
            };
            tracing::warn!(
                server,
                endpoint,
                retry = retries_done,
                of = settings.max_retries,
                wait_ms = wait.as_millis() as u64,
                error = %describe_call_error(&error),
                "mlflow request failed; retrying"
            );
            tokio::time::sleep(wait).await;
        }
    }
}

/// The `Authorization` header: basic auth when a username and password are set (explicitly or
/// in the tracking URI), else the bearer token, as MLflow's client decides.
fn authorization(
    settings: &MlflowSettings,
    userinfo: Option<&(String, Secret)>,
) -> Option<HeaderValue> {
    use base64::Engine as _;
    let basic = match (&settings.username, &settings.password) {
        (Some(user), Some(password)) => Some((user.as_str(), password.expose())),
        _ => userinfo.map(|(user, password)| (user.as_str(), password.expose())),
    };
    let text = match (basic, &settings.token) {
        (Some((user, password)), _) => format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        ),
        (None, Some(token)) => format!("Bearer {}", token.expose()),
        (None, None) => return None,
    };
    let mut value = HeaderValue::from_str(&text).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// `base` + `endpoint` (which starts with `/`), keeping any path prefix of the base.
fn endpoint_url(base: &Url, endpoint: &str) -> Url {
    let mut url = base.clone();
    let path = format!("{}{endpoint}", base.path().trim_end_matches('/'));
    url.set_path(&path);
    url
}

/// `scheme://host:port` of a URL, for messages (URLs here never carry credentials).
fn server_of(url: &Url) -> String {
    let mut text = format!("{}://{}", url.scheme(), url.host_str().unwrap_or(""));
    if let Some(port) = url.port() {
        text.push_str(&format!(":{port}"));
    }
    text
}

fn transport_error(server: &str, err: &reqwest::Error) -> CallError {
    if err.is_timeout() {
        return CallError::Timeout {
            server: server.to_string(),
        };
    }
    let reason = error_chain(err);
    let hint = if reason.contains("certificate") || reason.contains("tls") || reason.contains("TLS")
    {
        "; if the server uses a private CA set MLFLOW_TRACKING_SERVER_CERT_PATH to its PEM bundle \
         (MLFLOW_TRACKING_INSECURE_TLS=true skips verification, for testing only)"
            .to_string()
    } else {
        String::new()
    };
    CallError::Unreachable {
        server: server.to_string(),
        reason,
        hint,
    }
}

/// The most specific description of a transport error: the innermost cause (reqwest's own
/// top-level text names the URL, the causes never do), in plain words for common socket errors.
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut innermost = err;
    let mut current = Some(err);
    while let Some(cause) = current {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return "connection refused".into(),
                std::io::ErrorKind::ConnectionReset => return "connection reset by peer".into(),
                std::io::ErrorKind::TimedOut => return "timed out".into(),
                _ => {}
            }
        }
        innermost = cause;
        current = cause.source();
    }
    if innermost.downcast_ref::<reqwest::Error>().is_some() {
        "request failed".into()
    } else {
        innermost.to_string()
    }
}

/// Turns an error answer into [`CallError::Status`], reading MLflow's `{"error_code",
/// "message"}` body when there is one.
fn status_error(server: &str, endpoint: &str, status: StatusCode, body: &[u8]) -> CallError {
    #[derive(serde::Deserialize)]
    struct MlflowError {
        error_code: Option<String>,
        message: Option<String>,
    }
    let parsed = serde_json::from_slice::<MlflowError>(body).ok();
    let (error_code, message) = match parsed {
        Some(MlflowError {
            error_code: Some(code),
            message,
        }) => (Some(code), message.unwrap_or_default()),
        _ => (None, plain_message(status, body)),
    };
    CallError::Status {
        server: server.to_string(),
        endpoint: endpoint.to_string(),
        status: status.as_u16(),
        error_code,
        message,
    }
}

/// A short message for a non-MLflow error body: the status reason plus the first line of a
/// plain-text body (HTML pages are left out).
fn plain_message(status: StatusCode, body: &[u8]) -> String {
    let reason = status.canonical_reason().unwrap_or("error").to_string();
    let text = String::from_utf8_lossy(body);
    let first_line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let mut message = if first_line.is_empty() || first_line.starts_with('<') {
        reason
    } else {
        let snippet: String = first_line.chars().take(200).collect();
        format!("{reason}: {snippet}")
    };
    if status == StatusCode::NOT_FOUND {
        message.push_str(
            " (not an MLflow answer; check that MLFLOW_TRACKING_URI points at an MLflow tracking \
             server)",
        );
    }
    message
}

fn describe_call_error(error: &CallError) -> String {
    match error {
        CallError::NoServer(why) => why.clone(),
        CallError::Unreachable { reason, .. } => reason.clone(),
        CallError::Timeout { .. } => "timed out".into(),
        CallError::Status {
            status, message, ..
        } => format!("HTTP {status}: {message}"),
        CallError::BadBody { reason, .. } => reason.clone(),
    }
}

/// The wait a 429 or 503 answer asks for (urllib3 honours `Retry-After` on these).
fn retry_after_of(status: StatusCode, headers: &HeaderMap) -> Option<Duration> {
    if !matches!(status.as_u16(), 429 | 503) {
        return None;
    }
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(value, SystemTime::now())
}

/// The wait before retry number `retry` (1-based), as urllib3 computes it for MLflow: none
/// before the first retry, then `factor * 2^(retry-1)` seconds plus `random * jitter` (with
/// `random` in `[0, 1)`), capped at two minutes.
pub fn backoff_delay(retry: u32, factor: f64, jitter: f64, random: f64) -> Duration {
    if retry <= 1 {
        return Duration::ZERO;
    }
    let exponent = (retry - 1).min(30) as i32;
    let seconds = factor * 2f64.powi(exponent) + random * jitter;
    Duration::try_from_secs_f64(seconds.max(0.0))
        .unwrap_or(MAX_BACKOFF)
        .min(MAX_BACKOFF)
}

/// Parses a `Retry-After` value: delay seconds, or an HTTP date (any of the three formats RFC
/// 9110 makes recipients accept, e.g. `Wed, 21 Oct 2015 07:28:00 GMT`) turned into a wait from
/// `now`. A date in the past means no wait.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse::<u64>().ok().map(Duration::from_secs);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// `url` without a user name or password, as a span may show it.
fn without_credentials(url: &Url) -> Url {
    let mut url = url.clone();
    let _ = url.set_password(None);
    let _ = url.set_username("");
    url
}

/// The span of one call to the registry (all its attempts), as a client span by the HTTP
/// conventions; its context is the `traceparent` the call sends.
fn client_span(url: &Url, endpoint: &str) -> tracing::Span {
    tracing::debug_span!(
        "mlflow request",
        otel.name = endpoint,
        otel.kind = "client",
        url.full = %without_credentials(url),
        server.address = url.host_str(),
        http.response.status_code = tracing::field::Empty,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_follows_urllib3() {
        let check = |retry: u32, factor: f64, jitter: f64, random: f64, expected_ms: u64| {
            assert_eq!(
                backoff_delay(retry, factor, jitter, random),
                Duration::from_millis(expected_ms),
                "retry {retry}, factor {factor}, jitter {jitter}, random {random}"
            );
        };
        check(1, 2.0, 1.0, 0.9, 0);
        check(2, 2.0, 0.0, 0.0, 4_000);
        check(3, 2.0, 0.0, 0.0, 8_000);
        check(4, 2.0, 1.0, 0.5, 16_500);
        check(5, 2.0, 1.0, 0.0, 32_000);
        check(7, 2.0, 1.0, 0.0, 120_000);
        check(40, 120.0, 1.0, 0.0, 120_000);
        check(3, 0.0, 0.0, 0.7, 0);
        check(2, 0.01, 0.0, 0.0, 20);
    }

    #[test]
    fn retry_after_values() {
        // 2015-10-21 07:28:00 UTC.
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        let check = |value: &str, expected: Option<u64>| {
            assert_eq!(
                parse_retry_after(value, now),
                expected.map(Duration::from_secs),
                "Retry-After: {value}"
            );
        };
        check("1", Some(1));
        check(" 120 ", Some(120));
        check("0", Some(0));
        check("Wed, 21 Oct 2015 07:28:30 GMT", Some(30));
        check("Wed, 21 Oct 2015 08:28:00 GMT", Some(3600));
        check("Wed, 21 Oct 2015 07:27:00 GMT", Some(0));
        check("Thu, 01 Jan 1970 00:00:00 GMT", Some(0));
        check("-1", None);
        check("1.5", None);
        check("soon", None);
        check("", None);
        check("Wed, 21 Oct 2015 07:28:00 UTC", None);
        check("Wed, 32 Oct 2015 07:28:00 GMT", None);
        check("Wed, 21 Foo 2015 07:28:00 GMT", None);
        check("Wed, 21 Oct 2015 25:28:00 GMT", None);
        check("Mon, 21 Oct 2015 07:28:30 GMT", None);
        check("Wednesday, 21-Oct-15 07:28:30 GMT", Some(30));
        check("Wed Oct 21 07:28:30 2015", Some(30));
    }

    #[test]
    fn status_errors_read_mlflow_bodies() {
        let check = |status: u16, body: &str, code: Option<&str>, message: &str| {
            let status = StatusCode::from_u16(status).unwrap();
            let CallError::Status {
                error_code,
                message: got,
                ..
            } = status_error("http://h", "/e", status, body.as_bytes())
            else {
                panic!("not a status error")
            };
            assert_eq!(error_code.as_deref(), code, "{body}");
            assert_eq!(got, message, "{body}");
        };
        check(
            404,
            r#"{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "Model Version (name=x, version=9) not found"}"#,
            Some("RESOURCE_DOES_NOT_EXIST"),
            "Model Version (name=x, version=9) not found",
        );
        check(
            404,
            "<!doctype html>\n<title>404 Not Found</title>",
            None,
            "Not Found (not an MLflow answer; check that MLFLOW_TRACKING_URI points at an MLflow \
             tracking server)",
        );
        check(
            502,
            "upstream connect error\nmore",
            None,
            "Bad Gateway: upstream connect error",
        );
        check(500, "", None, "Internal Server Error");
    }

    #[test]
    fn authorization_prefers_basic_like_mlflow() {
        let header = |settings: &MlflowSettings, userinfo: Option<(&str, &str)>| {
            let userinfo = userinfo.map(|(u, p)| (u.to_string(), Secret::new(p)));
            authorization(settings, userinfo.as_ref()).map(|v| v.to_str().unwrap().to_string())
        };
        let mut settings = MlflowSettings::default();
        assert_eq!(header(&settings, None), None);
        settings.token = Some(Secret::new("tok"));
        assert_eq!(header(&settings, None).as_deref(), Some("Bearer tok"));
        assert_eq!(
            header(&settings, Some(("u", "p"))).as_deref(),
            Some("Basic dTpw")
        );
        settings.username = Some("alice".into());
        settings.password = Some(Secret::new("pw"));
        assert_eq!(
            header(&settings, Some(("u", "p"))).as_deref(),
            Some("Basic YWxpY2U6cHc=")
        );
    }

    #[test]
    fn endpoint_urls_keep_prefixes() {
        let check = |base: &str, expected: &str| {
            let url = endpoint_url(&Url::parse(base).unwrap(), "/api/2.0/mlflow/runs/get");
            assert_eq!(url.as_str(), expected);
        };
        check("http://h:5000", "http://h:5000/api/2.0/mlflow/runs/get");
        check(
            "https://h/mlflow",
            "https://h/mlflow/api/2.0/mlflow/runs/get",
        );
        check(
            "https://h/mlflow/",
            "https://h/mlflow/api/2.0/mlflow/runs/get",
        );
    }

    #[test]
    fn client_debug_hides_credentials() {
        let settings = MlflowSettings {
            tracking_uri: Some("http://bob:hunter2@h:5000".into()),
            token: Some(Secret::new("tok-hunter2")),
            ..MlflowSettings::default()
        };
        let client = MlflowClient::new(settings).unwrap();
        let shown = format!(
            "{client:?} {:?} {:?}",
            client.settings(),
            client.tracking_server()
        );
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("http://h:5000"), "{shown}");
    }

    #[test]
    fn bad_certificate_paths_are_settings_errors() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate").unwrap();
        for (path, want) in [
            (
                dir.path().join("missing.pem"),
                "cannot read MLFLOW_TRACKING_SERVER_CERT_PATH",
            ),
            (empty, "holds no PEM certificate"),
        ] {
            let settings = MlflowSettings {
                server_cert_path: Some(path),
                ..MlflowSettings::default()
            };
            let err = MlflowClient::new(settings).unwrap_err();
            assert!(err.to_string().contains(want), "{err}");
        }
    }
}
