//! The one place where an outcome becomes an HTTP status: every error becomes a status, an
//! MLflow `error_code` (`{"error_code": ..., "message": ...}`) and, where a retry helps, a
//! `Retry-After`; every health probe becomes 200 or 503. Handlers say which error happened
//! (a typed error through a `From` impl, or a named constructor below); they never pick a
//! number, and nothing outside this file can build an [`ApiError`] with a status of its own.
//! The Open Inference Protocol's routes (`/v2/...`) answer errors in that protocol's shape,
//! `{"error": "..."}` ([`ApiError::in_oip_shape`], [`OipError`]), with the same statuses.

use std::fmt::Display;

use crate::security::keys::AuthError;
use hyper::header::{HeaderValue, ALLOW, RETRY_AFTER, WWW_AUTHENTICATE};
use hyper::{Method, StatusCode};

use super::{text, HttpResponse};
use crate::model::InferError;
use crate::oip::OipError;
use crate::protocol::{BadRequest, Problem};
use crate::queue::PoolError;
use crate::reload::webhook::WebhookError;

/// An error response: a status, an MLflow error code and a message for the client.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// The HTTP status, chosen only by the constructors in this file.
    status: StatusCode,
    /// The MLflow `error_code` (`INVALID_PARAMETER_VALUE`, `RESOURCE_EXHAUSTED`, ...).
    code: &'static str,
    /// What went wrong and what to do about it, for the client.
    message: String,
    /// Seconds for a `Retry-After` header, on answers where retrying later helps.
    retry_after: Option<u64>,
    /// The `Allow` header of a 405.
    allow: Option<&'static str>,
    /// The `WWW-Authenticate` header of a 401 that asks for an API key.
    www_authenticate: Option<&'static str>,
    /// Which protocol's error body to answer with.
    shape: Shape,
}

/// MLflow's error body, on every route but `/v2/...`.
#[derive(Debug, serde::Serialize)]
struct MlflowError<'a> {
    error_code: &'static str,
    message: &'a str,
}

/// The Open Inference Protocol's error body.
#[derive(Debug, serde::Serialize)]
struct OipErrorBody<'a> {
    error: &'a str,
}

/// The body an error is answered with.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Shape {
    /// MLflow's `{"error_code": ..., "message": ...}` (every route but `/v2/...`).
    Mlflow,
    /// The Open Inference Protocol's `{"error": ...}`.
    Oip,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
            allow: None,
            shape: Shape::Mlflow,
            www_authenticate: None,
        }
    }

    /// The same error with the Open Inference Protocol's body, `{"error": "..."}`.
    pub fn in_oip_shape(mut self) -> ApiError {
        self.shape = Shape::Oip;
        self
    }

    fn retry_after(mut self, seconds: u64) -> ApiError {
        self.retry_after = Some(seconds);
        self
    }

    /// A value that parses but does not fit (too many texts, a text too long, a wrong type).
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE", message)
    }

    /// A request body that could not be read (the connection failed mid-body).
    pub fn unreadable_body(err: impl Display) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            format!("cannot read the request body: {err}"),
        )
    }

    /// A path that is not a route.
    pub fn not_found(path: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "ENDPOINT_NOT_FOUND",
            format!("no route for {path}; see README.md for the API"),
        )
    }

    /// A `/models/{name}/...` route or `?model=` naming no configured model; `known` lists the
    /// configured names.
    pub fn unknown_model(name: &str, known: &[String]) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "RESOURCE_DOES_NOT_EXIST",
            format!(
                "no model is configured as '{name}'; configured models: {}",
                known.join(", ")
            ),
        )
    }

    /// A route that exists but is switched off by configuration; answered like an unknown
    /// route, so a scanner learns nothing. `message` says which setting turns it on.
    pub fn route_disabled(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "ENDPOINT_NOT_FOUND", message)
    }

    /// A route called with the wrong method; `allowed` is the route's method (`GET` routes
    /// also answer `HEAD`).
    pub fn method_not_allowed(method: &Method, path: &str, allowed: &Method) -> ApiError {
        let mut err = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "BAD_REQUEST",
            format!("{method} is not allowed on {path}; use {allowed}"),
        );
        err.allow = Some(if allowed == Method::GET {
            "GET, HEAD"
        } else {
            "POST"
        });
        err
    }

    /// No credentials were presented on a route that needs them.
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", message)
    }

    /// A route that needs an API key (`api_keys_file` is set) was called without one: 401
    /// with the challenge of RFC 6750.
    pub fn api_key_missing() -> ApiError {
        let mut err = ApiError::unauthorized(AuthError::Missing.to_string());
        err.www_authenticate = Some(r#"Bearer realm="hotserve""#);
        err
    }

    /// An API key that is not in `api_keys_file`: 401 (RFC 6750's `invalid_token`), so a
    /// client retries with another key rather than giving up as on a 403.
    pub fn api_key_wrong() -> ApiError {
        let mut err = ApiError::unauthorized(AuthError::Wrong.to_string());
        err.www_authenticate = Some(r#"Bearer realm="hotserve", error="invalid_token""#);
        err
    }

    /// The credentials presented are wrong.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "PERMISSION_DENIED", message)
    }

    /// The client did not send its whole body before `request_timeout`.
    pub fn request_timeout() -> ApiError {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "BAD_REQUEST",
            "the request body did not arrive before request_timeout",
        )
    }

    /// A body larger than `max_body_bytes`.
    pub fn too_large(limit: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "MAX_READ_SIZE_EXCEEDED",
            format!("the request body is larger than {limit} bytes (max_body_bytes)"),
        )
    }

    /// An HTTP/2 request with more than `max_headers` header fields (hyper refuses them
    /// itself on HTTP/1, with a 431 and no body).
    pub fn too_many_headers(limit: usize) -> ApiError {
        ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "BAD_REQUEST",
            format!("the request has more than {limit} header fields (max_headers)"),
        )
    }

    /// A content type the route does not take.
    pub fn unsupported_media_type(got: &str, expected: &str) -> ApiError {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "BAD_REQUEST",
            format!("content type '{got}' is not supported here; send {expected}"),
        )
    }

    /// The request as a whole (tokenization, queueing, inference) took longer than
    /// `request_timeout`.
    pub fn deadline_exceeded() -> ApiError {
        ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "DEADLINE_EXCEEDED",
            "the request took longer than request_timeout",
        )
    }

    /// A failure of ours that the client cannot fix (a task that panicked).
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR", message)
    }

    /// A request that needs a state the model is not in (`POST /admin/promote` with no
    /// candidate in shadow).
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "INVALID_STATE", message)
    }

    /// No model is live yet (or none could be loaded); `why` is the status in words.
    pub fn no_model(why: &str) -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "TEMPORARILY_UNAVAILABLE",
            format!("no model is live: {why}"),
        )
        .retry_after(5)
    }

    /// The JSON body: `{"error_code": ..., "message": ...}`, or `{"error": ...}` on the Open
    /// Inference Protocol's routes.
    /// What went wrong, for transports that carry it in their own error shape (gRPC).
    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn body(&self) -> String {
        let body = match self.shape {
            Shape::Mlflow => serde_json::to_string(&MlflowError {
                error_code: self.code,
                message: &self.message,
            }),
            Shape::Oip => serde_json::to_string(&OipErrorBody {
                error: &self.message,
            }),
        };
        body.unwrap_or_default()
    }

    /// The whole response: status, JSON body, `Retry-After` and `Allow` where they apply.
    pub fn response(&self) -> HttpResponse {
        let mut response = text(self.status, self.body(), "application/json");
        let headers = response.headers_mut();
        if let Some(seconds) = self.retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(allow) = self.allow {
            headers.insert(ALLOW, HeaderValue::from_static(allow));
        }
        if let Some(challenge) = self.www_authenticate {
            headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        response
    }
}

impl From<BadRequest> for ApiError {
    fn from(err: BadRequest) -> Self {
        let code = match err.problem {
            Problem::Malformed => "BAD_REQUEST",
            Problem::Invalid => "INVALID_PARAMETER_VALUE",
        };
        ApiError::new(StatusCode::BAD_REQUEST, code, err.message)
    }
}

impl From<InferError> for ApiError {
    fn from(err: InferError) -> Self {
        match err {
            InferError::BadInput(message) => ApiError::invalid(message),
            InferError::Runtime(message) => {
                ApiError::internal(format!("inference failed: {message}"))
            }
        }
    }
}

impl From<PoolError> for ApiError {
    fn from(err: PoolError) -> Self {
        match err {
            PoolError::QueueFull { .. } => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "RESOURCE_EXHAUSTED",
                err.to_string(),
            )
            .retry_after(1),
            PoolError::DeadlineExceeded => ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "DEADLINE_EXCEEDED",
                err.to_string(),
            ),
            PoolError::ShuttingDown => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "TEMPORARILY_UNAVAILABLE",
                err.to_string(),
            )
            .retry_after(1),
            PoolError::Infer(err) => err.into(),
            PoolError::Panicked(message) => {
                ApiError::internal(format!("inference failed: {message}"))
            }
        }
    }
}

/// The Open Inference Protocol's errors, answered `{"error": "..."}`: an unknown model or a
/// version that is not resident is a 404, a bad tensor a 400, a model not live yet (or a
/// server draining) a 503, a full queue a 429, a deadline a 504.
impl From<OipError> for ApiError {
    fn from(err: OipError) -> Self {
        let message = err.to_string();
        let error = match err {
            OipError::NotFound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "RESOURCE_DOES_NOT_EXIST", message)
            }
            OipError::Invalid(_) => ApiError::invalid(message),
            OipError::Unavailable(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "TEMPORARILY_UNAVAILABLE",
                message,
            )
            .retry_after(5),
            OipError::Overloaded {
                retry_after_secs, ..
            } => ApiError::new(StatusCode::TOO_MANY_REQUESTS, "RESOURCE_EXHAUSTED", message)
                .retry_after(retry_after_secs),
            OipError::Timeout(_) => {
                ApiError::new(StatusCode::GATEWAY_TIMEOUT, "DEADLINE_EXCEEDED", message)
            }
            OipError::Internal(_) => ApiError::internal(message),
        };
        error.in_oip_shape()
    }
}

/// A delivery that cannot be authenticated (bad signature, too old, replayed) is a 401, so
/// MLflow's delivery log shows an authentication problem; one that is malformed is a 400.
impl From<WebhookError> for ApiError {
    fn from(err: WebhookError) -> Self {
        match err {
            WebhookError::BadSignature | WebhookError::Stale | WebhookError::Replayed(_) => {
                ApiError::unauthorized(err.to_string())
            }
            WebhookError::MissingHeader(_)
            | WebhookError::BadTimestamp
            | WebhookError::MalformedSignature
            | WebhookError::BadPayload(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", err.to_string())
            }
        }
    }
}

/// What a health probe (`/ping`, `/health`, `/health/ready`) found. Probes answer with their
/// own body rather than an MLflow error, but their status is decided here too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// The probe's condition holds: 200.
    Pass,
    /// It does not: 503, so a load balancer or the kubelet takes the pod out of rotation.
    Fail,
}

impl Probe {
    /// `Pass` when `condition` holds.
    pub fn of(condition: bool) -> Probe {
        if condition {
            Probe::Pass
        } else {
            Probe::Fail
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Probe::Pass => StatusCode::OK,
            Probe::Fail => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The status of the Open Inference Protocol's health routes (`/v2/health/...`,
    /// `/v2/models/{name}/ready`): the spec says 200 for true and a 4xx for false; 400, as
    /// Triton answers. Kubernetes probes fail on it as on a 503.
    pub fn oip_status(self) -> StatusCode {
        match self {
            Probe::Pass => StatusCode::OK,
            Probe::Fail => StatusCode::BAD_REQUEST,
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> ApiError {
        match err {
            AuthError::Missing => ApiError::api_key_missing(),
            AuthError::Wrong => ApiError::api_key_wrong(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One error's expected status, `error_code` and `Retry-After`, and that the body and
    /// headers carry them.
    fn check(err: ApiError, status: u16, code: &str, retry_after: Option<u64>) {
        assert_eq!(
            (err.status.as_u16(), err.code, err.retry_after),
            (status, code, retry_after),
            "{err:?}"
        );
        let response = err.response();
        assert_eq!(response.status().as_u16(), status, "{err:?}");
        assert_eq!(
            response.headers().get(RETRY_AFTER).map(|v| v
                .to_str()
                .unwrap()
                .parse::<u64>()
                .unwrap()),
            retry_after,
            "{err:?}"
        );
        let body: serde_json::Value = serde_json::from_str(&err.body()).unwrap();
        assert_eq!(body["error_code"], code, "{err:?}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{err:?}"
        );
    }

    // The tables below are one case per line, so rustfmt is told to leave them alone.

    #[test]
    #[rustfmt::skip]
    fn pool_errors() {
        check(PoolError::QueueFull { capacity: 8 }.into(), 429, "RESOURCE_EXHAUSTED", Some(1));
        check(PoolError::DeadlineExceeded.into(), 504, "DEADLINE_EXCEEDED", None);
        check(PoolError::ShuttingDown.into(), 503, "TEMPORARILY_UNAVAILABLE", Some(1));
        check(PoolError::Infer(InferError::BadInput("x".into())).into(), 400, "INVALID_PARAMETER_VALUE", None);
        check(PoolError::Infer(InferError::Runtime("x".into())).into(), 500, "INTERNAL_ERROR", None);
        check(PoolError::Panicked("x".into()).into(), 500, "INTERNAL_ERROR", None);
    }

    #[test]
    #[rustfmt::skip]
    fn infer_and_parse_errors() {
        check(InferError::BadInput("x".into()).into(), 400, "INVALID_PARAMETER_VALUE", None);
        check(InferError::Runtime("x".into()).into(), 500, "INTERNAL_ERROR", None);
        check(BadRequest::malformed("m").into(), 400, "BAD_REQUEST", None);
        check(BadRequest::invalid("m").into(), 400, "INVALID_PARAMETER_VALUE", None);
    }

    #[test]
    #[rustfmt::skip]
    fn webhook_errors() {
        check(WebhookError::BadSignature.into(), 401, "UNAUTHENTICATED", None);
        check(WebhookError::Stale.into(), 401, "UNAUTHENTICATED", None);
        check(WebhookError::Replayed("d1".into()).into(), 401, "UNAUTHENTICATED", None);
        check(WebhookError::MissingHeader("X-MLflow-Timestamp").into(), 400, "BAD_REQUEST", None);
        check(WebhookError::BadTimestamp.into(), 400, "BAD_REQUEST", None);
        check(WebhookError::MalformedSignature.into(), 400, "BAD_REQUEST", None);
        check(WebhookError::BadPayload("x".into()).into(), 400, "BAD_REQUEST", None);
    }

    #[test]
    #[rustfmt::skip]
    fn named_errors() {
        check(ApiError::invalid("x"), 400, "INVALID_PARAMETER_VALUE", None);
        check(ApiError::unreadable_body("reset"), 400, "BAD_REQUEST", None);
        check(ApiError::unauthorized("x"), 401, "UNAUTHENTICATED", None);
        check(ApiError::api_key_missing(), 401, "UNAUTHENTICATED", None);
        check(ApiError::api_key_wrong(), 401, "UNAUTHENTICATED", None);
        check(ApiError::forbidden("x"), 403, "PERMISSION_DENIED", None);
        check(ApiError::not_found("/x"), 404, "ENDPOINT_NOT_FOUND", None);
        check(ApiError::route_disabled("x"), 404, "ENDPOINT_NOT_FOUND", None);
        check(ApiError::unknown_model("x", &["a".to_string(), "b".to_string()]), 404, "RESOURCE_DOES_NOT_EXIST", None);
        check(ApiError::method_not_allowed(&Method::GET, "/predict", &Method::POST), 405, "BAD_REQUEST", None);
        check(ApiError::request_timeout(), 408, "BAD_REQUEST", None);
        check(ApiError::too_large(10), 413, "MAX_READ_SIZE_EXCEEDED", None);
        check(ApiError::too_many_headers(10), 431, "BAD_REQUEST", None);
        check(ApiError::unsupported_media_type("text/plain", "application/json"), 415, "BAD_REQUEST", None);
        check(ApiError::internal("x"), 500, "INTERNAL_ERROR", None);
        check(ApiError::no_model("loading"), 503, "TEMPORARILY_UNAVAILABLE", Some(5));
        check(ApiError::deadline_exceeded(), 504, "DEADLINE_EXCEEDED", None);
    }

    #[test]
    #[rustfmt::skip]
    fn oip_errors() {
        let check_oip = |err: OipError, status: u16, retry_after: Option<u64>| {
            let message = err.to_string();
            let err = ApiError::from(err);
            assert_eq!((err.status.as_u16(), err.retry_after), (status, retry_after), "{err:?}");
            let response = err.response();
            assert_eq!(response.status().as_u16(), status);
            let body: serde_json::Value = serde_json::from_str(&err.body()).unwrap();
            assert_eq!(body, serde_json::json!({"error": message}), "{err:?}");
        };
        check_oip(OipError::NotFound("x".into()), 404, None);
        check_oip(OipError::Invalid("x".into()), 400, None);
        check_oip(OipError::Unavailable("x".into()), 503, Some(5));
        check_oip(OipError::Overloaded { message: "x".into(), retry_after_secs: 2 }, 429, Some(2));
        check_oip(OipError::Timeout("x".into()), 504, None);
        check_oip(OipError::Internal("x".into()), 500, None);
        let body: serde_json::Value = serde_json::from_str(&ApiError::too_large(10).in_oip_shape().body()).unwrap();
        assert_eq!(body, serde_json::json!({"error": "the request body is larger than 10 bytes (max_body_bytes)"}));
    }

    #[test]
    fn method_not_allowed_names_the_allowed_methods() {
        let allow = |allowed: &Method| {
            let response = ApiError::method_not_allowed(&Method::PUT, "/x", allowed).response();
            response.headers()[ALLOW].to_str().unwrap().to_string()
        };
        assert_eq!(allow(&Method::GET), "GET, HEAD");
        assert_eq!(allow(&Method::POST), "POST");
    }

    #[test]
    fn api_key_errors_challenge_the_client() {
        let check = |err: ApiError, challenge: &str| {
            let response = err.response();
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            assert_eq!(response.headers()[WWW_AUTHENTICATE], challenge);
        };
        check(ApiError::api_key_missing(), r#"Bearer realm="hotserve""#);
        check(
            ApiError::api_key_wrong(),
            r#"Bearer realm="hotserve", error="invalid_token""#,
        );
        assert_eq!(
            ApiError::unauthorized("x")
                .response()
                .headers()
                .get(WWW_AUTHENTICATE),
            None
        );
    }

    #[test]
    fn probes() {
        assert_eq!(Probe::of(true).status(), StatusCode::OK);
        assert_eq!(Probe::of(false).status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(Probe::of(true).oip_status(), StatusCode::OK);
        assert_eq!(Probe::of(false).oip_status(), StatusCode::BAD_REQUEST);
    }
}
